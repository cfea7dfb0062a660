//! HTTPS for the metrics API: the controller's serving certificate, and authentication of
//! the Kubernetes API server as an aggregated API server does it: the client must present a
//! certificate signed by the front-proxy CA (`requestheader-client-ca-file` of
//! `kube-system/extension-apiserver-authentication`) with an allowed common name; the user,
//! groups and extras are then taken from the request headers the API server set. Anything
//! else is refused with 401.

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request, Response, body::Incoming, service::service_fn};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::{collections::BTreeMap, sync::Arc, time::Duration};
use tokio::{net::TcpListener, sync::watch};
use tulle_api::certify::SwappableCert;

use super::{Caller, handler::Api, objects};

/// Time allowed for the TLS handshake and a request's headers.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// How the API server authenticates to us (from `extension-apiserver-authentication`).
#[derive(Clone, Debug)]
pub struct FrontProxy {
    /// The front-proxy client CA.
    pub ca: rustls::RootCertStore,
    /// Common names allowed (any, when empty).
    pub allowed_names: Vec<String>,
    /// Headers holding the user name.
    pub username_headers: Vec<String>,
    /// Headers holding the groups.
    pub group_headers: Vec<String>,
    /// Prefixes of headers holding extra attributes.
    pub extra_header_prefixes: Vec<String>,
}

impl FrontProxy {
    /// The caller of a request made by an authenticated front proxy (`None` without a user).
    pub fn caller(&self, headers: &hyper::HeaderMap) -> Option<Caller> {
        let user = self
            .username_headers
            .iter()
            .find_map(|h| headers.get(h.as_str())?.to_str().ok())
            .filter(|u| !u.is_empty())?
            .to_string();
        let groups = self
            .group_headers
            .iter()
            .flat_map(|h| headers.get_all(h.as_str()).iter())
            .filter_map(|v| v.to_str().ok().map(str::to_string))
            .collect();
        let mut extra: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (name, value) in headers {
            let n = name.as_str();
            let Some(key) = self
                .extra_header_prefixes
                .iter()
                .find_map(|p| n.strip_prefix(p.to_ascii_lowercase().as_str()))
            else {
                continue;
            };
            if let Ok(v) = value.to_str() {
                let key = form_urlencoded::parse(format!("k={key}").as_bytes())
                    .next()
                    .map_or_else(|| key.to_string(), |(_, k)| k.into_owned());
                extra.entry(key).or_default().push(v.to_string());
            }
        }
        Some(Caller {
            user,
            groups,
            extra,
        })
    }

    /// Whether a verified client certificate's common name is allowed.
    pub fn name_allowed(&self, cn: Option<&str>) -> bool {
        self.allowed_names.is_empty()
            || cn.is_some_and(|cn| self.allowed_names.iter().any(|a| a == cn))
    }
}

fn server_config(
    cert: Arc<SwappableCert>,
    front: Option<&FrontProxy>,
) -> Result<Arc<rustls::ServerConfig>, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = match front {
        Some(f) => {
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(f.ca.clone()),
                provider,
            )
            .allow_unauthenticated()
            .build()
            .map_err(|e| format!("the front-proxy CA is not usable: {e}"))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut cfg = builder.with_cert_resolver(cert);
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

fn common_name(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    cert.subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_string)
}

/// Serves the API on `listener` until the task is dropped; `front` is the current
/// front-proxy configuration (`None` until it was read: every request is refused meanwhile).
pub async fn serve(
    listener: TcpListener,
    cert: Arc<SwappableCert>,
    mut front: watch::Receiver<Option<Arc<FrontProxy>>>,
    api: Arc<Api>,
) -> std::io::Result<()> {
    let mut current: Option<(Arc<rustls::ServerConfig>, Option<Arc<FrontProxy>>)> = None;
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "metrics API accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if current.is_none() || front.has_changed().unwrap_or(false) {
            let f = front.borrow_and_update().clone();
            match server_config(cert.clone(), f.as_deref()) {
                Ok(cfg) => current = Some((cfg, f)),
                Err(e) => tracing::warn!(error = %e, "metrics API TLS not configured"),
            }
        }
        let Some((cfg, f)) = current.clone() else {
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let api = api.clone();
        tokio::spawn(async move {
            let acceptor = tokio_rustls::TlsAcceptor::from(cfg);
            let stream = match tokio::time::timeout(READ_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                _ => {
                    tracing::debug!(%peer, "metrics API TLS handshake failed or timed out");
                    return;
                }
            };
            let client_cn = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| common_name(c.as_ref()));
            let svc = service_fn(move |req: Request<Incoming>| {
                let (api, f, cn) = (api.clone(), f.clone(), client_cn.clone());
                async move {
                    Ok::<_, std::convert::Infallible>(respond(&api, f.as_deref(), cn, req).await)
                }
            });
            let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(READ_TIMEOUT);
            if let Err(e) = builder.serve_connection(TokioIo::new(stream), svc).await {
                tracing::debug!(%peer, error = %e, "metrics API connection ended with an error");
            }
        });
    }
}

/// `client_cn`: `None` without a client certificate, `Some(cn)` with a verified one.
async fn respond(
    api: &Api,
    front: Option<&FrontProxy>,
    client_cn: Option<Option<String>>,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let reply = |status: u16, body: serde_json::Value| {
        Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.to_string())))
            .unwrap_or_default()
    };
    let Some(front) = front else {
        return reply(
            503,
            objects::status(
                503,
                "ServiceUnavailable",
                "the metrics API has not read kube-system/extension-apiserver-authentication yet (the controller needs get on that ConfigMap); retry shortly",
            ),
        );
    };
    let caller = match client_cn {
        Some(cn) if front.name_allowed(cn.as_deref()) => front.caller(req.headers()),
        _ => None,
    };
    let Some(caller) = caller else {
        return reply(
            401,
            objects::status(
                401,
                "Unauthorized",
                "this API is served through the Kubernetes API server: use kubectl get --raw /apis/metrics.smi-spec.io/v1alpha1/... (direct calls need the API server's front-proxy client certificate)",
            ),
        );
    };
    if req.method() != Method::GET {
        return reply(
            405,
            objects::status(
                405,
                "MethodNotAllowed",
                "the metrics API is read-only: only GET (kubectl get) is served",
            ),
        );
    }
    let r = api
        .handle(&caller, req.uri().path(), req.uri().query())
        .await;
    reply(r.status, r.body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn front() -> FrontProxy {
        FrontProxy {
            ca: rustls::RootCertStore::empty(),
            allowed_names: vec!["front-proxy-client".into()],
            username_headers: vec!["X-Remote-User".into()],
            group_headers: vec!["X-Remote-Group".into()],
            extra_header_prefixes: vec!["X-Remote-Extra-".into()],
        }
    }

    #[test]
    fn the_caller_comes_from_the_front_proxy_headers() {
        let mut h = hyper::HeaderMap::new();
        h.insert("x-remote-user", "alice".parse().unwrap());
        h.append("x-remote-group", "dev".parse().unwrap());
        h.append("x-remote-group", "system:authenticated".parse().unwrap());
        h.insert("x-remote-extra-scopes%2Fa", "x".parse().unwrap());
        let c = front().caller(&h).unwrap();
        assert_eq!(c.user, "alice");
        assert_eq!(c.groups, vec!["dev", "system:authenticated"]);
        assert_eq!(c.extra["scopes/a"], vec!["x"]);
        assert!(front().caller(&hyper::HeaderMap::new()).is_none());
    }

    #[test]
    fn only_allowed_names_may_proxy() {
        let f = front();
        assert!(f.name_allowed(Some("front-proxy-client")));
        assert!(!f.name_allowed(Some("someone-else")));
        assert!(!f.name_allowed(None));
        let any = FrontProxy {
            allowed_names: vec![],
            ..front()
        };
        assert!(any.name_allowed(Some("someone-else")));
    }
}

//! Test support: a development CA, proxies on 127.0.0.1, test applications and clients.
#![allow(dead_code)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use tulle_proxy::app::Proxy;
use tulle_proxy::config::Config;
use tulle_proxy::devcerts::DevCa;
use tulle_proxy::discovery::{StaticDiscovery, StaticFile};
use tulle_proxy::tls::{Credentials, Tls};

pub const CLIENT_ID: &str = "client.test.serviceaccount.identity.tulle.cluster.local";
pub const SERVER_ID: &str = "web.test.serviceaccount.identity.tulle.cluster.local";
pub const AUTHORITY: &str = "web.test.svc.cluster.local:80";
/// A virtual service address (loopback, never listened on) used as original destination.
pub const VIRTUAL: &str = "127.0.0.77:80";

/// Bounds every test.
pub async fn bounded<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(60), f)
        .await
        .expect("test timed out")
}

pub fn init() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let _ = tracing_subscriber::fmt()
        .with_env_filter("tulle_proxy=debug")
        .with_test_writer()
        .try_init();
}

pub struct Pki {
    pub ca: DevCa,
}

impl Pki {
    pub fn new() -> Self {
        Pki {
            ca: DevCa::new().unwrap(),
        }
    }
    pub fn tls(&self, name: &str) -> Tls {
        let leaf = self.ca.leaf(name).unwrap();
        let mut roots = RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(self.ca.ca_pem().as_bytes()).unwrap())
            .unwrap();
        Tls::new(Credentials {
            name: name.into(),
            chain: vec![CertificateDer::from_pem_slice(leaf.cert_pem.as_bytes()).unwrap()],
            key: PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).unwrap(),
            roots,
        })
        .unwrap()
    }
}

/// A configuration on free loopback ports.
pub fn config(name: &str, extra: &[(&'static str, String)]) -> Config {
    let mut env: HashMap<&str, &str> = HashMap::from([
        ("TULLE_PROXY_IDENTITY_CERT_FILE", "/unused"),
        ("TULLE_PROXY_IDENTITY_KEY_FILE", "/unused"),
        ("TULLE_PROXY_IDENTITY_TRUST_ANCHORS_FILE", "/unused"),
        ("TULLE_PROXY_IDENTITY_NAME", name),
        ("TULLE_PROXY_INBOUND_LISTEN_ADDR", "127.0.0.1:0"),
        ("TULLE_PROXY_OUTBOUND_LISTEN_ADDR", "127.0.0.1:0"),
        ("TULLE_PROXY_ADMIN_LISTEN_ADDR", "127.0.0.1:0"),
    ]);
    for (k, v) in extra {
        env.insert(k, v.as_str());
    }
    Config::from_strings(&env).unwrap()
}

pub fn static_file(json: &str) -> StaticFile {
    serde_json::from_str(json).unwrap()
}

/// One destination (AUTHORITY, VIRTUAL) with the given endpoints `(addr, identity)`.
pub fn destination(endpoints: &[(SocketAddr, Option<&str>)]) -> StaticFile {
    let eps: Vec<serde_json::Value> = endpoints
        .iter()
        .enumerate()
        .map(|(i, (a, id))| {
            let mut v =
                serde_json::json!({"addr": a.to_string(), "labels": {"pod": format!("web-{i}")}});
            if let Some(id) = id {
                v["identity"] = (*id).into();
            }
            v
        })
        .collect();
    static_file(
        &serde_json::json!({"destinations": [{"authority": AUTHORITY, "addrs": [VIRTUAL], "endpoints": eps}]})
            .to_string(),
    )
}

/// A client proxy (outbound) and a server proxy (inbound) in front of `app`.
pub struct Pair {
    pub client: Proxy,
    pub server: Proxy,
    pub discovery: Arc<StaticDiscovery>,
}

impl Pair {
    pub async fn start(
        pki: &Pki,
        app: SocketAddr,
        server_identity: &str,
        client_extra: &[(&'static str, String)],
    ) -> Self {
        let server_cfg = config(
            SERVER_ID,
            &[("TULLE_PROXY_INBOUND_PORT_FALLBACK", app.port().to_string())],
        );
        let server = Proxy::start(
            server_cfg,
            pki.tls(SERVER_ID),
            Arc::new(StaticDiscovery::default()),
        )
        .await
        .unwrap();
        let discovery = Arc::new(
            StaticDiscovery::new(destination(&[(server.inbound_addr, Some(server_identity))]))
                .unwrap(),
        );
        let mut extra = vec![(
            "TULLE_PROXY_OUTBOUND_ORIG_DST_FALLBACK",
            VIRTUAL.to_string(),
        )];
        extra.extend_from_slice(client_extra);
        let client = Proxy::start(
            config(CLIENT_ID, &extra),
            pki.tls(CLIENT_ID),
            discovery.clone(),
        )
        .await
        .unwrap();
        Pair {
            client,
            server,
            discovery,
        }
    }
}

/// Fetches `/metrics` of a proxy.
pub async fn metrics(p: &Proxy) -> String {
    let (status, body) = get(p.admin_addr, "/metrics").await;
    assert_eq!(status, 200);
    body
}

/// The value of the sample whose line contains all `parts` (exactly one must match).
pub fn sample(metrics: &str, name: &str, parts: &[&str]) -> f64 {
    let found: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && parts.iter().all(|p| l.contains(p)))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "expected one {name} sample with {parts:?}, got {found:?}\n{metrics}"
    );
    found[0].rsplit(' ').next().unwrap().parse().unwrap()
}

/// A plain HTTP/1 GET; returns status and body.
pub async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(
        tokio::net::TcpStream::connect(addr).await.unwrap(),
    ))
    .await
    .unwrap();
    tokio::spawn(conn);
    let req = Request::get(path)
        .header("host", addr.to_string())
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// A test application: HTTP/1 and HTTP/2 (auto), echoing requests.
/// `/slow` waits 3 s; `/ws` accepts an upgrade and echoes bytes; `/stream` echoes the body
/// frame by frame with trailers `grpc-status: 0` (`13` with `?fail`); everything else answers
/// `name version method path client-id` followed by the request body.
pub async fn app(name: &'static str) -> (SocketAddr, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    tokio::spawn(async move {
        loop {
            let (s, _) = l.accept().await.unwrap();
            let h = h.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    h.fetch_add(1, Ordering::Relaxed);
                    handle(name, req)
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    (addr, hits)
}

type AppBody = http_body_util::combinators::BoxBody<Bytes, hyper::Error>;

async fn handle(
    name: &'static str,
    mut req: Request<Incoming>,
) -> Result<Response<AppBody>, Infallible> {
    let full = |s: String| {
        Full::new(Bytes::from(s))
            .map_err(|never| match never {})
            .boxed()
    };
    match req.uri().path() {
        "/slow" => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            Ok(Response::new(full("slow done".into())))
        }
        "/ws" => {
            let on = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                if let Ok(up) = on.await {
                    let mut io = TokioIo::new(up);
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = io.read(&mut buf).await {
                        if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                }
            });
            Ok(Response::builder()
                .status(101)
                .header("connection", "upgrade")
                .header("upgrade", "websocket")
                .body(full(String::new()))
                .unwrap())
        }
        "/stream" => {
            let (mut tx, body) = http_body_util::channel::Channel::<Bytes, hyper::Error>::new(4);
            let code = if req.uri().query() == Some("fail") {
                "13"
            } else {
                "0"
            };
            let mut incoming = req.into_body();
            tokio::spawn(async move {
                while let Some(Ok(frame)) = incoming.frame().await {
                    if let Ok(data) = frame.into_data()
                        && tx.send_data(data).await.is_err()
                    {
                        return;
                    }
                }
                let mut t = http::HeaderMap::new();
                t.insert("grpc-status", code.parse().unwrap());
                let _ = tx.send_trailers(t).await;
            });
            Ok(Response::builder()
                .header("content-type", "application/grpc")
                .body(body.boxed())
                .unwrap())
        }
        path => {
            if let Some(code) = path.strip_prefix("/status/") {
                let mut r = Response::new(full(String::new()));
                *r.status_mut() = code.parse::<u16>().unwrap().try_into().unwrap();
                return Ok(r);
            }
            let head = format!(
                "{name} {:?} {} {} {}\n",
                req.version(),
                req.method(),
                path,
                req.headers()
                    .get("tulle-client-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-")
            );
            let body = req
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            Ok(Response::new(full(format!(
                "{head}{}",
                String::from_utf8_lossy(&body)
            ))))
        }
    }
}

/// A TCP application that reads until EOF, then answers `got N: <data>` and closes.
pub async fn tcp_app() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = l.accept().await.unwrap();
            tokio::spawn(async move {
                let mut data = Vec::new();
                let _ = s.read_to_end(&mut data).await;
                let _ = s
                    .write_all(format!("got {}: ", data.len()).as_bytes())
                    .await;
                let _ = s.write_all(&data).await;
            });
        }
    });
    addr
}

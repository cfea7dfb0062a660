//! The HTTPS server: `POST /inject` with an AdmissionReview body and `POST /convert` with a
//! TrafficSplit ConversionReview (see [`super::conversion`]), at most [`MAX_BODY`] bytes,
//! HTTP/1.1 or HTTP/2, TLS 1.2+ with the certificate of a [`SwappableCert`] (swapped
//! on rotation without a restart).

use super::{
    admission::{Injector, review},
    conversion,
};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Method, Request, Response, StatusCode, body::Incoming, service::service_fn};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::{sync::Arc, time::Duration};
use tokio::net::TcpListener;
use tulle_api::certify::SwappableCert;

/// Largest accepted request body.
pub const MAX_BODY: usize = 4 * 1024 * 1024;
/// Time allowed for the TLS handshake, and for reading a request's headers and body.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The TLS config: the swappable certificate, ALPN h2 and http/1.1.
pub fn server_config(cert: Arc<SwappableCert>) -> Result<Arc<rustls::ServerConfig>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(cert);
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// Serves `injector` on `listener` until the task is dropped.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    injector: Arc<Injector>,
) -> std::io::Result<()> {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of file descriptors and the like: wait rather than spin.
                tracing::warn!(error = %e, "webhook accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let injector = injector.clone();
        tokio::spawn(async move {
            let stream = match tokio::time::timeout(READ_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "webhook TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "webhook TLS handshake timed out");
                    return;
                }
            };
            let svc = service_fn(move |req| {
                let injector = injector.clone();
                async move { Ok::<_, std::convert::Infallible>(handle(&injector, req).await) }
            });
            let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(READ_TIMEOUT);
            if let Err(e) = builder.serve_connection(TokioIo::new(stream), svc).await {
                tracing::debug!(%peer, error = %e, "webhook connection ended with an error");
            }
        });
    }
}

/// Routes and answers one request.
pub async fn handle(injector: &Injector, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    if path != "/inject" && path != "/convert" {
        return text(
            StatusCode::NOT_FOUND,
            "not found; the injector is POST /inject, the TrafficSplit conversion POST /convert\n",
        );
    }
    if req.method() != Method::POST {
        return text(
            StatusCode::METHOD_NOT_ALLOWED,
            "POST an admission.k8s.io/v1 AdmissionReview to /inject, or an apiextensions.k8s.io/v1 ConversionReview to /convert\n",
        );
    }
    let body = match read_body(req).await {
        Ok(b) => b,
        Err(rsp) => return rsp,
    };
    if path == "/convert" {
        return match conversion::review(&body) {
            Ok(out) => json(&out),
            Err(e) => {
                tracing::warn!(error = %e, "bad ConversionReview");
                text(StatusCode::BAD_REQUEST, &format!("{e}\n"))
            }
        };
    }
    match review(injector, &body).await {
        Ok(out) => match serde_json::to_value(&out) {
            Ok(v) => json(&base64_patch(v)),
            Err(e) => encode_error(&e),
        },
        Err(e) => {
            tracing::warn!(error = %e, "bad AdmissionReview");
            text(StatusCode::BAD_REQUEST, &format!("{e}\n"))
        }
    }
}

/// The request body, or the error response.
async fn read_body(req: Request<Incoming>) -> Result<Bytes, Response<Full<Bytes>>> {
    let body = Limited::new(req.into_body(), MAX_BODY);
    match tokio::time::timeout(READ_TIMEOUT, body.collect()).await {
        Ok(Ok(b)) => Ok(b.to_bytes()),
        Ok(Err(e)) => {
            let (status, msg) = if e.is::<http_body_util::LengthLimitError>() {
                (
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("the review is larger than {MAX_BODY} bytes\n"),
                )
            } else {
                (
                    StatusCode::BAD_REQUEST,
                    format!("cannot read the request body: {e}\n"),
                )
            };
            Err(text(status, &msg))
        }
        Err(_) => Err(text(
            StatusCode::REQUEST_TIMEOUT,
            "the request body was not received in time\n",
        )),
    }
}

fn json(v: &impl serde::Serialize) -> Response<Full<Bytes>> {
    match serde_json::to_vec(v) {
        Ok(json) => Response::builder()
            .status(StatusCode::OK)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(json)))
            .unwrap_or_else(|_| Response::new(Full::new(Bytes::new()))),
        Err(e) => encode_error(&e),
    }
}

fn encode_error(e: &serde_json::Error) -> Response<Full<Bytes>> {
    text(
        StatusCode::INTERNAL_SERVER_ERROR,
        &format!("cannot encode the review: {e}\n"),
    )
}

/// kube serialises the patch bytes as a JSON array of numbers; the API server's canonical form
/// for `[]byte` is a base64 string, so send that.
fn base64_patch(mut review: serde_json::Value) -> serde_json::Value {
    if let Some(patch) = review.pointer_mut("/response/patch")
        && let Ok(bytes) = serde_json::from_value::<Vec<u8>>(patch.clone())
        && let Ok(b64) = serde_json::to_value(k8s_openapi::ByteString(bytes))
    {
        *patch = b64;
    }
    review
}

fn text(status: StatusCode, msg: &str) -> Response<Full<Bytes>> {
    let mut rsp = Response::new(Full::new(Bytes::from(msg.to_string())));
    *rsp.status_mut() = status;
    rsp.headers_mut().insert(
        "content-type",
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    rsp
}

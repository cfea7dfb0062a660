//! A scripted Kubernetes API server for unit tests (tower-test mock behind a kube Client).

use hyper::{Method, Request, Response, StatusCode};
use kube::client::Body;
use serde_json::{Value, json};
use std::pin::pin;
use tower_test::mock::{Handle, SendResponse};

/// The server side of the mock.
pub(crate) type H = Handle<Request<Body>, Response<Body>>;

/// Waits for the next request, checks its method and path; returns its JSON body (Null when
/// empty), its content type and the responder.
pub(crate) async fn expect_typed(
    h: &mut H,
    method: Method,
    path: &str,
) -> (Value, Option<String>, SendResponse<Response<Body>>) {
    let mut h = pin!(h);
    let (req, send) = h.next_request().await.expect("no request");
    assert_eq!(req.method(), method);
    assert_eq!(req.uri().path(), path);
    let ct = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    let body = req.into_body().collect_bytes().await.unwrap();
    let v = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body).unwrap()
    };
    (v, ct, send)
}

/// [`expect_typed`] without the content type.
pub(crate) async fn expect(
    h: &mut H,
    method: Method,
    path: &str,
) -> (Value, SendResponse<Response<Body>>) {
    let (v, _, send) = expect_typed(h, method, path).await;
    (v, send)
}

/// Answers with `status` and JSON `v`.
pub(crate) fn reply(send: SendResponse<Response<Body>>, status: StatusCode, v: Value) {
    let mut rsp = Response::new(Body::from(serde_json::to_vec(&v).unwrap()));
    *rsp.status_mut() = status;
    send.send_response(rsp);
}

/// A failure Status object.
pub(crate) fn status(code: u16, reason: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason, "code": code, "message": reason})
}

//! A scripted Kubernetes API server for unit tests (tower-test mock behind a kube Client),
//! as in controller/src/webhook/test_api.rs.

use http::{Method, Request, Response, StatusCode};
use kube::client::Body;
use serde_json::{Value, json};
use std::pin::pin;
use tower_test::mock::{Handle, SendResponse};

/// The server side of the mock.
pub(crate) type H = Handle<Request<Body>, Response<Body>>;

/// A client talking to the mock, and the mock's handle.
pub(crate) fn pair() -> (kube::Client, H) {
    let (svc, h) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    (kube::Client::new(svc, "default"), h)
}

/// Waits for the next request, checks its method and path; returns its JSON body (Null when
/// empty), its query string and the responder.
pub(crate) async fn expect(
    h: &mut H,
    method: Method,
    path: &str,
) -> (Value, String, SendResponse<Response<Body>>) {
    let mut h = pin!(h);
    let (req, send) = h.next_request().await.expect("no request");
    assert_eq!(req.method(), method);
    assert_eq!(req.uri().path(), path);
    let query = req.uri().query().unwrap_or_default().to_string();
    let body = req.into_body().collect_bytes().await.unwrap();
    let v = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body).unwrap()
    };
    (v, query, send)
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

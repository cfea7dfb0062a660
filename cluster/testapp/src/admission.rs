//! Admission webhooks and a tiny aggregated API, for the e2e tests of those Kubernetes features.
//!
//! - `/mutate` adds the label `tulle-testapp/mutated: "true"` to any object.
//! - `/validate` denies objects labelled `e2e-deny: "true"`.
//! - `/apis/<group>/v1alpha1` (discovery) and `/apis/<group>/v1alpha1/whoamis`, which reports the user
//!   the aggregator forwarded in `X-Remote-User` / `X-Remote-Group`.

use axum::Json;
use axum::http::HeaderMap;
use axum::routing::get;
use serde_json::{Value, json};

const MUTATED: &str = "tulle-testapp/mutated";

fn review(req: &Value, response: Value) -> Json<Value> {
    let mut response = response;
    response["uid"] = req["request"]["uid"].clone();
    Json(
        json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response}),
    )
}

pub async fn mutate(Json(req): Json<Value>) -> Json<Value> {
    let labels = &req["request"]["object"]["metadata"]["labels"];
    let patch = if labels.is_object() {
        json!([{"op": "add", "path": format!("/metadata/labels/{}", MUTATED.replace('/', "~1")), "value": "true"}])
    } else {
        json!([{"op": "add", "path": "/metadata/labels", "value": {MUTATED: "true"}}])
    };
    let patch = base64(patch.to_string().as_bytes());
    review(
        &req,
        json!({"allowed": true, "patchType": "JSONPatch", "patch": patch}),
    )
}

pub async fn validate(Json(req): Json<Value>) -> Json<Value> {
    if req["request"]["object"]["metadata"]["labels"]["e2e-deny"] == "true" {
        let msg = "denied by tulle-testapp: the object has the label e2e-deny=true";
        review(
            &req,
            json!({"allowed": false, "status": {"code": 403, "message": msg}}),
        )
    } else {
        review(&req, json!({"allowed": true}))
    }
}

pub fn aggregated_api(group: &str, pod: &str) -> axum::Router {
    let gv = format!("{group}/v1alpha1");
    let discovery = json!({
        "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv,
        "resources": [{"name": "whoamis", "singularName": "whoami", "namespaced": false, "kind": "WhoAmI", "verbs": ["list"]}],
    });
    let groups = json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": [{
        "name": group, "versions": [{"groupVersion": gv, "version": "v1alpha1"}],
        "preferredVersion": {"groupVersion": gv, "version": "v1alpha1"}}]});
    let (gv2, pod) = (gv.clone(), pod.to_string());
    axum::Router::new()
        .route("/apis", get(move || async move { Json(groups) }))
        .route(&format!("/apis/{gv}"), get(move || async move { Json(discovery) }))
        .route(
            &format!("/apis/{gv}/whoamis"),
            get(move |headers: HeaderMap| async move {
                let all = |name: &str| -> Vec<String> {
                    headers.get_all(name).iter().filter_map(|v| v.to_str().ok()).map(String::from).collect()
                };
                Json(json!({"kind": "WhoAmIList", "apiVersion": gv2, "metadata": {},
                    "items": [{"user": all("x-remote-user").join(","), "groups": all("x-remote-group"), "servedBy": pod}]}))
            }),
        )
}

/// Standard base64 with padding (the admission patch encoding).
fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (input, want) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(input.as_bytes()), want);
        }
    }

    #[tokio::test]
    async fn validate_denies_only_labelled_objects() {
        let req = |labels: Value| json!({"request": {"uid": "u1", "object": {"metadata": {"labels": labels}}}});
        let Json(denied) = validate(Json(req(json!({"e2e-deny": "true"})))).await;
        assert_eq!(denied["response"]["allowed"], false);
        assert_eq!(denied["response"]["uid"], "u1");
        let Json(allowed) = validate(Json(req(json!({"x": "y"})))).await;
        assert_eq!(allowed["response"]["allowed"], true);
    }
}

//! The Secret protocol against a scripted API server: creation, the create race between
//! replicas, rotation and the replace conflict.

use super::*;
use crate::webhook::test_api::{H, expect, reply, status};
use hyper::{Method, Request, Response, StatusCode};
use kube::{Client, client::Body};
use serde_json::{Value, json};
use tower_test::mock;

const PATH: &str = "/api/v1/namespaces/tulle-system/secrets";

fn names() -> Vec<String> {
    certs::service_dns_names("tulle-controller", "tulle-system", "cluster.local")
}

fn store() -> (SecretStore, H) {
    let (svc, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let api = Api::namespaced(Client::new(svc, "tulle-system"), "tulle-system");
    (SecretStore::new(api, "tulle-webhook-tls"), handle)
}

fn secret(tls: &WebhookTls, rv: &str) -> Value {
    let mut s = serde_json::to_value(Secret {
        metadata: kube::api::ObjectMeta {
            name: Some("tulle-webhook-tls".into()),
            namespace: Some("tulle-system".into()),
            resource_version: Some(rv.into()),
            ..Default::default()
        },
        type_: Some("kubernetes.io/tls".into()),
        data: Some(to_data(tls)),
        ..Default::default()
    })
    .unwrap();
    s["apiVersion"] = json!("v1");
    s["kind"] = json!("Secret");
    s
}

fn data_of(v: &Value) -> WebhookTls {
    let s: Secret = serde_json::from_value(v.clone()).unwrap();
    from_data(s.data.as_ref()).unwrap()
}

#[tokio::test]
async fn creates_when_missing() {
    let (store, mut h) = store();
    let api = tokio::spawn(async move {
        let (_, send) = expect(&mut h, Method::GET, &format!("{PATH}/tulle-webhook-tls")).await;
        reply(send, StatusCode::NOT_FOUND, status(404, "NotFound"));
        let (body, send) = expect(&mut h, Method::POST, PATH).await;
        assert_eq!(body["type"], "kubernetes.io/tls");
        let created = data_of(&body);
        reply(send, StatusCode::CREATED, body);
        created
    });
    let tls = store.load(&names(), SystemTime::now()).await.unwrap();
    assert_eq!(tls, api.await.unwrap());
    assert_eq!(
        certs::plan(Some(&tls), &names(), SystemTime::now()),
        Plan::Keep
    );
}

#[tokio::test]
async fn create_race_uses_the_winners_material() {
    let now = SystemTime::now();
    let winner = certs::rotate(None, Plan::NewCa, &names(), now).unwrap();
    let (store, mut h) = store();
    let w = winner.clone();
    let api = tokio::spawn(async move {
        let (_, send) = expect(&mut h, Method::GET, &format!("{PATH}/tulle-webhook-tls")).await;
        reply(send, StatusCode::NOT_FOUND, status(404, "NotFound"));
        let (_, send) = expect(&mut h, Method::POST, PATH).await;
        reply(send, StatusCode::CONFLICT, status(409, "AlreadyExists"));
        let (_, send) = expect(&mut h, Method::GET, &format!("{PATH}/tulle-webhook-tls")).await;
        reply(send, StatusCode::OK, secret(&w, "7"));
    });
    let tls = store.load(&names(), now).await.unwrap();
    api.await.unwrap();
    assert_eq!(tls, winner);
}

#[tokio::test]
async fn rotates_and_rereads_on_conflict() {
    let t0 = SystemTime::now();
    let old = certs::rotate(None, Plan::NewCa, &names(), t0).unwrap();
    let late = certs::cert_not_after(&old).unwrap() - Duration::from_secs(10 * 24 * 3600);
    // What another replica wrote meanwhile.
    let theirs = certs::rotate(Some(&old), Plan::RenewCert, &names(), late).unwrap();
    let (store, mut h) = store();
    let (o, t) = (old.clone(), theirs.clone());
    let api = tokio::spawn(async move {
        let (_, send) = expect(&mut h, Method::GET, &format!("{PATH}/tulle-webhook-tls")).await;
        reply(send, StatusCode::OK, secret(&o, "1"));
        let (body, send) = expect(&mut h, Method::PUT, &format!("{PATH}/tulle-webhook-tls")).await;
        // Optimistic concurrency: the write names the version it read.
        assert_eq!(body["metadata"]["resourceVersion"], "1");
        let mine = data_of(&body);
        assert_eq!(
            mine.ca_bundle, o.ca_bundle,
            "a serving-cert renewal keeps the CA"
        );
        assert_ne!(mine.cert, o.cert);
        reply(send, StatusCode::CONFLICT, status(409, "Conflict"));
        let (_, send) = expect(&mut h, Method::GET, &format!("{PATH}/tulle-webhook-tls")).await;
        reply(send, StatusCode::OK, secret(&t, "2"));
    });
    let tls = store.load(&names(), late).await.unwrap();
    api.await.unwrap();
    assert_eq!(tls, theirs);
}

#[tokio::test]
async fn forbidden_says_which_rbac_is_missing() {
    let (store, mut h) = store();
    tokio::spawn(async move {
        let (_, send) = expect(&mut h, Method::GET, &format!("{PATH}/tulle-webhook-tls")).await;
        reply(send, StatusCode::FORBIDDEN, status(403, "Forbidden"));
    });
    let e = store.load(&names(), SystemTime::now()).await.unwrap_err();
    assert!(
        e.to_string()
            .contains("RBAC get, create and update on secrets"),
        "{e}"
    );
}

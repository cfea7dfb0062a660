//! Keeps `caBundle` of every webhook in the MutatingWebhookConfiguration (`tulle-proxy-injector`)
//! equal to the webhook CA bundle: at start, whenever the bundle changes, whenever the object
//! changes (someone edited or re-applied it) and every minute. RBAC: get and patch on
//! mutatingwebhookconfigurations (resourceName `tulle-proxy-injector`); list and watch on it
//! too for immediate reaction to edits (without them the minute check still repairs it).

use futures::StreamExt;
use k8s_openapi::{ByteString, api::admissionregistration::v1::MutatingWebhookConfiguration};
use kube::{
    Api,
    api::{Patch, PatchParams},
    runtime::{WatchStreamExt, watcher},
};
use serde_json::{Value, json};
use tokio::sync::watch;

use super::certs;

/// The JSON patch that sets `bundle` on every webhook of `mwc` whose caBundle differs (None:
/// nothing to do). Each change is guarded by a `test` of the webhook's name, so a concurrent
/// reordering makes the patch fail instead of writing the wrong entry.
pub fn bundle_patch(mwc: &MutatingWebhookConfiguration, bundle: &str) -> Option<json_patch::Patch> {
    let want = ByteString(bundle.as_bytes().to_vec());
    let mut ops = Vec::new();
    for (i, w) in mwc.webhooks.iter().flatten().enumerate() {
        match &w.client_config.ca_bundle {
            Some(have) if *have == want => continue,
            // Another replica rotated the CA; ours is the previous one: leave it.
            Some(have) if certs::supersedes(&have.0, bundle) => continue,
            _ => {}
        }
        ops.push(json!({"op": "test", "path": format!("/webhooks/{i}/name"), "value": w.name}));
        ops.push(json!({
            "op": "add",
            "path": format!("/webhooks/{i}/clientConfig/caBundle"),
            "value": serde_json::to_value(&want).unwrap_or(Value::Null),
        }));
    }
    if ops.is_empty() {
        return None;
    }
    serde_json::from_value(Value::Array(ops)).ok()
}

async fn ensure(
    api: &Api<MutatingWebhookConfiguration>,
    name: &str,
    bundle: &str,
) -> Result<(), String> {
    let hint = "the controller needs RBAC get and patch on mutatingwebhookconfigurations";
    let Some(mwc) = api
        .get_opt(name)
        .await
        .map_err(|e| format!("cannot get MutatingWebhookConfiguration {name}: {e} ({hint})"))?
    else {
        return Err(format!(
            "MutatingWebhookConfiguration {name} does not exist (not installed yet?); injection is off until it does"
        ));
    };
    let Some(patch) = bundle_patch(&mwc, bundle) else {
        return Ok(());
    };
    api.patch(name, &PatchParams::default(), &Patch::<()>::Json(patch))
        .await
        .map_err(|e| format!("cannot patch the caBundle of {name}: {e} ({hint})"))?;
    tracing::info!(webhook = name, "caBundle updated");
    Ok(())
}

/// Runs forever. Waits for the first bundle.
pub async fn maintain(
    api: Api<MutatingWebhookConfiguration>,
    name: String,
    mut bundle: watch::Receiver<String>,
) {
    if bundle.wait_for(|b| !b.is_empty()).await.is_err() {
        return;
    }
    let cfg = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut changes = std::pin::pin!(watcher(api.clone(), cfg).default_backoff());
    let mut last_error: Option<String> = None;
    let mut report = |r: Result<(), String>| match r {
        Ok(()) => last_error = None,
        Err(e) => {
            if last_error.as_ref() != Some(&e) {
                tracing::warn!(error = %e, "webhook caBundle not reconciled");
                last_error = Some(e);
            }
        }
    };
    loop {
        let current = bundle.borrow_and_update().clone();
        report(ensure(&api, &name, &current).await);
        tokio::select! {
            r = bundle.changed() => if r.is_err() { return },
            ev = changes.next() => match ev {
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "watch on the webhook configuration failed (RBAC list/watch?); the periodic check continues");
                    tokio::time::sleep(super::BUNDLE_RECHECK).await;
                }
                None => tokio::time::sleep(super::BUNDLE_RECHECK).await,
            },
            () = tokio::time::sleep(super::BUNDLE_RECHECK) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patches_only_stale_bundles() {
        let mut mwc: MutatingWebhookConfiguration = serde_json::from_value(json!({
            "metadata": {"name": "tulle-proxy-injector"},
            "webhooks": [
                {"name": "inject.tulle.io", "sideEffects": "None", "admissionReviewVersions": ["v1"],
                 "clientConfig": {"service": {"name": "tulle-controller", "namespace": "tulle-system", "path": "/inject", "port": 443}}},
                {"name": "other.tulle.io", "sideEffects": "None", "admissionReviewVersions": ["v1"],
                 "clientConfig": {"caBundle": "QUJD", "url": "https://x"}}
            ]
        }))
        .unwrap();
        let mut doc = serde_json::to_value(&mwc).unwrap();
        let p = bundle_patch(&mwc, "ABC").unwrap();
        // Only the first one (the second already holds base64("ABC")).
        assert_eq!(p.0.len(), 2);
        json_patch::patch(&mut doc, &p).unwrap();
        assert_eq!(doc["webhooks"][0]["clientConfig"]["caBundle"], "QUJD");
        mwc = serde_json::from_value(doc).unwrap();
        assert!(bundle_patch(&mwc, "ABC").is_none());
        // A new bundle replaces both.
        assert_eq!(bundle_patch(&mwc, "XYZ").unwrap().0.len(), 4);
    }

    /// A replica that has not re-read the Secret since another one rotated the CA leaves the
    /// newer bundle alone; the replica holding the newer one still writes it (issue 15, HA).
    #[test]
    fn a_stale_replica_does_not_undo_a_rotation() {
        use crate::webhook::certs::{Plan, rotate, service_dns_names};
        let names = service_dns_names("tulle-controller", "tulle-system", "cluster.local");
        let t0 = std::time::SystemTime::now();
        let old = rotate(None, Plan::NewCa, &names, t0).unwrap().ca_bundle;
        let day = std::time::Duration::from_secs(86_400);
        let new = rotate(None, Plan::NewCa, &names, t0 + day)
            .unwrap()
            .ca_bundle;
        let with = |bundle: &str| -> MutatingWebhookConfiguration {
            serde_json::from_value(json!({
                "metadata": {"name": "tulle-proxy-injector"},
                "webhooks": [{"name": "inject.tulle.io", "sideEffects": "None", "admissionReviewVersions": ["v1"],
                    "clientConfig": {"caBundle": ByteString(bundle.as_bytes().to_vec()),
                        "service": {"name": "tulle-controller", "namespace": "tulle-system"}}}]
            }))
            .unwrap()
        };
        assert!(bundle_patch(&with(&new), &old).is_none());
        assert_eq!(bundle_patch(&with(&old), &new).unwrap().0.len(), 2);
        let crd = |bundle: &str| -> k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition {
            serde_json::from_value(json!({
                "metadata": {"name": "trafficsplits.split.smi-spec.io"},
                "spec": {"group": "split.smi-spec.io", "scope": "Namespaced",
                    "names": {"plural": "trafficsplits", "kind": "TrafficSplit"}, "versions": [],
                    "conversion": {"strategy": "Webhook", "webhook": {"conversionReviewVersions": ["v1"],
                        "clientConfig": {"caBundle": ByteString(bundle.as_bytes().to_vec())}}}}
            }))
            .unwrap()
        };
        assert!(crate::webhook::crd_bundle::bundle_patch(&crd(&new), &old).is_none());
        assert!(crate::webhook::crd_bundle::bundle_patch(&crd(&old), &new).is_some());
    }

    #[tokio::test]
    async fn ensure_patches_the_live_object() {
        use crate::webhook::test_api::{expect, expect_typed, reply, status};
        use hyper::{Method, Request, Response, StatusCode};
        use kube::{Client, client::Body};
        const PATH: &str = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/tulle-proxy-injector";
        let (svc, mut h) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let api: Api<MutatingWebhookConfiguration> = Api::all(Client::new(svc, "default"));
        let live = json!({
            "apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": "tulle-proxy-injector"},
            "webhooks": [{"name": "inject.tulle.io", "sideEffects": "None", "admissionReviewVersions": ["v1"],
                "clientConfig": {"service": {"name": "tulle-controller", "namespace": "tulle-system", "path": "/inject"}}}]
        });
        let server = tokio::spawn(async move {
            let (_, send) = expect(&mut h, Method::GET, PATH).await;
            reply(send, StatusCode::OK, live.clone());
            let (patch, ct, send) = expect_typed(&mut h, Method::PATCH, PATH).await;
            assert_eq!(ct.as_deref(), Some("application/json-patch+json"));
            let mut doc = live.clone();
            json_patch::patch(
                &mut doc,
                &serde_json::from_value::<json_patch::Patch>(patch).unwrap(),
            )
            .unwrap();
            assert_eq!(doc["webhooks"][0]["clientConfig"]["caBundle"], "QUJD");
            reply(send, StatusCode::OK, doc.clone());
            // Up to date: no patch.
            let (_, send) = expect(&mut h, Method::GET, PATH).await;
            reply(send, StatusCode::OK, doc);
            // Not installed yet.
            let (_, send) = expect(&mut h, Method::GET, PATH).await;
            reply(send, StatusCode::NOT_FOUND, status(404, "NotFound"));
        });
        ensure(&api, "tulle-proxy-injector", "ABC").await.unwrap();
        ensure(&api, "tulle-proxy-injector", "ABC").await.unwrap();
        let e = ensure(&api, "tulle-proxy-injector", "ABC")
            .await
            .unwrap_err();
        assert!(e.contains("does not exist"), "{e}");
        server.await.unwrap();
    }
}

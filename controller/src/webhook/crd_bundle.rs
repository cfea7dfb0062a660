//! Keeps `spec.conversion.webhook.clientConfig.caBundle` of the CRDs whose conversion webhook
//! the controller serves (`trafficsplits.split.smi-spec.io`,
//! `traffictargets.access.smi-spec.io`) equal to the webhook CA bundle: at
//! start, whenever the bundle changes, and every minute (which also repairs a re-applied CRD).
//! A CRD whose conversion strategy is not `Webhook` is left alone. RBAC: get and patch on
//! customresourcedefinitions (apiextensions.k8s.io) with resourceNames limited to those CRDs.

use k8s_openapi::{
    ByteString, apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    Api,
    api::{Patch, PatchParams},
};
use serde_json::{Value, json};
use tokio::sync::watch;

/// The CRDs served by the conversion webhook.
pub const CONVERSION_CRDS: [&str; 2] = [
    "trafficsplits.split.smi-spec.io",
    "traffictargets.access.smi-spec.io",
];

/// The merge patch that sets `bundle` as the conversion caBundle of `crd` (None: nothing to
/// do, because it is current or the CRD does not use a conversion webhook).
pub fn bundle_patch(crd: &CustomResourceDefinition, bundle: &str) -> Option<Value> {
    let conversion = crd.spec.conversion.as_ref()?;
    if conversion.strategy != "Webhook" {
        return None;
    }
    let want = ByteString(bundle.as_bytes().to_vec());
    let current = conversion
        .webhook
        .as_ref()
        .and_then(|w| w.client_config.as_ref())
        .and_then(|c| c.ca_bundle.as_ref());
    if current == Some(&want) || current.is_some_and(|c| super::certs::supersedes(&c.0, bundle)) {
        return None;
    }
    Some(json!({"spec": {"conversion": {"webhook": {"clientConfig": {"caBundle": want}}}}}))
}

async fn ensure(
    api: &Api<CustomResourceDefinition>,
    name: &str,
    bundle: &str,
) -> Result<(), String> {
    let hint =
        format!("the controller needs RBAC get and patch on customresourcedefinitions {name}");
    let Some(crd) = api
        .get_opt(name)
        .await
        .map_err(|e| format!("cannot get CRD {name}: {e} ({hint})"))?
    else {
        return Err(format!(
            "CRD {name} is not installed; its conversion webhook gets a caBundle once it is"
        ));
    };
    let Some(patch) = bundle_patch(&crd, bundle) else {
        return Ok(());
    };
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|e| format!("cannot patch the conversion caBundle of CRD {name}: {e} ({hint})"))?;
    tracing::info!(crd = name, "conversion webhook caBundle updated");
    Ok(())
}

/// Runs forever. Waits for the first bundle.
pub async fn maintain(api: Api<CustomResourceDefinition>, mut bundle: watch::Receiver<String>) {
    if bundle.wait_for(|b| !b.is_empty()).await.is_err() {
        return;
    }
    let mut last_error: Vec<Option<String>> = vec![None; CONVERSION_CRDS.len()];
    loop {
        let current = bundle.borrow_and_update().clone();
        for (name, last) in CONVERSION_CRDS.iter().zip(&mut last_error) {
            match ensure(&api, name, &current).await {
                Ok(()) => *last = None,
                Err(e) => {
                    if last.as_ref() != Some(&e) {
                        tracing::warn!(error = %e, "conversion webhook caBundle not reconciled");
                        *last = Some(e);
                    }
                }
            }
        }
        tokio::select! {
            r = bundle.changed() => if r.is_err() { return },
            () = tokio::time::sleep(super::BUNDLE_RECHECK) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::webhook::test_api::{expect_typed, reply, status};
    use hyper::{Method, Request, Response, StatusCode};
    use kube::{Client, client::Body};

    fn crd(strategy: &str, bundle: Option<&str>) -> Value {
        let mut conversion = json!({"strategy": strategy});
        if strategy == "Webhook" {
            conversion["webhook"] = json!({"conversionReviewVersions": ["v1"], "clientConfig": {
                "service": {"namespace": "tulle-system", "name": "tulle-controller", "path": "/convert", "port": 443}}});
            if let Some(b) = bundle {
                conversion["webhook"]["clientConfig"]["caBundle"] = json!(b);
            }
        }
        json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "trafficsplits.split.smi-spec.io"},
            "spec": {"group": "split.smi-spec.io", "scope": "Namespaced",
                "names": {"kind": "TrafficSplit", "plural": "trafficsplits"},
                "versions": [], "conversion": conversion}})
    }

    #[test]
    fn patches_only_a_stale_webhook_bundle() {
        let parse = |v| serde_json::from_value::<CustomResourceDefinition>(v).unwrap();
        let p = bundle_patch(&parse(crd("Webhook", None)), "ABC").unwrap();
        assert_eq!(
            p,
            json!({"spec": {"conversion": {"webhook": {"clientConfig": {"caBundle": "QUJD"}}}}})
        );
        assert!(bundle_patch(&parse(crd("Webhook", Some("QUJD"))), "ABC").is_none());
        assert!(bundle_patch(&parse(crd("Webhook", Some("QUJD"))), "XYZ").is_some());
        assert!(bundle_patch(&parse(crd("None", None)), "ABC").is_none());
    }

    #[tokio::test]
    async fn ensure_patches_the_live_crd() {
        const PATH: &str = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/trafficsplits.split.smi-spec.io";
        let (svc, mut h) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let api: Api<CustomResourceDefinition> = Api::all(Client::new(svc, "default"));
        let server = tokio::spawn(async move {
            let (_, _, send) = expect_typed(&mut h, Method::GET, PATH).await;
            reply(send, StatusCode::OK, crd("Webhook", None));
            let (patch, ct, send) = expect_typed(&mut h, Method::PATCH, PATH).await;
            assert_eq!(ct.as_deref(), Some("application/merge-patch+json"));
            assert_eq!(
                patch["spec"]["conversion"]["webhook"]["clientConfig"]["caBundle"],
                "QUJD"
            );
            reply(send, StatusCode::OK, crd("Webhook", Some("QUJD")));
            let (_, _, send) = expect_typed(&mut h, Method::GET, PATH).await;
            reply(send, StatusCode::NOT_FOUND, status(404, "NotFound"));
        });
        let name = CONVERSION_CRDS[0];
        ensure(&api, name, "ABC").await.unwrap();
        let e = ensure(&api, name, "ABC").await.unwrap_err();
        assert!(e.contains("not installed"), "{e}");
        server.await.unwrap();
    }
}

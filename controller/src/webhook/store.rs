//! The webhook TLS material lives in Secret `tulle-webhook-tls` (controller namespace), so
//! that restarts and replicas share one CA. Every replica reads it, creates it when missing and
//! rotates it when [`certs::plan`] says so; concurrent writers are serialised by the API server
//! (create → 409 AlreadyExists, replace with a stale resourceVersion → 409 Conflict), and the
//! loser re-reads the winner's material. RBAC: get, create, update on secrets in the
//! controller namespace.

use super::{
    Metrics,
    certs::{self, Plan, WebhookTls},
};
use k8s_openapi::{ByteString, api::core::v1::Secret};
use kube::{Api, api::PostParams};
use rustls::sign::CertifiedKey;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use std::{collections::BTreeMap, sync::Arc, time::Duration, time::SystemTime};
use tokio::sync::watch;
use tulle_api::certify::SwappableCert;

/// The Secret cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The API call failed.
    #[error(
        "Secret {name}: {source} (the controller needs RBAC get, create and update on secrets in its namespace)"
    )]
    Kube {
        /// The Secret.
        name: String,
        /// The error.
        #[source]
        source: kube::Error,
    },
    /// Material could not be generated.
    #[error(transparent)]
    Cert(#[from] certs::CertError),
    /// Other writers kept winning.
    #[error("Secret {0} kept changing under us; retrying later")]
    Contended(String),
    /// The certificate could not be installed.
    #[error("cannot use the webhook certificate: {0}")]
    Install(String),
}

/// Secret `name` in the controller namespace.
#[derive(Clone, Debug)]
pub struct SecretStore {
    api: Api<Secret>,
    name: String,
}

impl SecretStore {
    /// The store.
    pub fn new(api: Api<Secret>, name: impl Into<String>) -> Self {
        Self {
            api,
            name: name.into(),
        }
    }

    /// Reads the material, creating or rotating it first when needed.
    pub async fn load(
        &self,
        dns_names: &[String],
        now: SystemTime,
    ) -> Result<WebhookTls, StoreError> {
        let kube = |source| StoreError::Kube {
            name: self.name.clone(),
            source,
        };
        for _ in 0..5 {
            match self.api.get_opt(&self.name).await.map_err(kube)? {
                None => {
                    let tls = certs::rotate(None, Plan::NewCa, dns_names, now)?;
                    let secret = Secret {
                        metadata: kube::api::ObjectMeta {
                            name: Some(self.name.clone()),
                            labels: Some(BTreeMap::from([
                                ("app.kubernetes.io/part-of".into(), "tulle".into()),
                                ("app.kubernetes.io/name".into(), "controller".into()),
                            ])),
                            ..Default::default()
                        },
                        type_: Some("kubernetes.io/tls".into()),
                        data: Some(to_data(&tls)),
                        ..Default::default()
                    };
                    match self.api.create(&PostParams::default(), &secret).await {
                        Ok(_) => {
                            tracing::info!(secret = %self.name, "created the webhook CA and serving certificate");
                            return Ok(tls);
                        }
                        Err(kube::Error::Api(e)) if e.code == 409 => continue,
                        Err(e) => return Err(kube(e)),
                    }
                }
                Some(mut secret) => {
                    let stored = from_data(secret.data.as_ref());
                    let plan = certs::plan(stored.as_ref(), dns_names, now);
                    if let (Plan::Keep, Some(tls)) = (plan, &stored) {
                        return Ok(tls.clone());
                    }
                    let tls = certs::rotate(stored.as_ref(), plan, dns_names, now)?;
                    let mut data = secret.data.take().unwrap_or_default();
                    data.extend(to_data(&tls));
                    secret.data = Some(data);
                    match self
                        .api
                        .replace(&self.name, &PostParams::default(), &secret)
                        .await
                    {
                        Ok(_) => {
                            tracing::info!(secret = %self.name, ?plan, "rotated the webhook certificate");
                            return Ok(tls);
                        }
                        Err(kube::Error::Api(e)) if e.code == 409 => continue,
                        Err(e) => return Err(kube(e)),
                    }
                }
            }
        }
        Err(StoreError::Contended(self.name.clone()))
    }
}

fn to_data(tls: &WebhookTls) -> BTreeMap<String, ByteString> {
    [
        ("ca.crt", &tls.ca_bundle),
        ("ca.key", &tls.ca_key),
        ("tls.crt", &tls.cert),
        ("tls.key", &tls.key),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
    .collect()
}

/// The material in a Secret's data, if all four keys are there as UTF-8.
pub fn from_data(data: Option<&BTreeMap<String, ByteString>>) -> Option<WebhookTls> {
    let data = data?;
    let get = |k: &str| String::from_utf8(data.get(k)?.0.clone()).ok();
    Some(WebhookTls {
        ca_bundle: get("ca.crt")?,
        ca_key: get("ca.key")?,
        cert: get("tls.crt")?,
        key: get("tls.key")?,
    })
}

/// Installs `tls` as the served certificate.
pub fn install(cert: &SwappableCert, tls: &WebhookTls) -> Result<(), StoreError> {
    let chain = CertificateDer::pem_slice_iter(tls.cert.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| StoreError::Install(e.to_string()))?;
    let key = PrivateKeyDer::from_pem_slice(tls.key.as_bytes())
        .map_err(|e| StoreError::Install(e.to_string()))?;
    let signing = rustls::crypto::aws_lc_rs::sign::any_ecdsa_type(&key)
        .map_err(|e| StoreError::Install(e.to_string()))?;
    cert.set(Arc::new(CertifiedKey::new(chain, signing)));
    Ok(())
}

/// The first delay after a failed load; it doubles up to the `interval` of [`maintain`].
const RETRY_MIN: Duration = Duration::from_secs(1);

/// Keeps the served certificate and `bundle` (the CA bundle for the webhook configuration)
/// current forever: reads (creating or rotating) the Secret every `interval`, retrying
/// sooner on failure, and exports the certificate's remaining lifetime.
pub async fn maintain(
    store: SecretStore,
    dns_names: Vec<String>,
    cert: Arc<SwappableCert>,
    bundle: watch::Sender<String>,
    metrics: Metrics,
    interval: Duration,
) {
    let mut current: Option<WebhookTls> = None;
    let mut backoff = RETRY_MIN;
    loop {
        let now = SystemTime::now();
        let wait = match store.load(&dns_names, now).await {
            Ok(tls) => {
                if current.as_ref() != Some(&tls) {
                    match install(&cert, &tls) {
                        Ok(()) => {
                            tracing::info!("webhook serving certificate installed");
                            bundle.send_replace(tls.ca_bundle.clone());
                            current = Some(tls);
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "cannot install the webhook certificate")
                        }
                    }
                }
                backoff = RETRY_MIN;
                interval
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot load the webhook certificate; retrying");
                backoff = (backoff * 2).min(interval);
                backoff
            }
        };
        if let Some(tls) = &current
            && let Ok(not_after) = certs::cert_not_after(tls)
        {
            let left = match not_after.duration_since(SystemTime::now()) {
                Ok(d) => d.as_secs_f64(),
                Err(e) => -e.duration().as_secs_f64(),
            };
            metrics.certificate_expiry_seconds.set(left);
        }
        tokio::time::sleep(wait).await;
    }
}

#[cfg(test)]
mod tests;

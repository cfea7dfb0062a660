//! A temporary namespace per test.

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, PostParams};

use crate::{Error, Result, kubectl};

/// A namespace created for one test and deleted (without waiting) when dropped.
/// It carries the label `tulle.io/e2e=true` plus `tulle.io/e2e-ns=<name>` for webhook selectors.
pub struct TestNamespace {
    pub name: String,
    pub client: kube::Client,
}

impl TestNamespace {
    /// Create `e2e-<prefix>-<random>`.
    pub async fn new(prefix: &str) -> Result<Self> {
        let client = crate::client().await?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let name = format!("e2e-{prefix}-{:x}", (nanos ^ std::process::id()) & 0xfffff);
        let ns: Namespace = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "labels": {"tulle.io/e2e": "true", "tulle.io/e2e-ns": name}}
        }))
        .map_err(|e| Error::Io(e.to_string()))?;
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .map_err(|source| Error::Kube {
                what: format!("creating namespace {name}"),
                source,
            })?;
        Ok(Self { name, client })
    }

    /// A typed API for namespaced objects in this namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.name)
    }

    /// `kubectl apply` YAML (one or more documents) in this namespace.
    pub fn apply(&self, yaml: &str) -> Result<String> {
        kubectl::run_stdin(&["apply", "-n", &self.name, "-f", "-"], yaml)
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        if std::env::var_os("TULLE_E2E_KEEP").is_some() {
            eprintln!("TULLE_E2E_KEEP set: keeping namespace {}", self.name);
            return;
        }
        let _ = kubectl::run(&["delete", "namespace", &self.name, "--wait=false"]);
    }
}

//! The static inbound policy (`TULLE_PROXY_STATIC_POLICY`, for tests and benchmarks): a
//! JSON file of the same shape as the controller's `PodPolicy`, replaceable at runtime
//! ([`StaticPolicy::replace`]).
//!
//! ```json
//! {"default_policy": "deny", "targeted": true,
//!  "authorizations": [{"traffic_target": "shop/web", "identities": ["client.shop.serviceaccount.identity.tulle.cluster.local"],
//!    "ports": [8080], "http_routes": [{"name": "web/api", "path_regex": "/api", "methods": ["GET"],
//!    "headers": [{"name": "x-canary", "value_regex": "true"}]}]}],
//!  "probes": [{"port": 8080, "path": "/ready"}]}
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::watch;
use tulle_api::policy as pb;

use super::{Policy, PolicyRx};

/// The static policy file.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    /// `allow` (default), `authenticated` or `deny`.
    #[serde(default)]
    pub default_policy: DefaultName,
    #[serde(default)]
    pub targeted: bool,
    #[serde(default)]
    pub authorizations: Vec<FileAuthorization>,
    #[serde(default)]
    pub probes: Vec<FileProbe>,
}

/// The default policy's name in the file.
#[derive(Debug, Clone, Copy, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DefaultName {
    #[default]
    Allow,
    Authenticated,
    Deny,
}

/// `Authorization` of the proto.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileAuthorization {
    pub traffic_target: String,
    #[serde(default)]
    pub identities: Vec<String>,
    #[serde(default)]
    pub ports: Vec<u32>,
    #[serde(default)]
    pub http_routes: Vec<FileRoute>,
}

/// `HttpRoute` of the proto.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRoute {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub path_regex: String,
    #[serde(default)]
    pub methods: Vec<String>,
    #[serde(default)]
    pub headers: Vec<FileHeader>,
}

/// `HeaderMatch` of the proto.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileHeader {
    pub name: String,
    pub value_regex: String,
}

/// `Probe` of the proto.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileProbe {
    pub port: u32,
    #[serde(default)]
    pub path: String,
}

/// The static policy file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PolicyFileError {
    #[error("reading the static policy {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "parsing the static policy {path}: {source}; expected {{\"default_policy\": \"allow|authenticated|deny\", \"targeted\": bool, \"authorizations\": [...], \"probes\": [...]}}"
    )]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
}

impl PolicyFile {
    pub fn from_path(path: &Path) -> Result<Self, PolicyFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| PolicyFileError::Read {
            path: path.into(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|source| PolicyFileError::Parse {
            path: path.into(),
            source,
        })
    }

    /// The same policy as the controller would send it.
    pub fn to_proto(&self) -> pb::PodPolicy {
        let default = match self.default_policy {
            DefaultName::Allow => pb::DefaultPolicy::Allow,
            DefaultName::Authenticated => pb::DefaultPolicy::Authenticated,
            DefaultName::Deny => pb::DefaultPolicy::Deny,
        };
        pb::PodPolicy {
            default_policy: default as i32,
            targeted: self.targeted,
            authorizations: self
                .authorizations
                .iter()
                .map(|a| pb::Authorization {
                    traffic_target: a.traffic_target.clone(),
                    identities: a.identities.clone(),
                    ports: a.ports.clone(),
                    http_routes: a
                        .http_routes
                        .iter()
                        .map(|r| pb::HttpRoute {
                            name: r.name.clone(),
                            path_regex: r.path_regex.clone(),
                            methods: r.methods.clone(),
                            headers: r
                                .headers
                                .iter()
                                .map(|h| pb::HeaderMatch {
                                    name: h.name.clone(),
                                    value_regex: h.value_regex.clone(),
                                })
                                .collect(),
                        })
                        .collect(),
                })
                .collect(),
            probes: self
                .probes
                .iter()
                .map(|p| pb::Probe {
                    port: p.port,
                    path: p.path.clone(),
                })
                .collect(),
        }
    }

    /// Compiles the policy.
    pub fn compile(&self) -> Policy {
        Policy::from_proto(&self.to_proto())
    }
}

/// A static policy, replaceable at runtime: requests and connections see the new policy at
/// once, and open connections it no longer admits are closed.
#[derive(Debug)]
pub struct StaticPolicy {
    tx: watch::Sender<Arc<Policy>>,
}

impl StaticPolicy {
    pub fn new(file: &PolicyFile) -> Self {
        StaticPolicy {
            tx: watch::channel(Arc::new(file.compile())).0,
        }
    }

    /// Replaces the policy.
    pub fn replace(&self, file: &PolicyFile) {
        self.tx.send_replace(Arc::new(file.compile()));
    }

    /// A receiver of the current policy.
    pub fn watch(&self) -> PolicyRx {
        self.tx.subscribe()
    }
}

//! The CLI's error types and its stable exit codes.

use crate::manifest::METRICS_API_SERVICE;
use crate::pki::PkiError;

/// Stable exit codes.
pub mod exit {
    /// Success.
    pub const OK: u8 = 0;
    /// A failure (cluster unreachable, I/O error, ...).
    pub const FAILURE: u8 = 1;
    /// A usage error: unknown flag, missing or conflicting arguments (reported by clap).
    pub const USAGE: u8 = 2;
    /// Bad configuration or input: unusable certificate files, invalid values.
    pub const CONFIG: u8 = 64;
    /// `stat`/`edges`: the SMI Traffic Metrics API is not installed, or not available (the
    /// controller is not ready, or its metrics backend failed).
    pub const UNAVAILABLE: u8 = 69;
    /// `stat`/`edges`: the Kubernetes API refused the request (RBAC).
    pub const FORBIDDEN: u8 = 77;
}

/// Everything that can make a command fail.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The supplied or generated PKI is unusable.
    #[error(transparent)]
    Pki(#[from] PkiError),
    /// An input value is invalid.
    #[error("invalid input: {0}")]
    Input(String),
    /// The manifests could not be serialized (a bug).
    #[error("cannot render manifests: {0}")]
    Render(String),
    /// Writing to stdout failed.
    #[error("cannot write to stdout: {0}")]
    Stdout(#[source] std::io::Error),
    /// The async runtime could not start.
    #[error("cannot start the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// The SMI Traffic Metrics API could not answer (`stat`, `edges`).
    #[error(transparent)]
    Metrics(#[from] ApiError),
    /// `tulle dashboard` could not reach the dashboard.
    #[error("{0}")]
    Dashboard(String),
}

impl Error {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Pki(_) | Error::Input(_) => exit::CONFIG,
            Error::Render(_) | Error::Stdout(_) | Error::Runtime(_) | Error::Dashboard(_) => {
                exit::FAILURE
            }
            Error::Metrics(e) => e.exit_code(),
        }
    }
}

/// Why a request to the metrics API failed; each kind has its own exit code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// The API group is not served: the APIService is missing (exit 69).
    #[error(
        "the SMI Traffic Metrics API (metrics.smi-spec.io/v1alpha1) is not installed: APIService {METRICS_API_SERVICE} is missing; install the control plane with `tulle install | kubectl apply -f -` (or upgrade the tulle chart), then check `kubectl get apiservice {METRICS_API_SERVICE}`"
    )]
    NotInstalled,
    /// The APIService exists but is not Available, or the API's backend failed (exit 69).
    #[error("{0}")]
    Unavailable(String),
    /// RBAC refused the request: the API's message says what is missing (exit 77).
    #[error("{0}")]
    Forbidden(String),
    /// The resource does not exist (exit 1).
    #[error("{0}")]
    NotFound(String),
    /// The API refused a parameter (exit 64).
    #[error("{0}")]
    BadRequest(String),
    /// Anything else: the cluster cannot be reached, an unexpected answer (exit 1).
    #[error("{0}")]
    Other(String),
}

impl ApiError {
    /// The process exit code.
    pub fn exit_code(&self) -> u8 {
        match self {
            ApiError::NotInstalled | ApiError::Unavailable(_) => exit::UNAVAILABLE,
            ApiError::Forbidden(_) => exit::FORBIDDEN,
            ApiError::BadRequest(_) => exit::CONFIG,
            ApiError::NotFound(_) | ApiError::Other(_) => exit::FAILURE,
        }
    }
}

/// `a: b: c` from an error and its sources, skipping a source whose text repeats its parent's
/// (how `version` and `check` report a cluster that cannot be reached).
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cur = s.source();
    }
    out
}

//! The errors of the library; the binary turns them into `anyhow` at its edge.

/// What went wrong.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes API request failed.
    #[error("GET {path}: {message}")]
    Api {
        /// The request path.
        path: String,
        /// The status code, when the API answered.
        status: Option<u16>,
        /// What it said.
        message: String,
    },
    /// An answer could not be read.
    #[error("reading {what}: {message}")]
    Decode {
        /// What was read.
        what: String,
        /// Why it failed.
        message: String,
    },
    /// No such page or object.
    #[error("{0}")]
    NotFound(String),
    /// A bad request (query parameter).
    #[error("{0}")]
    BadRequest(String),
    /// A template failed to render.
    #[error("rendering a page: {0}")]
    Render(#[from] askama::Error),
    /// Configuration or startup.
    #[error("{0}")]
    Config(String),
    /// I/O (binding the listener, serving).
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: std::io::Error,
    },
}

impl Error {
    /// Whether the API said 403 (the dashboard's RBAC does not allow it).
    pub fn is_forbidden(&self) -> bool {
        matches!(
            self,
            Error::Api {
                status: Some(403),
                ..
            }
        )
    }

    /// Whether the API said 404.
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            Error::Api {
                status: Some(404),
                ..
            } | Error::NotFound(_)
        )
    }
}

/// The library's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

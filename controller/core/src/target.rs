//! Parsing destination paths: `svc.ns.svc.<cluster-domain>:port` or `ip:port`.

use std::net::{IpAddr, SocketAddr};

/// What a client asks to resolve.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Target {
    /// A Service port by name.
    Service {
        /// Namespace.
        namespace: String,
        /// Service name.
        name: String,
        /// Service port.
        port: u16,
    },
    /// An address: a ClusterIP (→ its Service) or a pod IP (→ that pod).
    Addr(SocketAddr),
}

/// A path that cannot be resolved by this controller.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TargetError {
    /// Not `host:port`.
    #[error("path {0:?} is not host:port")]
    NoPort(String),
    /// A host name that is not `svc.ns.svc.<cluster-domain>`.
    #[error("{host:?} is not a service name of the form <svc>.<ns>.svc.{domain}")]
    NotAService {
        /// The host given.
        host: String,
        /// The cluster domain.
        domain: String,
    },
}

impl Target {
    /// Parses `path` with `cluster_domain` (e.g. `cluster.local`).
    pub fn parse(path: &str, cluster_domain: &str) -> Result<Self, TargetError> {
        if let Ok(sa) = path.parse::<SocketAddr>() {
            return Ok(Target::Addr(sa));
        }
        let (host, port) = path
            .rsplit_once(':')
            .ok_or_else(|| TargetError::NoPort(path.to_string()))?;
        let port: u16 = port
            .parse()
            .map_err(|_| TargetError::NoPort(path.to_string()))?;
        if let Ok(ip) = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
        {
            return Ok(Target::Addr(SocketAddr::new(ip, port)));
        }
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        let not = || TargetError::NotAService {
            host: host.clone(),
            domain: cluster_domain.to_string(),
        };
        let rest = host
            .strip_suffix(cluster_domain)
            .and_then(|r| r.strip_suffix(".svc."))
            .ok_or_else(not)?;
        match rest.split_once('.') {
            Some((name, ns)) if !name.is_empty() && !ns.is_empty() && !ns.contains('.') => {
                Ok(Target::Service {
                    namespace: ns.to_string(),
                    name: name.to_string(),
                    port,
                })
            }
            _ => Err(not()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_paths() {
        assert_eq!(
            Target::parse("web.shop.svc.cluster.local:8080", "cluster.local"),
            Ok(Target::Service {
                namespace: "shop".into(),
                name: "web".into(),
                port: 8080
            })
        );
        assert_eq!(
            Target::parse("Web.shop.svc.cluster.local.:80", "cluster.local"),
            Ok(Target::Service {
                namespace: "shop".into(),
                name: "web".into(),
                port: 80
            })
        );
        assert_eq!(
            Target::parse("10.0.0.1:80", "cluster.local"),
            Ok(Target::Addr("10.0.0.1:80".parse().unwrap()))
        );
        assert_eq!(
            Target::parse("[fd00::1]:80", "cluster.local"),
            Ok(Target::Addr("[fd00::1]:80".parse().unwrap()))
        );
        assert!(Target::parse("web.shop:80", "cluster.local").is_err());
        assert!(Target::parse("example.com:443", "cluster.local").is_err());
        assert!(Target::parse("web.shop.svc.cluster.local", "cluster.local").is_err());
        assert!(Target::parse("a.b.c.svc.cluster.local:1", "cluster.local").is_err());
    }
}

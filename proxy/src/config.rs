//! Typed configuration from `TULLE_PROXY_*` environment variables.
//!
//! Values are read through the [`Strings`] trait so tests can pass a map instead of the
//! process environment. Every bad value is reported with the name of its variable.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;
use tulle_api::proxy_contract::env as contract;
use tulle_api::proxy_contract::{ADMIN_PORT, INBOUND_PORT, OUTBOUND_PORT};

/// A source of configuration strings (the process environment, or a map in tests).
pub trait Strings {
    /// The value of `name`, if set and non-empty.
    fn get(&self, name: &str) -> Option<String>;
}

/// The process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct Env;

impl Strings for Env {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    }
}

impl<S: std::hash::BuildHasher> Strings for HashMap<&str, &str, S> {
    fn get(&self, name: &str) -> Option<String> {
        HashMap::get(self, name)
            .map(|v| v.to_string())
            .filter(|v| !v.is_empty())
    }
}

/// A configuration value that could not be used.
#[derive(Debug, thiserror::Error)]
#[error("invalid {var}={value:?}: {reason}")]
pub struct ConfigError {
    /// The environment variable at fault.
    pub var: &'static str,
    /// Its value (empty when missing).
    pub value: String,
    /// What is wrong and what is expected.
    pub reason: String,
}

pub const ENV_INBOUND_LISTEN_ADDR: &str = contract::INBOUND_LISTEN_ADDR;
pub const ENV_OUTBOUND_LISTEN_ADDR: &str = contract::OUTBOUND_LISTEN_ADDR;
pub const ENV_ADMIN_LISTEN_ADDR: &str = contract::ADMIN_LISTEN_ADDR;
pub const ENV_IDENTITY_CERT_FILE: &str = contract::IDENTITY_CERT_FILE;
pub const ENV_IDENTITY_KEY_FILE: &str = contract::IDENTITY_KEY_FILE;
pub const ENV_IDENTITY_TRUST_ANCHORS_FILE: &str = contract::IDENTITY_TRUST_ANCHORS_FILE;
pub const ENV_IDENTITY_TRUST_ANCHORS_PEM: &str = contract::IDENTITY_TRUST_ANCHORS_PEM;
pub const ENV_IDENTITY_NAME: &str = contract::IDENTITY_NAME;
pub const ENV_IDENTITY_SVC_ADDR: &str = contract::IDENTITY_SVC_ADDR;
pub const ENV_IDENTITY_SVC_NAME: &str = contract::IDENTITY_SVC_NAME;
pub const ENV_IDENTITY_TOKEN_FILE: &str = contract::IDENTITY_TOKEN_FILE;
pub const ENV_DESTINATION_SVC_ADDR: &str = contract::DESTINATION_SVC_ADDR;
pub const ENV_DESTINATION_SVC_NAME: &str = contract::DESTINATION_SVC_NAME;
pub const ENV_POLICY_SVC_ADDR: &str = contract::POLICY_SVC_ADDR;
pub const ENV_POLICY_SVC_NAME: &str = contract::POLICY_SVC_NAME;
pub const ENV_STATIC_POLICY: &str = contract::STATIC_POLICY;
pub const ENV_POD_NAMESPACE: &str = contract::POD_NAMESPACE;
pub const ENV_POD_NAME: &str = contract::POD_NAME;
pub const ENV_STATIC_CONFIG: &str = contract::STATIC_CONFIG;
pub const ENV_OUTBOUND_ORIG_DST_FALLBACK: &str = contract::OUTBOUND_ORIG_DST_FALLBACK;
pub const ENV_INBOUND_APP_HOST: &str = contract::INBOUND_APP_HOST;
pub const ENV_INBOUND_PORT_FALLBACK: &str = contract::INBOUND_PORT_FALLBACK;
pub const ENV_OPAQUE_PORTS: &str = contract::OPAQUE_PORTS;
pub const ENV_DETECT_TIMEOUT: &str = contract::DETECT_TIMEOUT;
pub const ENV_CONNECT_TIMEOUT: &str = contract::CONNECT_TIMEOUT;
pub const ENV_RESPONSE_TIMEOUT: &str = contract::RESPONSE_TIMEOUT;
pub const ENV_HEADER_READ_TIMEOUT: &str = contract::HEADER_READ_TIMEOUT;
pub const ENV_IDLE_TIMEOUT: &str = contract::IDLE_TIMEOUT;
pub const ENV_ROUTE_IDLE_TIMEOUT: &str = contract::ROUTE_IDLE_TIMEOUT;
pub const ENV_MAX_IN_FLIGHT: &str = contract::MAX_IN_FLIGHT;
pub const ENV_MAX_HEADER_BYTES: &str = contract::MAX_HEADER_BYTES;
pub const ENV_H2_MAX_CONCURRENT_STREAMS: &str = contract::H2_MAX_CONCURRENT_STREAMS;
pub const ENV_H2_IDLE_TIMEOUT: &str = contract::H2_IDLE_TIMEOUT;
pub const ENV_INBOUND_MAX_CONNECTIONS: &str = contract::INBOUND_MAX_CONNECTIONS;
pub const ENV_OUTBOUND_MAX_CONNECTIONS: &str = contract::OUTBOUND_MAX_CONNECTIONS;
pub const ENV_ADMIN_MAX_CONNECTIONS: &str = contract::ADMIN_MAX_CONNECTIONS;
pub const ENV_MAX_REQUEST_BODY_BYTES: &str = contract::MAX_REQUEST_BODY_BYTES;
pub const ENV_SHUTDOWN_GRACE: &str = contract::SHUTDOWN_GRACE;
pub const ENV_WORKER_THREADS: &str = contract::WORKER_THREADS;
pub const ENV_LOG: &str = contract::LOG;
pub const ENV_MESH_NETWORKS: &str = contract::MESH_NETWORKS;

/// The proxy's identity: its name, trust anchors and where its certificate comes from.
#[derive(Debug, Clone, serde::Serialize)]
pub struct IdentityConfig {
    pub trust_anchors: TrustAnchors,
    /// The proxy's own identity name (a DNS name carried as DNS SAN of its certificate).
    pub name: String,
    pub source: IdentitySource,
}

/// Where the trust anchors come from: a PEM file (reloaded when it changes), the PEM text
/// itself, or both: the file of the namespace's trust-anchor ConfigMap, which the controller
/// copies into every namespace and the injector mounts, with the PEM the injector also sets
/// as the fallback until that file exists.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TrustAnchors {
    File(PathBuf),
    Pem(String),
    FileOrPem { file: PathBuf, pem: String },
}

impl TrustAnchors {
    /// Where the anchors come from, for error messages.
    pub fn origin(&self) -> PathBuf {
        match self {
            TrustAnchors::File(p) | TrustAnchors::FileOrPem { file: p, .. } => p.clone(),
            TrustAnchors::Pem(_) => PathBuf::from(format!("${ENV_IDENTITY_TRUST_ANCHORS_PEM}")),
        }
    }

    /// The file to watch for new anchors, if any.
    pub fn watched_file(&self) -> Option<PathBuf> {
        match self {
            TrustAnchors::File(p) | TrustAnchors::FileOrPem { file: p, .. } => Some(p.clone()),
            TrustAnchors::Pem(_) => None,
        }
    }

    /// The PEM bytes.
    pub fn pem(&self) -> std::io::Result<Vec<u8>> {
        match self {
            TrustAnchors::File(p) => std::fs::read(p),
            TrustAnchors::Pem(s) => Ok(s.clone().into_bytes()),
            TrustAnchors::FileOrPem { file, pem } => match std::fs::read(file) {
                Ok(bytes) if !bytes.iter().all(u8::is_ascii_whitespace) => Ok(bytes),
                _ => Ok(pem.clone().into_bytes()),
            },
        }
    }
}

/// Where the certificate comes from.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum IdentitySource {
    /// PEM files (development, benchmarks): `TULLE_PROXY_IDENTITY_{CERT,KEY}_FILE`.
    Files {
        cert_file: PathBuf,
        key_file: PathBuf,
    },
    /// tulle-identity's Certify, with the projected ServiceAccount token.
    Service {
        svc: ControlService,
        token_file: PathBuf,
    },
}

/// A control-plane gRPC service reached over TLS.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ControlService {
    /// `host:port`.
    pub addr: String,
    /// The identity name the server's certificate must carry.
    pub name: String,
}

/// The destination (discovery) service and who is asking it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DestinationConfig {
    pub svc: ControlService,
    pub namespace: String,
    pub pod: Option<String>,
}

/// The policy service (SMI Traffic Access) and the pod whose inbound policy is watched.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PolicyConfig {
    pub svc: ControlService,
    pub namespace: String,
    pub pod: String,
}

/// The effective proxy configuration.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Config {
    pub inbound_addr: SocketAddr,
    pub outbound_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub identity: IdentityConfig,
    /// The controller's destination service; static discovery only when unset.
    pub destination: Option<DestinationConfig>,
    /// JSON file with static destinations (see `discovery::StaticFile`).
    pub static_config: Option<PathBuf>,
    /// The controller's policy service; without it (and without `static_policy`) inbound
    /// traffic is allowed.
    pub policy: Option<PolicyConfig>,
    /// JSON file with a static inbound policy (see `policy::PolicyFile`).
    pub static_policy: Option<PathBuf>,
    /// Original destination assumed for outbound connections that were not redirected.
    pub outbound_orig_dst_fallback: Option<SocketAddr>,
    /// Host of the application for inbound connections that were not redirected by iptables
    /// (default: the address the client connected to). Loopback only for clients that
    /// connected to loopback themselves (see `inbound::app_ip`).
    pub inbound_app_host: Option<IpAddr>,
    /// Application port assumed when the inbound side cannot learn the original port.
    pub inbound_port_fallback: Option<u16>,
    /// Ports whose traffic skips protocol detection (server-speaks-first protocols).
    pub opaque_ports: Vec<u16>,
    /// The cluster's pod and service networks: an original destination inside them is
    /// never sent in plaintext because discovery did not answer (fail closed); only the
    /// controller's own "not a mesh destination" answer lets it go to the original
    /// destination as is.
    #[serde(serialize_with = "nets::serialize")]
    pub mesh_networks: Vec<ipnet::IpNet>,
    #[serde(with = "ms")]
    pub detect_timeout: Duration,
    #[serde(with = "ms")]
    pub connect_timeout: Duration,
    #[serde(with = "ms")]
    pub response_timeout: Duration,
    #[serde(with = "ms")]
    pub header_read_timeout: Duration,
    #[serde(with = "ms")]
    pub idle_timeout: Duration,
    /// Outbound routes unused this long are dropped (and with them their discovery watch).
    #[serde(with = "ms")]
    pub route_idle_timeout: Duration,
    /// Requests in flight per destination before new ones fail fast with 503.
    pub max_in_flight: usize,
    /// Maximum size of a request's headers (HTTP/1 buffer and HTTP/2 header list).
    pub max_header_bytes: usize,
    /// Maximum size of an inbound request's body (`None`: unlimited, the default); larger
    /// requests get 413 or are cut.
    pub max_request_body_bytes: Option<usize>,
    pub h2_max_concurrent_streams: u32,
    /// An HTTP/2 connection the proxy serves with no request waiting for its response this
    /// long is shut down gracefully (GOAWAY; streams still open finish).
    #[serde(with = "ms")]
    pub h2_idle_timeout: Duration,
    /// Connections open at once on the inbound listener; past it new ones are reset at once.
    pub inbound_max_connections: usize,
    /// Connections open at once on the outbound listener; past it new ones are reset at once.
    pub outbound_max_connections: usize,
    /// Connections open at once on the admin listener; past it new ones are reset at once.
    pub admin_max_connections: usize,
    #[serde(with = "ms")]
    pub shutdown_grace: Duration,
    pub worker_threads: usize,
    pub log: String,
}

mod nets {
    pub fn serialize<S: serde::Serializer>(n: &[ipnet::IpNet], s: S) -> Result<S::Ok, S::Error> {
        let list: Vec<String> = n.iter().map(ToString::to_string).collect();
        s.serialize_str(&list.join(","))
    }
}

/// The default mesh networks (as Linkerd's `clusterNetworks`): the private IPv4 ranges, the
/// shared address space, and IPv6 unique local addresses.
pub const DEFAULT_MESH_NETWORKS: &str =
    "10.0.0.0/8,100.64.0.0/10,172.16.0.0/12,192.168.0.0/16,fd00::/8";

mod ms {
    pub fn serialize<S: serde::Serializer>(
        d: &std::time::Duration,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{}ms", d.as_millis()))
    }
}

/// The longest (and the default) `TULLE_PROXY_DETECT_TIMEOUT`.
pub const MAX_DETECT_TIMEOUT: Duration = Duration::from_secs(1);

/// The initial HTTP/2 flow-control window of a stream, on every HTTP/2 connection the proxy
/// serves or opens.
pub const H2_STREAM_WINDOW: u32 = 256 * 1024;
/// The initial HTTP/2 flow-control window of a connection, served or opened.
pub const H2_CONNECTION_WINDOW: u32 = 1024 * 1024;

pub const DEFAULT_OPAQUE_PORTS: &[u16] = &[25, 587, 3306, 4444, 5432, 6379, 9300, 11211];

impl Config {
    /// Reads and validates the configuration. Identity files are required.
    pub fn from_strings(env: &impl Strings) -> Result<Self, ConfigError> {
        let required = |var: &'static str| {
            env.get(var).ok_or_else(|| ConfigError {
                var,
                value: String::new(),
                reason: "required; set it".into(),
            })
        };
        let service = |addr_var, name_var| -> Result<ControlService, ConfigError> {
            Ok(ControlService {
                addr: required(addr_var)?,
                name: parse_name(name_var, &required(name_var)?)?,
            })
        };
        let source = if env.get(ENV_IDENTITY_SVC_ADDR).is_some() {
            IdentitySource::Service {
                svc: service(ENV_IDENTITY_SVC_ADDR, ENV_IDENTITY_SVC_NAME)?,
                token_file: required(ENV_IDENTITY_TOKEN_FILE)?.into(),
            }
        } else {
            IdentitySource::Files {
                cert_file: required(ENV_IDENTITY_CERT_FILE)?.into(),
                key_file: required(ENV_IDENTITY_KEY_FILE)?.into(),
            }
        };
        let identity = IdentityConfig {
            trust_anchors: match (
                env.get(ENV_IDENTITY_TRUST_ANCHORS_FILE),
                env.get(ENV_IDENTITY_TRUST_ANCHORS_PEM),
            ) {
                (Some(f), None) => TrustAnchors::File(f.into()),
                (None, Some(pem)) => TrustAnchors::Pem(pem),
                (None, None) => {
                    return Err(ConfigError {
                        var: ENV_IDENTITY_TRUST_ANCHORS_FILE,
                        value: String::new(),
                        reason: format!(
                            "required (or {ENV_IDENTITY_TRUST_ANCHORS_PEM} with the PEM itself); set one"
                        ),
                    });
                }
                (Some(f), Some(pem)) => TrustAnchors::FileOrPem {
                    file: f.into(),
                    pem,
                },
            },
            name: parse_name(ENV_IDENTITY_NAME, &required(ENV_IDENTITY_NAME)?)?,
            source,
        };
        let destination = match env.get(ENV_DESTINATION_SVC_ADDR) {
            None => None,
            Some(_) => Some(DestinationConfig {
                svc: service(ENV_DESTINATION_SVC_ADDR, ENV_DESTINATION_SVC_NAME)?,
                namespace: required(ENV_POD_NAMESPACE)?,
                pod: env.get(ENV_POD_NAME),
            }),
        };
        let policy = match env.get(ENV_POLICY_SVC_ADDR) {
            None => None,
            Some(_) => Some(PolicyConfig {
                svc: service(ENV_POLICY_SVC_ADDR, ENV_POLICY_SVC_NAME)?,
                namespace: required(ENV_POD_NAMESPACE)?,
                pod: required(ENV_POD_NAME)?,
            }),
        };
        let static_policy = env.get(ENV_STATIC_POLICY).map(PathBuf::from);
        if policy.is_some()
            && let Some(p) = &static_policy
        {
            return Err(ConfigError {
                var: ENV_STATIC_POLICY,
                value: p.display().to_string(),
                reason: format!("set only one of it and {ENV_POLICY_SVC_ADDR}"),
            });
        }
        let detect_timeout = dur(env, ENV_DETECT_TIMEOUT, MAX_DETECT_TIMEOUT)?;
        if detect_timeout > MAX_DETECT_TIMEOUT || detect_timeout.is_zero() {
            return Err(ConfigError {
                var: ENV_DETECT_TIMEOUT,
                value: env.get(ENV_DETECT_TIMEOUT).unwrap_or_default(),
                reason: "must be between 1ms and 1s".into(),
            });
        }
        let worker_threads = parse(env, ENV_WORKER_THREADS, 1usize)?;
        if !(1..=64).contains(&worker_threads) {
            return Err(ConfigError {
                var: ENV_WORKER_THREADS,
                value: worker_threads.to_string(),
                reason: "must be between 1 and 64".into(),
            });
        }
        Ok(Config {
            inbound_addr: parse(
                env,
                ENV_INBOUND_LISTEN_ADDR,
                ([0, 0, 0, 0], INBOUND_PORT).into(),
            )?,
            outbound_addr: parse(
                env,
                ENV_OUTBOUND_LISTEN_ADDR,
                ([127, 0, 0, 1], OUTBOUND_PORT).into(),
            )?,
            admin_addr: parse(
                env,
                ENV_ADMIN_LISTEN_ADDR,
                ([0, 0, 0, 0], ADMIN_PORT).into(),
            )?,
            identity,
            destination,
            static_config: env.get(ENV_STATIC_CONFIG).map(PathBuf::from),
            policy,
            static_policy,
            outbound_orig_dst_fallback: opt(env, ENV_OUTBOUND_ORIG_DST_FALLBACK)?,
            inbound_app_host: opt(env, ENV_INBOUND_APP_HOST)?,
            inbound_port_fallback: opt(env, ENV_INBOUND_PORT_FALLBACK)?,
            opaque_ports: ports(env, ENV_OPAQUE_PORTS)?,
            mesh_networks: networks(env, ENV_MESH_NETWORKS)?,
            detect_timeout,
            connect_timeout: dur(env, ENV_CONNECT_TIMEOUT, Duration::from_secs(1))?,
            response_timeout: dur(env, ENV_RESPONSE_TIMEOUT, Duration::from_secs(30))?,
            header_read_timeout: dur(env, ENV_HEADER_READ_TIMEOUT, Duration::from_secs(10))?,
            idle_timeout: dur(env, ENV_IDLE_TIMEOUT, Duration::from_secs(300))?,
            route_idle_timeout: dur(env, ENV_ROUTE_IDLE_TIMEOUT, Duration::from_secs(60))?,
            max_in_flight: parse(env, ENV_MAX_IN_FLIGHT, 10_000usize)?,
            max_header_bytes: parse(env, ENV_MAX_HEADER_BYTES, 64 * 1024usize)?,
            // 0 (the default) is no limit.
            max_request_body_bytes: Some(parse(env, ENV_MAX_REQUEST_BODY_BYTES, 0usize)?)
                .filter(|n| *n > 0),
            h2_max_concurrent_streams: parse(env, ENV_H2_MAX_CONCURRENT_STREAMS, 1000u32)?,
            h2_idle_timeout: nonzero_dur(env, ENV_H2_IDLE_TIMEOUT, Duration::from_secs(300))?,
            inbound_max_connections: positive(env, ENV_INBOUND_MAX_CONNECTIONS, 10_000)?,
            outbound_max_connections: positive(env, ENV_OUTBOUND_MAX_CONNECTIONS, 10_000)?,
            admin_max_connections: positive(env, ENV_ADMIN_MAX_CONNECTIONS, 64)?,
            shutdown_grace: dur(env, ENV_SHUTDOWN_GRACE, Duration::from_secs(30))?,
            worker_threads,
            log: env.get(ENV_LOG).unwrap_or_else(|| "info".into()),
        })
    }

    /// The configuration as JSON (served at admin `/config`).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }
}

fn parse<T: std::str::FromStr>(
    env: &impl Strings,
    var: &'static str,
    default: T,
) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    Ok(opt(env, var)?.unwrap_or(default))
}

fn opt<T: std::str::FromStr>(
    env: &impl Strings,
    var: &'static str,
) -> Result<Option<T>, ConfigError>
where
    T::Err: std::fmt::Display,
{
    match env.get(var) {
        None => Ok(None),
        Some(v) => v.trim().parse().map(Some).map_err(|e: T::Err| ConfigError {
            var,
            value: v.clone(),
            reason: e.to_string(),
        }),
    }
}

fn dur(env: &impl Strings, var: &'static str, default: Duration) -> Result<Duration, ConfigError> {
    match env.get(var) {
        None => Ok(default),
        Some(v) => parse_duration(&v).ok_or_else(|| ConfigError {
            var,
            value: v.clone(),
            reason: "expected a duration such as 500ms, 10s, 2m or 1h".into(),
        }),
    }
}

/// [`dur`], and not zero.
fn nonzero_dur(
    env: &impl Strings,
    var: &'static str,
    default: Duration,
) -> Result<Duration, ConfigError> {
    let d = dur(env, var, default)?;
    if d.is_zero() {
        return Err(ConfigError {
            var,
            value: env.get(var).unwrap_or_default(),
            reason: "must be more than zero".into(),
        });
    }
    Ok(d)
}

/// [`parse`] of a count that must be at least 1.
fn positive(env: &impl Strings, var: &'static str, default: usize) -> Result<usize, ConfigError> {
    let n = parse(env, var, default)?;
    if n == 0 {
        return Err(ConfigError {
            var,
            value: env.get(var).unwrap_or_default(),
            reason: "must be at least 1".into(),
        });
    }
    Ok(n)
}

/// Parses `500ms`, `10s`, `2m`, `1h`.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    match unit {
        "ms" => Some(Duration::from_millis(n)),
        "s" => Some(Duration::from_secs(n)),
        "m" => Some(Duration::from_secs(n * 60)),
        "h" => Some(Duration::from_secs(n * 3600)),
        _ => None,
    }
}

/// A comma-separated list of CIDRs (`10.0.0.0/8,fd00::/8`); empty: none.
fn networks(env: &impl Strings, var: &'static str) -> Result<Vec<ipnet::IpNet>, ConfigError> {
    let v = env
        .get(var)
        .unwrap_or_else(|| DEFAULT_MESH_NETWORKS.to_string());
    v.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.parse().map_err(|e| ConfigError {
                var,
                value: v.clone(),
                reason: format!("{p}: {e}; expected CIDRs such as 10.0.0.0/8,fd00::/8"),
            })
        })
        .collect()
}

fn ports(env: &impl Strings, var: &'static str) -> Result<Vec<u16>, ConfigError> {
    let Some(v) = env.get(var) else {
        return Ok(DEFAULT_OPAQUE_PORTS.to_vec());
    };
    let mut out = Vec::new();
    for part in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let bad = |reason: String| ConfigError {
            var,
            value: v.clone(),
            reason,
        };
        if let Some((a, b)) = part.split_once('-') {
            let a: u16 = a.parse().map_err(|e| bad(format!("{part}: {e}")))?;
            let b: u16 = b.parse().map_err(|e| bad(format!("{part}: {e}")))?;
            if a > b {
                return Err(bad(format!("range {part} is reversed")));
            }
            out.extend(a..=b);
        } else {
            out.push(part.parse().map_err(|e| bad(format!("{part}: {e}")))?);
        }
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

fn parse_name(var: &'static str, v: &str) -> Result<String, ConfigError> {
    match rustls_pki_types::DnsName::try_from(v) {
        Ok(_) => Ok(v.to_ascii_lowercase()),
        Err(_) => Err(ConfigError {
            var,
            value: v.into(),
            reason: "expected a DNS-like identity name such as web.default.serviceaccount.identity.tulle.cluster.local".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> HashMap<&'static str, &'static str> {
        HashMap::from([
            (ENV_IDENTITY_CERT_FILE, "/c.pem"),
            (ENV_IDENTITY_KEY_FILE, "/k.pem"),
            (ENV_IDENTITY_TRUST_ANCHORS_FILE, "/ca.pem"),
            (
                ENV_IDENTITY_NAME,
                "web.default.serviceaccount.identity.tulle.cluster.local",
            ),
        ])
    }

    #[test]
    fn defaults() {
        let c = Config::from_strings(&base()).unwrap();
        assert_eq!(c.inbound_addr.to_string(), "0.0.0.0:4143");
        assert_eq!(c.outbound_addr.to_string(), "127.0.0.1:4140");
        assert_eq!(c.admin_addr.to_string(), "0.0.0.0:4191");
        assert_eq!(c.opaque_ports, DEFAULT_OPAQUE_PORTS);
        assert_eq!(c.detect_timeout, Duration::from_secs(1));
        assert_eq!(c.worker_threads, 1);
        assert_eq!(c.h2_idle_timeout, Duration::from_secs(300));
        assert_eq!(c.inbound_max_connections, 10_000);
        assert_eq!(c.outbound_max_connections, 10_000);
        assert_eq!(c.admin_max_connections, 64);
        assert_eq!(c.max_request_body_bytes, None);
        let json: serde_json::Value = serde_json::from_str(&c.to_json()).unwrap();
        assert_eq!(json["detect_timeout"], "1000ms");
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (var, value) in [
            (ENV_INBOUND_LISTEN_ADDR, "nope"),
            (ENV_CONNECT_TIMEOUT, "10 parsecs"),
            (ENV_OPAQUE_PORTS, "25,99999"),
            (ENV_DETECT_TIMEOUT, "5s"),
            (ENV_IDENTITY_NAME, "not a name"),
            (ENV_WORKER_THREADS, "0"),
            (ENV_H2_IDLE_TIMEOUT, "0s"),
            (ENV_INBOUND_MAX_CONNECTIONS, "0"),
            (ENV_OUTBOUND_MAX_CONNECTIONS, "-1"),
            (ENV_ADMIN_MAX_CONNECTIONS, "0"),
            (ENV_MAX_REQUEST_BODY_BYTES, "1MiB"),
        ] {
            let mut env = base();
            env.insert(var, value);
            let err = Config::from_strings(&env).unwrap_err();
            assert_eq!(err.var, var);
            assert!(err.to_string().contains(var), "{err}");
        }
        let mut env = base();
        env.remove(ENV_IDENTITY_KEY_FILE);
        assert_eq!(
            Config::from_strings(&env).unwrap_err().var,
            ENV_IDENTITY_KEY_FILE
        );
    }

    #[test]
    fn trust_anchors_from_file_inline_pem_or_the_file_with_the_pem_as_fallback() {
        let pem = "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n";
        let mut env = base();
        env.remove(ENV_IDENTITY_TRUST_ANCHORS_FILE);
        let err = Config::from_strings(&env).unwrap_err();
        assert!(
            err.to_string().contains(ENV_IDENTITY_TRUST_ANCHORS_PEM),
            "{err}"
        );
        env.insert(ENV_IDENTITY_TRUST_ANCHORS_PEM, pem);
        let c = Config::from_strings(&env).unwrap();
        assert!(matches!(&c.identity.trust_anchors, TrustAnchors::Pem(p) if p == pem));
        assert_eq!(c.identity.trust_anchors.pem().unwrap(), pem.as_bytes());
        // Both: the file (watched) when it exists and is not empty, else the PEM.
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("anchors.pem");
        env.insert(ENV_IDENTITY_TRUST_ANCHORS_FILE, file.to_str().unwrap());
        let c = Config::from_strings(&env).unwrap();
        let anchors = &c.identity.trust_anchors;
        assert_eq!(anchors.watched_file().as_deref(), Some(file.as_path()));
        assert_eq!(anchors.pem().unwrap(), pem.as_bytes(), "no file yet");
        std::fs::write(&file, "\n").unwrap();
        assert_eq!(anchors.pem().unwrap(), pem.as_bytes(), "an empty file");
        std::fs::write(&file, "FILE").unwrap();
        assert_eq!(anchors.pem().unwrap(), b"FILE");
    }

    #[test]
    fn identity_service_mode() {
        let mut env = base();
        env.remove(ENV_IDENTITY_CERT_FILE);
        env.remove(ENV_IDENTITY_KEY_FILE);
        env.insert(
            ENV_IDENTITY_SVC_ADDR,
            "tulle-identity.tulle-system.svc:8080",
        );
        assert_eq!(
            Config::from_strings(&env).unwrap_err().var,
            ENV_IDENTITY_SVC_NAME
        );
        env.insert(
            ENV_IDENTITY_SVC_NAME,
            "tulle-identity.tulle-system.serviceaccount.identity.tulle.cluster.local",
        );
        assert_eq!(
            Config::from_strings(&env).unwrap_err().var,
            ENV_IDENTITY_TOKEN_FILE
        );
        env.insert(ENV_IDENTITY_TOKEN_FILE, "/var/run/secrets/tulle/token");
        let c = Config::from_strings(&env).unwrap();
        assert!(matches!(c.identity.source, IdentitySource::Service { .. }));
        assert!(c.destination.is_none());
        env.insert(
            ENV_DESTINATION_SVC_ADDR,
            "tulle-controller.tulle-system.svc:8086",
        );
        env.insert(
            ENV_DESTINATION_SVC_NAME,
            "tulle-controller.tulle-system.serviceaccount.identity.tulle.cluster.local",
        );
        assert_eq!(
            Config::from_strings(&env).unwrap_err().var,
            ENV_POD_NAMESPACE
        );
        env.insert(ENV_POD_NAMESPACE, "shop");
        let c = Config::from_strings(&env).unwrap();
        assert_eq!(c.destination.unwrap().namespace, "shop");
    }

    #[test]
    fn policy_service_or_static_policy() {
        let mut env = base();
        assert!(Config::from_strings(&env).unwrap().policy.is_none());
        env.insert(
            ENV_POLICY_SVC_ADDR,
            "tulle-controller.tulle-system.svc:8090",
        );
        assert_eq!(
            Config::from_strings(&env).unwrap_err().var,
            ENV_POLICY_SVC_NAME
        );
        env.insert(
            ENV_POLICY_SVC_NAME,
            "tulle-controller.tulle-system.serviceaccount.identity.tulle.cluster.local",
        );
        env.insert(ENV_POD_NAMESPACE, "shop");
        assert_eq!(Config::from_strings(&env).unwrap_err().var, ENV_POD_NAME);
        env.insert(ENV_POD_NAME, "web-1");
        let p = Config::from_strings(&env).unwrap().policy.unwrap();
        assert_eq!((p.namespace.as_str(), p.pod.as_str()), ("shop", "web-1"));
        env.insert(ENV_STATIC_POLICY, "/policy.json");
        let err = Config::from_strings(&env).unwrap_err();
        assert!(err.to_string().contains(ENV_POLICY_SVC_ADDR), "{err}");
        env.remove(ENV_POLICY_SVC_ADDR);
        let c = Config::from_strings(&env).unwrap();
        assert!(c.policy.is_none() && c.static_policy.is_some());
    }

    #[test]
    fn port_ranges() {
        let mut env = base();
        env.insert(ENV_OPAQUE_PORTS, "5432, 8000-8002");
        assert_eq!(
            Config::from_strings(&env).unwrap().opaque_ports,
            vec![5432, 8000, 8001, 8002]
        );
    }
}

//! Per-workload overrides: `config.tulle.io/*` annotations on the pod (template), else on its
//! namespace. Every value is validated here, so that a bad value skips injection with a clear
//! reason instead of producing a pod that fails to start.

use std::collections::BTreeMap;

const PREFIX: &str = "config.tulle.io/";

/// An annotation value the injector cannot use.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("annotation {key}: {value:?} is invalid (expected {expected}); fix or remove it")]
pub struct InvalidAnnotation {
    /// The annotation.
    pub key: String,
    /// Its value.
    pub value: String,
    /// What was expected.
    pub expected: &'static str,
}

/// The validated overrides (`None` = use the default).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Overrides {
    /// `skip-inbound-ports`: ports or ranges (`a,b,c-d`) not redirected to the proxy.
    pub skip_inbound_ports: Option<String>,
    /// `skip-outbound-ports`.
    pub skip_outbound_ports: Option<String>,
    /// `skip-inbound-subnets`: IPv4 CIDRs.
    pub skip_inbound_subnets: Option<String>,
    /// `skip-outbound-subnets`.
    pub skip_outbound_subnets: Option<String>,
    /// `opaque-ports`: ports that skip protocol detection.
    pub opaque_ports: Option<String>,
    /// `proxy-cpu-request`.
    pub cpu_request: Option<String>,
    /// `proxy-cpu-limit`.
    pub cpu_limit: Option<String>,
    /// `proxy-memory-request`.
    pub memory_request: Option<String>,
    /// `proxy-memory-limit`.
    pub memory_limit: Option<String>,
    /// `proxy-log-level`: the proxy's tracing filter.
    pub log_level: Option<String>,
    /// `proxy-image`: the proxy image (also used by the init step).
    pub image: Option<String>,
}

impl Overrides {
    /// Reads the overrides (pod annotations win over namespace ones).
    pub fn parse(
        pod: &BTreeMap<String, String>,
        ns: &BTreeMap<String, String>,
    ) -> Result<Self, InvalidAnnotation> {
        let get = |name: &str, expected: &'static str, ok: fn(&str) -> bool| {
            let key = format!("{PREFIX}{name}");
            match pod.get(&key).or_else(|| ns.get(&key)) {
                None => Ok(None),
                Some(v) => {
                    let v = v.trim();
                    if ok(v) {
                        Ok(Some(v.replace(' ', "")))
                    } else {
                        Err(InvalidAnnotation {
                            key,
                            value: v.into(),
                            expected,
                        })
                    }
                }
            }
        };
        const PORTS: &str = "a comma-separated list of ports or ranges, e.g. 22,8000-8010";
        const SUBNETS: &str = "a comma-separated list of IPv4 CIDRs, e.g. 10.0.0.0/8";
        const CPU: &str = "a Kubernetes CPU quantity, e.g. 100m or 1";
        const MEM: &str = "a Kubernetes memory quantity, e.g. 64Mi";
        let o = Overrides {
            skip_inbound_ports: get("skip-inbound-ports", PORTS, is_port_list)?,
            skip_outbound_ports: get("skip-outbound-ports", PORTS, is_port_list)?,
            skip_inbound_subnets: get("skip-inbound-subnets", SUBNETS, is_subnet_list)?,
            skip_outbound_subnets: get("skip-outbound-subnets", SUBNETS, is_subnet_list)?,
            opaque_ports: get("opaque-ports", PORTS, is_port_list)?,
            cpu_request: get("proxy-cpu-request", CPU, is_quantity)?,
            cpu_limit: get("proxy-cpu-limit", CPU, is_quantity)?,
            memory_request: get("proxy-memory-request", MEM, is_quantity)?,
            memory_limit: get("proxy-memory-limit", MEM, is_quantity)?,
            log_level: get(
                "proxy-log-level",
                "a tracing filter such as info or tulle_proxy=debug,info",
                is_log_filter,
            )?,
            image: get("proxy-image", "an image reference without spaces", is_image)?,
        };
        Ok(o)
    }
}

/// Checks that a request is not above its limit (else the API server rejects the pod).
pub(super) fn check_request_limit(
    request: Option<&str>,
    limit: Option<&str>,
    limit_key: &str,
) -> Result<(), InvalidAnnotation> {
    if let (Some(r), Some(l)) = (request, limit)
        && let (Some(rv), Some(lv)) = (quantity_value(r), quantity_value(l))
        && rv > lv
    {
        return Err(InvalidAnnotation {
            key: format!("{PREFIX}{limit_key}"),
            value: l.into(),
            expected: "a limit not below the proxy's request",
        });
    }
    Ok(())
}

fn items(v: &str) -> impl Iterator<Item = &str> {
    v.split(',').map(str::trim)
}

fn is_port(p: &str) -> bool {
    let mut parts = p.splitn(2, '-');
    let lo = parts.next().and_then(|x| x.parse::<u16>().ok());
    match (lo, parts.next()) {
        (Some(lo), None) => lo > 0,
        (Some(lo), Some(hi)) => hi.parse::<u16>().is_ok_and(|hi| lo > 0 && hi >= lo),
        _ => false,
    }
}

fn is_port_list(v: &str) -> bool {
    !v.is_empty() && items(v).all(is_port)
}

fn is_subnet(c: &str) -> bool {
    let (ip, len) = c.split_once('/').unwrap_or((c, "32"));
    ip.parse::<std::net::Ipv4Addr>().is_ok() && len.parse::<u8>().is_ok_and(|l| l <= 32)
}

fn is_subnet_list(v: &str) -> bool {
    !v.is_empty() && items(v).all(is_subnet)
}

fn is_quantity(v: &str) -> bool {
    quantity_value(v).is_some_and(|x| x > 0.0)
}

/// The value of a Kubernetes quantity (`100m`, `1.5`, `64Mi`, `1e3`), if well-formed.
pub(super) fn quantity_value(v: &str) -> Option<f64> {
    const SUFFIXES: &[(&str, f64)] = &[
        ("Ki", 1024.0),
        ("Mi", 1048576.0),
        ("Gi", 1073741824.0),
        ("Ti", 1099511627776.0),
        ("Pi", 1125899906842624.0),
        ("Ei", 1152921504606846976.0),
        ("m", 1e-3),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
        ("P", 1e15),
        ("E", 1e18),
    ];
    let (num, mult) = SUFFIXES
        .iter()
        .find_map(|(s, m)| v.strip_suffix(s).map(|n| (n, *m)))
        .unwrap_or((v, 1.0));
    let digits_ok = !num.is_empty()
        && num
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-'))
        && num
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_digit() || c == '.');
    if !digits_ok {
        return None;
    }
    let x: f64 = num.parse().ok()?;
    x.is_finite().then_some(x * mult)
}

fn is_log_filter(v: &str) -> bool {
    !v.is_empty()
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | ',' | '=' | ':' | '.' | '-'))
}

fn is_image(v: &str) -> bool {
    !v.is_empty() && !v.chars().any(|c| c.is_whitespace() || c.is_control())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values() {
        assert!(is_port_list("22,8000-8010, 9000"));
        assert!(!is_port_list("22,x"));
        assert!(!is_port_list("0"));
        assert!(!is_port_list("90-80"));
        assert!(!is_port_list("70000"));
        assert!(is_subnet_list("10.0.0.0/8,192.168.1.1"));
        assert!(!is_subnet_list("10.0.0.0/33"));
        assert!(!is_subnet_list("fd00::/8"));
        assert_eq!(quantity_value("100m"), Some(0.1));
        assert_eq!(quantity_value("64Mi"), Some(64.0 * 1048576.0));
        assert_eq!(quantity_value("1e3"), Some(1000.0));
        assert_eq!(quantity_value("2"), Some(2.0));
        assert_eq!(quantity_value("banana"), None);
        assert_eq!(quantity_value("Mi"), None);
        assert_eq!(quantity_value("-1"), None);
        assert!(is_log_filter("tulle_proxy=debug,info"));
        assert!(!is_log_filter("info; rm -rf"));
        assert!(check_request_limit(Some("128Mi"), Some("64Mi"), "proxy-memory-limit").is_err());
        assert!(check_request_limit(Some("64Mi"), Some("1Gi"), "proxy-memory-limit").is_ok());
    }

    #[test]
    fn pod_wins_over_namespace() {
        let ns = BTreeMap::from([
            (
                "config.tulle.io/proxy-log-level".to_string(),
                "debug".to_string(),
            ),
            (
                "config.tulle.io/opaque-ports".to_string(),
                "5432".to_string(),
            ),
        ]);
        let pod = BTreeMap::from([(
            "config.tulle.io/proxy-log-level".to_string(),
            "warn".to_string(),
        )]);
        let o = Overrides::parse(&pod, &ns).unwrap();
        assert_eq!(o.log_level.as_deref(), Some("warn"));
        assert_eq!(o.opaque_ports.as_deref(), Some("5432"));
        let bad = BTreeMap::from([(
            "config.tulle.io/proxy-memory-limit".to_string(),
            "lots".to_string(),
        )]);
        let e = Overrides::parse(&bad, &ns).unwrap_err();
        assert_eq!(e.key, "config.tulle.io/proxy-memory-limit");
        assert!(e.to_string().contains("Kubernetes memory quantity"), "{e}");
    }
}

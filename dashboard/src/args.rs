//! The flags of `tulle-dashboard` (each also an environment variable).

use std::net::SocketAddr;
use std::time::Duration;

/// Hosts the dashboard answers by default: itself through a port-forward (`localhost`,
/// `127.0.0.1`, `[::1]`) and its Service's DNS names in `tulle-system`, any port. Like
/// Linkerd's `-enforced-host`, this stops DNS rebinding: a page of another site that gets
/// its name resolved to 127.0.0.1 still sends its own name as the Host.
pub const DEFAULT_ENFORCED_HOST: &str = r"^(localhost|127\.0\.0\.1|\[::1\]|tulle-dashboard|tulle-dashboard\.tulle-system|tulle-dashboard\.tulle-system\.svc|tulle-dashboard\.tulle-system\.svc\.cluster\.local)(:\d+)?$";

/// tulle-dashboard: the web dashboard of the tulle service mesh.
#[derive(Clone, Debug, clap::Parser)]
#[command(name = "tulle-dashboard", version)]
pub struct Args {
    /// Where to listen (HTTP).
    #[arg(long, env = "TULLE_DASHBOARD_ADDR", default_value = "0.0.0.0:8084")]
    pub addr: SocketAddr,
    /// A regular expression the Host header must match (else 403), against DNS rebinding.
    #[arg(long, env = "TULLE_DASHBOARD_ENFORCED_HOST", default_value = DEFAULT_ENFORCED_HOST)]
    pub enforced_host: String,
    /// The control-plane namespace.
    #[arg(
        long,
        env = "TULLE_DASHBOARD_CONTROL_PLANE_NAMESPACE",
        default_value = "tulle-system"
    )]
    pub control_plane_namespace: String,
    /// The metrics window (`?t=` of the Traffic Metrics API), in seconds or as `30s`, `5m`.
    #[arg(long, env = "TULLE_DASHBOARD_WINDOW", default_value = "30s", value_parser = parse_duration)]
    pub window: Duration,
    /// How often an open page is updated (at least 2s).
    #[arg(long, env = "TULLE_DASHBOARD_REFRESH", default_value = "2s", value_parser = parse_duration)]
    pub refresh: Duration,
    /// How long an answer of the Kubernetes API is reused.
    #[arg(long, env = "TULLE_DASHBOARD_CACHE_TTL", default_value = "1s", value_parser = parse_duration)]
    pub cache_ttl: Duration,
    /// How long the edge lists of a topology are reused.
    #[arg(long, env = "TULLE_DASHBOARD_EDGES_CACHE_TTL", default_value = "5s", value_parser = parse_duration)]
    pub edges_cache_ttl: Duration,
    /// How often the background sampler records every workload's metrics for the charts
    /// (0s: only when pages are viewed).
    #[arg(long, env = "TULLE_DASHBOARD_SAMPLE_EVERY", default_value = "10s", value_parser = parse_duration)]
    pub sample_every: Duration,
}

/// `30s`, `5m`, `1h`, `500ms` or plain seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("{s:?} is not a duration (e.g. 2s, 30s, 5m)");
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit())
        .map_or((s, "s"), |i| s.split_at(i));
    let n: u64 = num.parse().map_err(|_| bad())?;
    Ok(match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        _ => return Err(bad()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn the_default_host_pattern() {
        let re = regex::Regex::new(DEFAULT_ENFORCED_HOST).unwrap();
        for ok in [
            "localhost:50750",
            "127.0.0.1:8084",
            "[::1]:1",
            "localhost",
            "tulle-dashboard.tulle-system.svc.cluster.local:8084",
        ] {
            assert!(re.is_match(ok), "{ok}");
        }
        for bad in [
            "evil.example",
            "localhost.evil.example",
            "10.0.0.1:8084",
            "127.0.0.1.nip.io",
        ] {
            assert!(!re.is_match(bad), "{bad}");
        }
    }
}

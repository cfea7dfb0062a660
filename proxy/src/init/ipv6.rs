//! The IPv6 guard of `tulle-proxy init`: the proxy intercepts IPv4 only, so a pod's IPv6 TCP
//! would reach its peers around the proxy (no mTLS, no policy). Where the network namespace
//! has IPv6, `init` therefore rejects TCP over IPv6 in both directions, loopback and the
//! skipped ports excepted (those bypass the proxy over IPv4 too). Failing closed: if IPv6 is
//! there and the rules cannot be written, `init` fails and the pod does not start.

use std::fmt::Write as _;

use super::{InitError, Options, run};

pub const CHAIN_IN: &str = "TULLE_PROXY_IPV6_IN";
pub const CHAIN_OUT: &str = "TULLE_PROXY_IPV6_OUT";

/// Whether the current network namespace has IPv6 (`/proc/net` is per network namespace).
pub fn enabled() -> bool {
    std::path::Path::new("/proc/net/if_inet6").exists()
}

/// The `ip6tables-restore --noflush` input that (re)builds the IPv6 guard chains.
pub fn rules(o: &Options) -> String {
    let mut r = String::from("*filter\n");
    let _ = writeln!(r, ":{CHAIN_IN} - [0:0]\n:{CHAIN_OUT} - [0:0]");
    let c = |what: &str| format!("-m comment --comment \"tulle/{what}\"");
    for (chain, dev, skipped) in [
        (CHAIN_IN, "-i lo", &o.skip_inbound_ports),
        (CHAIN_OUT, "-o lo", &o.skip_outbound_ports),
    ] {
        let _ = writeln!(r, "-A {chain} {dev} -j RETURN {}", c("ipv6-loopback"));
        let ports: Vec<String> = skipped.iter().map(|p| p.replace('-', ":")).collect();
        for chunk in ports.chunks(15) {
            let _ = writeln!(
                r,
                "-A {chain} -p tcp -m multiport --dports {} -j RETURN {}",
                chunk.join(","),
                c("ipv6-skipped-ports")
            );
        }
        let _ = writeln!(
            r,
            "-A {chain} -p tcp -j REJECT --reject-with tcp-reset {}",
            c("ipv6-not-intercepted")
        );
    }
    r.push_str("COMMIT\n");
    r
}

/// Writes the guard with the IPv6 twin of `iptables` (the binary `init` picked for IPv4);
/// returns the guard's rules as listed afterwards.
pub fn apply(o: &Options, iptables: &str) -> Result<String, InitError> {
    let bin = iptables.replacen("iptables", "ip6tables", 1);
    let restore = format!("{bin}-restore");
    let refused = |e: InitError| InitError::Ipv6(e.to_string());
    run(&restore, &["--noflush"], Some(&rules(o))).map_err(refused)?;
    for (parent, chain) in [("INPUT", CHAIN_IN), ("OUTPUT", CHAIN_OUT)] {
        if run(&bin, &["-t", "filter", "-C", parent, "-j", chain], None).is_err() {
            run(&bin, &["-t", "filter", "-A", parent, "-j", chain], None).map_err(refused)?;
        }
    }
    let listed = run(&bin, &["-t", "filter", "-S"], None).map_err(refused)?;
    Ok(listed
        .lines()
        .filter(|l| l.contains("TULLE_PROXY_IPV6"))
        .map(|l| format!("{l}\n"))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_ipv6_tcp_but_loopback_and_skipped_ports() {
        let o = Options::parse(&[
            "--skip-inbound-ports".into(),
            "22,8000-8010".into(),
            "--skip-outbound-ports".into(),
            "443".into(),
        ])
        .unwrap();
        let r = rules(&o);
        assert!(r.starts_with("*filter\n"), "{r}");
        assert!(r.contains("-A TULLE_PROXY_IPV6_IN -i lo -j RETURN"), "{r}");
        assert!(r.contains("-A TULLE_PROXY_IPV6_OUT -o lo -j RETURN"), "{r}");
        assert!(
            r.contains(
                "-A TULLE_PROXY_IPV6_IN -p tcp -m multiport --dports 22,8000:8010 -j RETURN"
            ),
            "{r}"
        );
        assert!(
            r.contains("-A TULLE_PROXY_IPV6_OUT -p tcp -m multiport --dports 443 -j RETURN"),
            "{r}"
        );
        for chain in [CHAIN_IN, CHAIN_OUT] {
            let reject = format!("-A {chain} -p tcp -j REJECT --reject-with tcp-reset");
            let last = r.lines().rfind(|l| l.starts_with(&format!("-A {chain} ")));
            assert!(last.unwrap().starts_with(&reject), "{r}");
        }
        assert!(r.ends_with("COMMIT\n"));
    }
}

//! `tulle-proxy init`: installs the iptables `nat` rules that redirect a pod's TCP traffic to
//! the proxy (like linkerd proxy-init), in the current network namespace. Idempotent: the
//! tulle chains are rebuilt on every run and the jumps to them are added only once. Where the
//! namespace has IPv6, which the proxy does not intercept, IPv6 TCP is rejected ([`ipv6`]).

pub mod ipv6;

use std::fmt::Write as _;
use std::process::{Command, Stdio};

pub const USAGE: &str =
    "tulle-proxy init [--inbound-port 4143] [--outbound-port 4140] [--proxy-uid 2110]
    [--skip-inbound-ports P,P-P] [--skip-outbound-ports P,P-P]
    [--skip-inbound-subnets CIDR,..] [--skip-outbound-subnets CIDR,..]
    [--iptables-mode auto|nft|legacy] [--dry-run]
Inbound TCP is redirected to the inbound port except the proxy's own ports (4143, 4191)
and the skipped ports/sources; outbound TCP is redirected to the outbound port except traffic of
the proxy's UID, to loopback, and to the skipped ports/destinations. With IPv6 in the
namespace, IPv6 TCP is rejected (not intercepted yet) except on loopback and skipped ports.";

pub const CHAIN_INBOUND: &str = "TULLE_PROXY_INBOUND";
pub const CHAIN_OUTPUT: &str = "TULLE_PROXY_OUTPUT";

/// Options of `init`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub inbound_port: u16,
    pub outbound_port: u16,
    pub proxy_uid: u32,
    pub skip_inbound_ports: Vec<String>,
    pub skip_outbound_ports: Vec<String>,
    pub skip_inbound_subnets: Vec<String>,
    pub skip_outbound_subnets: Vec<String>,
    pub mode: String,
    pub dry_run: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            inbound_port: tulle_api::proxy_contract::INBOUND_PORT,
            outbound_port: tulle_api::proxy_contract::OUTBOUND_PORT,
            proxy_uid: tulle_api::proxy_contract::PROXY_UID,
            skip_inbound_ports: vec![],
            skip_outbound_ports: vec![],
            skip_inbound_subnets: vec![],
            skip_outbound_subnets: vec![],
            mode: "auto".into(),
            dry_run: false,
        }
    }
}

/// Why `init` failed.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("{0}")]
    Usage(String),
    #[error(
        "no working iptables found (tried {0}); install Debian's iptables package and run as root with NET_ADMIN"
    )]
    NoIptables(String),
    #[error("{cmd} failed: {stderr}")]
    Command { cmd: String, stderr: String },
    #[error(
        "the pod's network namespace has IPv6, which the proxy does not intercept, and the rules that reject IPv6 TCP could not be written ({0}); load the kernel's ip6_tables/nf_tables support on the node or disable IPv6 for the pod (docs/ipv6.md)"
    )]
    Ipv6(String),
}

fn list(v: &str, what: &str, check: fn(&str) -> bool) -> Result<Vec<String>, InitError> {
    let items: Vec<String> = v
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect();
    for i in &items {
        if !check(i) {
            return Err(InitError::Usage(format!("invalid {what} {i:?}")));
        }
    }
    Ok(items)
}

fn is_port(p: &str) -> bool {
    let mut it = p.splitn(2, [':', '-']);
    it.all(|x| x.parse::<u16>().is_ok())
}

fn is_cidr(c: &str) -> bool {
    let (ip, len) = c.split_once('/').unwrap_or((c, "32"));
    ip.parse::<std::net::Ipv4Addr>().is_ok() && len.parse::<u8>().is_ok_and(|l| l <= 32)
}

impl Options {
    pub fn parse(args: &[String]) -> Result<Self, InitError> {
        let mut o = Options::default();
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let mut val = |name: &str| {
                it.next()
                    .cloned()
                    .ok_or_else(|| InitError::Usage(format!("{name} needs a value")))
            };
            let num = |name: &str, v: String| {
                v.parse()
                    .map_err(|_| InitError::Usage(format!("invalid {name} {v:?}")))
            };
            match a.as_str() {
                "--inbound-port" => o.inbound_port = num(a, val(a)?)?,
                "--outbound-port" => o.outbound_port = num(a, val(a)?)?,
                "--proxy-uid" => o.proxy_uid = num(a, val(a)?)? as u32,
                "--skip-inbound-ports" => o.skip_inbound_ports = list(&val(a)?, "port", is_port)?,
                "--skip-outbound-ports" => o.skip_outbound_ports = list(&val(a)?, "port", is_port)?,
                "--skip-inbound-subnets" => {
                    o.skip_inbound_subnets = list(&val(a)?, "subnet", is_cidr)?
                }
                "--skip-outbound-subnets" => {
                    o.skip_outbound_subnets = list(&val(a)?, "subnet", is_cidr)?
                }
                "--iptables-mode" => {
                    o.mode = val(a)?;
                    if !["auto", "nft", "legacy"].contains(&o.mode.as_str()) {
                        return Err(InitError::Usage(format!(
                            "invalid --iptables-mode {:?}",
                            o.mode
                        )));
                    }
                }
                "--dry-run" => o.dry_run = true,
                "-h" | "--help" => return Err(InitError::Usage("help".into())),
                other => return Err(InitError::Usage(format!("unknown option {other:?}"))),
            }
        }
        Ok(o)
    }

    /// The `iptables-restore --noflush` input that (re)builds the tulle chains.
    pub fn rules(&self) -> String {
        let mut r = String::from("*nat\n");
        let _ = writeln!(r, ":{CHAIN_INBOUND} - [0:0]\n:{CHAIN_OUTPUT} - [0:0]");
        let c = |what: &str| format!("-m comment --comment \"tulle/{what}\"");
        let mut inbound_skip: Vec<String> = vec![
            self.inbound_port.to_string(),
            tulle_api::proxy_contract::ADMIN_PORT.to_string(),
        ];
        inbound_skip.extend(self.skip_inbound_ports.iter().map(|p| p.replace('-', ":")));
        inbound_skip.dedup();
        for chunk in inbound_skip.chunks(15) {
            let _ = writeln!(
                r,
                "-A {CHAIN_INBOUND} -p tcp -m multiport --dports {} -j RETURN {}",
                chunk.join(","),
                c("skip-inbound-ports")
            );
        }
        for s in &self.skip_inbound_subnets {
            let _ = writeln!(
                r,
                "-A {CHAIN_INBOUND} -s {s} -j RETURN {}",
                c("skip-inbound-subnets")
            );
        }
        let _ = writeln!(
            r,
            "-A {CHAIN_INBOUND} -p tcp -j REDIRECT --to-ports {} {}",
            self.inbound_port,
            c("redirect-inbound")
        );
        let _ = writeln!(
            r,
            "-A {CHAIN_OUTPUT} -m owner --uid-owner {} -j RETURN {}",
            self.proxy_uid,
            c("ignore-proxy-uid")
        );
        let _ = writeln!(
            r,
            "-A {CHAIN_OUTPUT} -o lo -j RETURN {}",
            c("ignore-loopback")
        );
        let _ = writeln!(
            r,
            "-A {CHAIN_OUTPUT} -d 127.0.0.0/8 -j RETURN {}",
            c("ignore-loopback")
        );
        let outbound_skip: Vec<String> = self
            .skip_outbound_ports
            .iter()
            .map(|p| p.replace('-', ":"))
            .collect();
        for chunk in outbound_skip.chunks(15) {
            let _ = writeln!(
                r,
                "-A {CHAIN_OUTPUT} -p tcp -m multiport --dports {} -j RETURN {}",
                chunk.join(","),
                c("skip-outbound-ports")
            );
        }
        for s in &self.skip_outbound_subnets {
            let _ = writeln!(
                r,
                "-A {CHAIN_OUTPUT} -d {s} -j RETURN {}",
                c("skip-outbound-subnets")
            );
        }
        let _ = writeln!(
            r,
            "-A {CHAIN_OUTPUT} -p tcp -j REDIRECT --to-ports {} {}",
            self.outbound_port,
            c("redirect-outbound")
        );
        r.push_str("COMMIT\n");
        r
    }
}

fn works(bin: &str) -> bool {
    Command::new(bin)
        .args(["-t", "nat", "-S"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Picks the iptables flavour: nft unless only legacy works (or as requested).
pub fn detect(mode: &str) -> Result<&'static str, InitError> {
    let candidates: &[&'static str] = match mode {
        "nft" => &["iptables-nft"],
        "legacy" => &["iptables-legacy"],
        _ => &["iptables-nft", "iptables-legacy", "iptables"],
    };
    candidates
        .iter()
        .copied()
        .find(|b| works(b))
        .ok_or_else(|| InitError::NoIptables(candidates.join(", ")))
}

fn run(cmd: &str, args: &[&str], stdin: Option<&str>) -> Result<String, InitError> {
    use std::io::Write;
    let mut child = Command::new(cmd)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| InitError::Command {
            cmd: cmd.into(),
            stderr: e.to_string(),
        })?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        let _ = pipe.write_all(input.as_bytes());
    }
    let out = child.wait_with_output().map_err(|e| InitError::Command {
        cmd: cmd.into(),
        stderr: e.to_string(),
    })?;
    if !out.status.success() {
        return Err(InitError::Command {
            cmd: format!("{cmd} {}", args.join(" ")),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Applies the rules; returns a description of what was applied (the rules, as listed by
/// `iptables -t nat -S` afterwards).
pub fn apply(o: &Options) -> Result<String, InitError> {
    let rules = o.rules();
    if o.dry_run {
        return Ok(format!(
            "{rules}# with IPv6 in the namespace:\n{}",
            ipv6::rules(o)
        ));
    }
    let bin = detect(&o.mode)?;
    let restore = match bin {
        "iptables-nft" => "iptables-nft-restore",
        "iptables-legacy" => "iptables-legacy-restore",
        _ => "iptables-restore",
    };
    run(restore, &["--noflush"], Some(&rules))?;
    for (parent, chain) in [("PREROUTING", CHAIN_INBOUND), ("OUTPUT", CHAIN_OUTPUT)] {
        if run(bin, &["-t", "nat", "-C", parent, "-j", chain], None).is_err() {
            run(bin, &["-t", "nat", "-A", parent, "-j", chain], None)?;
        }
    }
    let listed = run(bin, &["-t", "nat", "-S"], None)?;
    let mut out = format!("# applied with {bin} in the current network namespace\n");
    for l in listed.lines().filter(|l| l.contains("TULLE_PROXY")) {
        out.push_str(l);
        out.push('\n');
    }
    if ipv6::enabled() {
        out.push_str(&ipv6::apply(o, bin)?);
    } else {
        out.push_str("# no IPv6 in this network namespace: no IPv6 guard needed\n");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_skip_proxy_ports_and_uid() {
        let o = Options::parse(&[
            "--skip-inbound-ports".into(),
            "22,8000-8010".into(),
            "--skip-outbound-subnets".into(),
            "10.0.0.0/8".into(),
        ])
        .unwrap();
        let r = o.rules();
        assert!(r.contains(
            "-A TULLE_PROXY_INBOUND -p tcp -m multiport --dports 4143,4191,22,8000:8010 -j RETURN"
        ));
        assert!(r.contains("-A TULLE_PROXY_INBOUND -p tcp -j REDIRECT --to-ports 4143"));
        assert!(r.contains("-A TULLE_PROXY_OUTPUT -m owner --uid-owner 2110 -j RETURN"));
        assert!(r.contains("-A TULLE_PROXY_OUTPUT -d 10.0.0.0/8 -j RETURN"));
        assert!(r.ends_with("-A TULLE_PROXY_OUTPUT -p tcp -j REDIRECT --to-ports 4140 -m comment --comment \"tulle/redirect-outbound\"\nCOMMIT\n"));
        assert!(Options::parse(&["--skip-inbound-ports".into(), "x".into()]).is_err());
        assert!(Options::parse(&["--skip-outbound-subnets".into(), "10.0.0.0/99".into()]).is_err());
    }
}

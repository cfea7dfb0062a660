//! Command-line arguments (clap derive): kubectl-style global flags and one struct per command,
//! with the parsers of their values. The commands' modules use these; this module uses none of
//! them.

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tulle_metrics::golden::Kind;

/// Parses the process arguments. The program name in help and errors is `tulle`, or
/// `kubectl tulle` when run as the kubectl plugin `kubectl-tulle` (`argv[0]` is otherwise
/// ignored). Usage errors exit with code 2.
pub fn parse() -> Cli {
    let plugin = std::env::args_os()
        .next()
        .and_then(|a| Path::new(&a).file_name().map(|f| f.to_os_string()))
        .is_some_and(|f| f.to_string_lossy().starts_with("kubectl-"));
    let bin = if plugin { "kubectl tulle" } else { "tulle" };
    let matches = Cli::command().bin_name(bin).get_matches();
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

/// tulle: install, check and operate the tulle service mesh.
///
/// Also usable as a kubectl plugin: put this binary (or a symlink to it) on the PATH as
/// `kubectl-tulle` and run `kubectl tulle <command>`.
#[derive(Debug, Parser)]
#[command(
    name = "tulle",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    /// Flags shared by every command.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// kubectl-style flags, accepted before or after the command.
#[derive(Clone, Debug, Default, Args)]
pub struct GlobalArgs {
    /// Path to the kubeconfig file (default: $KUBECONFIG, then ~/.kube/config, then in-cluster).
    #[arg(long, global = true, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use (default: the current context).
    #[arg(long, global = true, value_name = "NAME")]
    pub context: Option<String>,
    /// The namespace of the workloads a command acts on (default: the context's namespace).
    #[arg(short = 'n', long, global = true, value_name = "NAMESPACE")]
    pub namespace: Option<String>,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the manifests of the whole mesh: `tulle install | kubectl apply -f -`.
    Install(InstallArgs),
    /// Check the cluster before install (`--pre`) or the installed mesh.
    Check(CheckArgs),
    /// Print every object `install` creates: `tulle uninstall | kubectl delete -f -`.
    Uninstall(UninstallArgs),
    /// Print the client and control-plane versions.
    Version(VersionArgs),
    /// Mesh the workloads of YAML from files or stdin: `tulle inject app.yaml | kubectl apply -f -`.
    Inject(InjectArgs),
    /// Golden metrics (success rate, RPS, latency) of namespaces, pods, workloads or
    /// TrafficSplits: `tulle stat deploy -n demo`.
    Stat(StatArgs),
    /// Who talks to whom, with which mesh identities, over mTLS or not:
    /// `tulle edges deploy -n demo`.
    Edges(EdgesArgs),
    /// Open the web dashboard: port-forward to it and open the browser (Ctrl-C stops).
    Dashboard(DashboardArgs),
}

/// Output format of manifests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Multi-document YAML.
    #[default]
    Yaml,
    /// One JSON `v1/List` holding every object.
    Json,
}

/// What the API server does when the injector webhook cannot be reached.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum FailurePolicy {
    /// Admit the pod uninjected.
    #[default]
    #[value(name = "Ignore")]
    Ignore,
    /// Reject the pod.
    #[value(name = "Fail")]
    Fail,
}

impl FailurePolicy {
    /// The Kubernetes spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            FailurePolicy::Ignore => "Ignore",
            FailurePolicy::Fail => "Fail",
        }
    }
}

/// An IP family of the cluster's pod network (spelled as a Service's `ipFamilies`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum IpFamily {
    /// IPv4.
    #[value(name = "IPv4")]
    Ipv4,
    /// IPv6 (not intercepted by the proxy yet: the injector refuses every pod).
    #[value(name = "IPv6")]
    Ipv6,
}

impl IpFamily {
    /// The Kubernetes spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            IpFamily::Ipv4 => "IPv4",
            IpFamily::Ipv6 => "IPv6",
        }
    }
}

/// The mesh default inbound policy of pods no TrafficTarget names.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum InboundPolicy {
    /// Every client, meshed or not.
    #[default]
    #[value(name = "allow")]
    Allow,
    /// Any client with a mesh identity (mTLS).
    #[value(name = "authenticated")]
    Authenticated,
    /// No client (kubelet probes and the proxy admin port stay reachable).
    #[value(name = "deny")]
    Deny,
}

impl InboundPolicy {
    /// The value of `TULLE_CONTROLLER_DEFAULT_INBOUND_POLICY` and of the annotation
    /// `config.tulle.io/default-inbound-policy`.
    pub fn as_str(self) -> &'static str {
        match self {
            InboundPolicy::Allow => "allow",
            InboundPolicy::Authenticated => "authenticated",
            InboundPolicy::Deny => "deny",
        }
    }
}

/// `tulle install`.
#[derive(Clone, Debug, Args)]
pub struct InstallArgs {
    /// Image registry (and path prefix) of the tulle images: `<registry>/<component>:<tag>`.
    #[arg(long, default_value = "localhost/tulle")]
    pub registry: String,
    /// Image tag of the tulle images (default: this CLI's version).
    #[arg(long, default_value = env!("CARGO_PKG_VERSION"))]
    pub tag: String,
    /// The identity trust domain.
    #[arg(long, default_value = "cluster.local")]
    pub trust_domain: String,
    /// PEM file with the trust anchors (root CAs); needs the two issuer files as well.
    #[arg(
        long,
        value_name = "FILE",
        requires_all = ["identity_issuer_certificate_file", "identity_issuer_key_file"]
    )]
    pub identity_trust_anchors_file: Option<PathBuf>,
    /// PEM file with the issuer certificate (an intermediate CA signed by a trust anchor,
    /// optionally followed by further intermediates).
    #[arg(long, value_name = "FILE", requires_all = ["identity_trust_anchors_file", "identity_issuer_key_file"])]
    pub identity_issuer_certificate_file: Option<PathBuf>,
    /// PEM file with the issuer's private key (PKCS#8 or SEC1 ECDSA).
    #[arg(long, value_name = "FILE", requires_all = ["identity_trust_anchors_file", "identity_issuer_certificate_file"])]
    pub identity_issuer_key_file: Option<PathBuf>,
    /// Validity of a generated issuer, in days (the generated trust anchor lives ten times as
    /// long).
    #[arg(long, default_value_t = 365, value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub identity_validity_days: u32,
    /// failurePolicy of the proxy injector webhook [default: Ignore, Fail with --ha].
    #[arg(long, value_enum)]
    pub webhook_failure_policy: Option<FailurePolicy>,
    /// Number of tulle-controller replicas (at least 2 with --ha).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(i32).range(1..=10))]
    pub controller_replicas: i32,
    /// High availability: 2 replicas of tulle-identity and at least 2 of tulle-controller, spread
    /// over nodes when there are several (preferred pod anti-affinity), PodDisruptionBudgets
    /// (minAvailable 1), and the injector webhook's failurePolicy Fail (pods are not created
    /// unmeshed while the controller is away) unless --webhook-failure-policy says otherwise.
    #[arg(long)]
    pub ha: bool,
    /// Log level (tracing filter) of the injected proxies.
    #[arg(long, default_value = "warn,tulle_proxy=info")]
    pub proxy_log_level: String,
    /// A further proxy image the annotation `config.tulle.io/proxy-image` may choose
    /// (repeatable). The image also runs the privileged init step, so by default only the
    /// install's own proxy image may be chosen.
    #[arg(long = "allowed-proxy-image", value_name = "IMAGE")]
    pub allowed_proxy_images: Vec<String>,
    /// The IP families of the cluster's pod network (`IPv4`, `IPv4,IPv6`, `IPv6`; see
    /// `kubectl get nodes -o jsonpath='{.items[*].spec.podCIDRs}'`). The proxy intercepts only
    /// IPv4, so with IPv6 the injector refuses every pod (reason `ipv6`) rather than leave its
    /// IPv6 traffic outside the mesh.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "IPv4")]
    pub ip_families: Vec<IpFamily>,
    /// The mesh default inbound policy of pods no TrafficTarget names (overridable per
    /// namespace or workload with the annotation `config.tulle.io/default-inbound-policy`).
    #[arg(long, alias = "default-policy", value_enum, default_value_t)]
    pub default_inbound_policy: InboundPolicy,
    /// Query this Prometheus (an http(s) URL; it must scrape the proxies) for the SMI Traffic
    /// Metrics API instead of the controller's embedded scraper.
    #[arg(long, value_name = "URL")]
    pub prometheus_url: Option<String>,
    /// Install the web dashboard (`tulle dashboard` opens it); `--dashboard=false` leaves it out.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub dashboard: bool,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t)]
    pub output: Output,
}

/// `tulle uninstall`.
#[derive(Clone, Debug, Args)]
pub struct UninstallArgs {
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t)]
    pub output: Output,
}

/// Output format of `tulle check`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum CheckOutput {
    /// Categories with one line per check.
    #[default]
    Table,
    /// One JSON document.
    Json,
}

/// `tulle check`.
#[derive(Clone, Debug, Args)]
pub struct CheckArgs {
    /// Check that the cluster is ready for `tulle install` instead of checking the mesh.
    #[arg(long)]
    pub pre: bool,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t)]
    pub output: CheckOutput,
    /// Certificates expiring within this many days fail (trust anchors, webhook) or warn (the
    /// issuer, which fails once expired).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(0..=3650))]
    pub expiry_warning_days: u32,
    /// Retry failing checks until they pass or this time runs out (e.g. `90s`, `5m`).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub wait: Option<std::time::Duration>,
}

/// Parses `300ms`, `90s`, `5m`, `1h`, `1m30s` (a bare number is seconds).
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let err = || format!("invalid duration {s:?}: use e.g. 90s, 5m, 1h or 1m30s");
    if s.is_empty() {
        return Err(err());
    }
    if let Ok(n) = s.parse::<u64>() {
        return Ok(std::time::Duration::from_secs(n));
    }
    let mut total = std::time::Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(err)?;
        if digits == 0 {
            return Err(err());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| err())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "ms" => std::time::Duration::from_millis(n),
            "s" => std::time::Duration::from_secs(n),
            "m" => std::time::Duration::from_secs(n * 60),
            "h" => std::time::Duration::from_secs(n * 3600),
            _ => return Err(err()),
        };
        total += unit;
        rest = &rest[unit_len..];
    }
    Ok(total)
}

/// `tulle version`.
#[derive(Clone, Debug, Args)]
pub struct VersionArgs {
    /// Print only the client version; do not contact the cluster.
    #[arg(long)]
    pub client: bool,
    /// Seconds to wait for the cluster before reporting the server version unavailable.
    #[arg(long, default_value_t = 5)]
    pub timeout: u64,
}

/// `tulle inject`.
#[derive(Clone, Debug, Args)]
pub struct InjectArgs {
    /// YAML or JSON files with Kubernetes objects; `-` (the default) reads stdin.
    #[arg(value_name = "FILE", default_value = "-")]
    pub files: Vec<PathBuf>,
    /// Add the init step and the proxy sidecar to the pod templates instead of the
    /// `tulle.io/inject: enabled` annotation (for clusters without the injector webhook).
    #[arg(long)]
    pub manual: bool,
    /// With --manual: PEM trust anchors (default: read from the installed mesh).
    #[arg(long, value_name = "FILE")]
    pub identity_trust_anchors_file: Option<PathBuf>,
    /// With --manual: image registry of the proxy image.
    #[arg(long, default_value = "localhost/tulle")]
    pub registry: String,
    /// With --manual: proxy image tag (default: this CLI's version).
    #[arg(long, default_value = env!("CARGO_PKG_VERSION"))]
    pub tag: String,
    /// With --manual: the identity trust domain.
    #[arg(long, default_value = "cluster.local")]
    pub trust_domain: String,
    /// With --manual: log level (tracing filter) of the proxies.
    #[arg(long, default_value = "warn,tulle_proxy=info")]
    pub proxy_log_level: String,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t)]
    pub output: Output,
}

// `tulle stat` and `tulle edges`.

/// The kinds, for help and errors.
pub const KINDS: &str = "namespaces (ns), pods (po), deployments (deploy), daemonsets (ds), \
                         statefulsets (sts), jobs, trafficsplits (ts)";

/// What `stat` reports on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resource {
    /// Namespaces, pods or a workload kind.
    Kind(Kind),
    /// TrafficSplits: one row per backend.
    TrafficSplit,
}

impl Resource {
    /// The API's resource name.
    pub fn plural(self) -> &'static str {
        match self {
            Resource::Kind(k) => k.plural(),
            Resource::TrafficSplit => "trafficsplits",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "ts" | "trafficsplit" | "trafficsplits" => Some(Resource::TrafficSplit),
            other => Kind::parse(other).map(Resource::Kind),
        }
    }
}

/// `KIND` or `KIND/NAME`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The kind.
    pub resource: Resource,
    /// One resource of it.
    pub name: Option<String>,
}

/// Parses the `KIND[/NAME]` of `stat`.
pub fn parse_target(s: &str) -> Result<Target, String> {
    let (kind, name) = match s.split_once('/') {
        Some((k, n)) if !n.is_empty() && !n.contains('/') => (k, Some(n.to_string())),
        Some(_) => return Err(format!("{s:?} is not KIND or KIND/NAME")),
        None => (s, None),
    };
    let resource = Resource::parse(kind)
        .ok_or_else(|| format!("unknown kind {kind:?}: use one of {KINDS}"))?;
    Ok(Target { resource, name })
}

/// Parses the `KIND[/NAME]` of `edges` (TrafficSplits have no edges).
pub fn parse_edges_target(s: &str) -> Result<Target, String> {
    let t = parse_target(s)?;
    if t.resource == Resource::TrafficSplit {
        return Err("trafficsplits have no edges: use `tulle stat trafficsplit`".into());
    }
    Ok(t)
}

/// Parses `-t`: `30s`, `5m`, `1h`, `1m30s`, from 1 s to 24 h.
pub fn parse_window(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d < Duration::from_secs(1) || d > Duration::from_secs(24 * 3600) {
        return Err(format!("time window {s:?} must be from 1s to 24h"));
    }
    Ok(d)
}

/// Output of `stat` and `edges`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum TableOutput {
    /// A table.
    #[default]
    Table,
    /// A table with more columns.
    Wide,
    /// A JSON array of rows (numbers, `null` when absent).
    Json,
}

/// Flags shared by `stat` and `edges`.
#[derive(Clone, Debug, Args)]
pub struct ScopeArgs {
    /// Every namespace (`-n` and the context's namespace are ignored).
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// The time window: 30s (the default), 1m, 5m, 1h, ... at most 24h.
    #[arg(short = 't', long, value_name = "DURATION", value_parser = parse_window)]
    pub time_window: Option<Duration>,
    /// Only the resources matching this label selector (e.g. `app=web,tier!=db`).
    #[arg(short = 'l', long, value_name = "SELECTOR")]
    pub selector: Option<String>,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t)]
    pub output: TableOutput,
}

/// `tulle stat`.
#[derive(Clone, Debug, Args)]
pub struct StatArgs {
    /// The kind: namespaces (ns), pods (po), deployments (deploy), daemonsets (ds),
    /// statefulsets (sts), jobs, trafficsplits (ts); or KIND/NAME.
    #[arg(value_name = "KIND", value_parser = parse_target)]
    pub target: Target,
    /// One resource of that kind (default: all of them).
    #[arg(value_name = "NAME")]
    pub name: Option<String>,
    /// Scope and output.
    #[command(flatten)]
    pub scope: ScopeArgs,
}

/// `tulle edges`.
#[derive(Clone, Debug, Args)]
pub struct EdgesArgs {
    /// The kind: namespaces (ns), pods (po), deployments (deploy), daemonsets (ds),
    /// statefulsets (sts), jobs; or KIND/NAME.
    #[arg(value_name = "KIND", value_parser = parse_edges_target)]
    pub target: Target,
    /// One resource of that kind (default: all of them).
    #[arg(value_name = "NAME")]
    pub name: Option<String>,
    /// Scope and output.
    #[command(flatten)]
    pub scope: ScopeArgs,
}

// `tulle dashboard`.

/// What to do with the URL.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Show {
    /// Open it in the browser (and print it).
    #[default]
    Browser,
    /// Only print it.
    Url,
}

/// `tulle dashboard`.
#[derive(Clone, Debug, Args)]
pub struct DashboardArgs {
    /// The local port (on 127.0.0.1) forwarded to the dashboard; 0 picks a free one.
    #[arg(long, default_value_t = 50750)]
    pub port: u16,
    /// Open the browser, or only print the URL.
    #[arg(long, value_enum, default_value_t)]
    pub show: Show,
    /// How long to wait for a ready dashboard pod, in seconds.
    #[arg(long, default_value_t = 120, value_name = "SECONDS")]
    pub wait: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_flags_go_before_or_after_the_command() {
        for argv in [
            &["tulle", "--context", "c", "-n", "ns", "version"][..],
            &["tulle", "version", "--context", "c", "--namespace", "ns"],
        ] {
            let cli = Cli::try_parse_from(argv).unwrap();
            assert_eq!(cli.global.context.as_deref(), Some("c"));
            assert_eq!(cli.global.namespace.as_deref(), Some("ns"));
        }
    }

    #[test]
    fn install_defaults() {
        let Command::Install(a) = Cli::try_parse_from(["tulle", "install"]).unwrap().command else {
            panic!("not install")
        };
        assert_eq!(a.registry, "localhost/tulle");
        assert_eq!(a.tag, env!("CARGO_PKG_VERSION"));
        assert_eq!(a.trust_domain, "cluster.local");
        assert_eq!(a.webhook_failure_policy, None, "Ignore, or Fail with --ha");
        assert!(!a.ha);
        assert_eq!(a.default_inbound_policy, InboundPolicy::Allow);
        assert_eq!(a.identity_validity_days, 365);
        assert_eq!(a.output, Output::Yaml);
    }

    #[test]
    fn check_flags() {
        let Command::Check(a) = Cli::try_parse_from(["tulle", "check"]).unwrap().command else {
            panic!("not check")
        };
        assert!(!a.pre);
        assert_eq!(a.output, CheckOutput::Table);
        assert_eq!(a.expiry_warning_days, 30);
        assert_eq!(a.wait, None);
        let cli = Cli::try_parse_from([
            "tulle",
            "check",
            "--pre",
            "-o",
            "json",
            "--wait",
            "1m30s",
            "--kubeconfig",
            "k",
            "--expiry-warning-days",
            "60",
        ])
        .unwrap();
        let Command::Check(a) = cli.command else {
            panic!("not check")
        };
        assert!(a.pre);
        assert_eq!(a.output, CheckOutput::Json);
        assert_eq!(a.wait, Some(std::time::Duration::from_secs(90)));
        assert_eq!(a.expiry_warning_days, 60);
        assert_eq!(cli.global.kubeconfig, Some(PathBuf::from("k")));
        let e = Cli::try_parse_from(["tulle", "check", "--wait", "soon"]).unwrap_err();
        assert_eq!(e.exit_code(), i32::from(crate::exit::USAGE));
    }

    #[test]
    fn durations() {
        use std::time::Duration;
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("300ms"), Ok(Duration::from_millis(300)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h2m3s"), Ok(Duration::from_secs(3723)));
        for bad in ["", "m", "5x", "1.5m", "-1s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn usage_errors_are_exit_code_2() {
        let e = Cli::try_parse_from(["tulle", "install", "--identity-issuer-key-file", "k"])
            .unwrap_err();
        assert_eq!(e.exit_code(), i32::from(crate::exit::USAGE));
    }
}

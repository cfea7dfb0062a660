//! `tulle stat` and `tulle edges`: the golden metrics (success rate, requests per second,
//! latency percentiles, open TCP connections) and the edges (who talks to whom, with which
//! mesh identities, over mTLS or not) of namespaces, pods, workloads and TrafficSplits, read
//! from the SMI Traffic Metrics API (`metrics.smi-spec.io/v1alpha1`) through the Kubernetes
//! API server, in the style of `linkerd viz stat` / `linkerd viz edges`.
//!
//! - [`api`]: the GET and what its failures mean (not installed, not ready, forbidden, ...:
//!   a [`crate::error::ApiError`], each with its exit code);
//! - [`table`]: rows from the API's items, tables and JSON.

pub mod api;
pub mod table;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_api;

use crate::args::{EdgesArgs, GlobalArgs, Resource, ScopeArgs, StatArgs, TableOutput, Target};
use crate::error::ApiError;
use crate::{Error, kubeconfig};
use api::encode;
use serde_json::Value;
use std::time::Duration;
use table::{EdgeRow, SplitRow, StatRow};
use tulle_metrics::golden::Kind;

/// What a command prints: stdout, then hint lines on stderr.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Printed {
    /// For stdout.
    pub stdout: String,
    /// For stderr, one line each.
    pub stderr: Vec<String>,
}

/// The namespace and name asked for: `None` namespace means all (`-A`, or the kind is
/// namespaces).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Query {
    /// The resource kind.
    pub resource: Resource,
    /// The namespace, `None` for all.
    pub namespace: Option<String>,
    /// One resource.
    pub name: Option<String>,
    /// The window.
    pub window: Option<Duration>,
    /// The label selector.
    pub selector: Option<String>,
}

impl Query {
    /// From the arguments; `default_ns` is `-n` or the context's namespace.
    pub fn new(
        target: &Target,
        name: Option<&String>,
        scope: &ScopeArgs,
        default_ns: &str,
    ) -> Result<Self, Error> {
        let name = match (&target.name, name) {
            (Some(_), Some(_)) => {
                return Err(Error::Input(
                    "give the name either as KIND/NAME or as a second argument, not both".into(),
                ));
            }
            (a, b) => a.clone().or_else(|| b.cloned()),
        };
        let cluster_scoped = target.resource == Resource::Kind(Kind::Namespace);
        if scope.all_namespaces && name.is_some() && !cluster_scoped {
            return Err(Error::Input(
                "a resource cannot be retrieved by name across all namespaces (drop -A)".into(),
            ));
        }
        Ok(Query {
            resource: target.resource,
            namespace: (!scope.all_namespaces && !cluster_scoped).then(|| default_ns.to_string()),
            name,
            window: scope.time_window,
            selector: scope.selector.clone(),
        })
    }

    /// The path below the API prefix of the list, or of the one item.
    pub fn path(&self) -> String {
        let plural = self.resource.plural();
        match (self.resource, &self.name, &self.namespace) {
            (Resource::Kind(Kind::Namespace), Some(n), _) => format!("/namespaces/{}", encode(n)),
            (_, Some(n), Some(ns)) => {
                format!("/namespaces/{}/{plural}/{}", encode(ns), encode(n))
            }
            (_, _, Some(ns)) => format!("/namespaces/{}/{plural}", encode(ns)),
            (_, _, None) => format!("/{plural}"),
        }
    }

    /// `?t=...&labelSelector=...` (empty when neither is set).
    pub fn params(&self, with_selector: bool) -> String {
        let mut p = Vec::new();
        if let Some(w) = self.window {
            p.push(format!("t={}s", w.as_secs()));
        }
        if let (true, Some(s)) = (with_selector, &self.selector) {
            p.push(format!("labelSelector={}", encode(s)));
        }
        if p.is_empty() {
            String::new()
        } else {
            format!("?{}", p.join("&"))
        }
    }

    fn window_text(&self, items: &[Value]) -> String {
        let secs = self.window.map(|w| w.as_secs_f64()).unwrap_or_else(|| {
            items
                .first()
                .map_or(30.0, |i| table::Golden::of(i).window_seconds)
        });
        table::window(secs)
    }

    fn none_found(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("No {} found in namespace {ns}.", self.resource.plural()),
            None => format!("No {} found.", self.resource.plural()),
        }
    }
}

/// The items of a list, or the one item of a get.
pub fn items(v: Value) -> Vec<Value> {
    if v["kind"] == "TrafficMetricsList" {
        match v {
            Value::Object(mut m) => match m.remove("items") {
                Some(Value::Array(items)) => items,
                _ => Vec::new(),
            },
            _ => Vec::new(),
        }
    } else {
        vec![v]
    }
}

async fn client(global: &GlobalArgs) -> Result<kube::Client, Error> {
    kubeconfig::client(global, Duration::from_secs(30))
        .await
        .map_err(|e| {
            Error::Metrics(ApiError::Other(format!(
                "cannot build a Kubernetes client: {}",
                crate::error::error_chain(&e)
            )))
        })
}

/// `tulle stat`.
pub async fn run_stat(global: &GlobalArgs, args: &StatArgs) -> Result<Printed, Error> {
    let client = client(global).await?;
    let q = Query::new(
        &args.target,
        args.name.as_ref(),
        &args.scope,
        client.default_namespace(),
    )?;
    stat(&client, &q, args.scope.output).await
}

/// `tulle edges`.
pub async fn run_edges(global: &GlobalArgs, args: &EdgesArgs) -> Result<Printed, Error> {
    let client = client(global).await?;
    let q = Query::new(
        &args.target,
        args.name.as_ref(),
        &args.scope,
        client.default_namespace(),
    )?;
    edges(&client, &q, args.scope.output).await
}

/// Reads and prints the stat of `q`.
pub async fn stat(client: &kube::Client, q: &Query, output: TableOutput) -> Result<Printed, Error> {
    let answer = api::get(client, &format!("{}{}", q.path(), q.params(true))).await?;
    let items = items(answer);
    let all_ns = q.namespace.is_none();
    let wide = output == TableOutput::Wide;
    let mut out = Printed::default();
    let traffic = if q.resource == Resource::TrafficSplit {
        let mut rows: Vec<SplitRow> = items.iter().map(SplitRow::of).collect();
        rows.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        out.stdout = match output {
            TableOutput::Json => table::json(&rows),
            _ if rows.is_empty() => String::new(),
            _ => table::split_table(&rows, all_ns, wide),
        };
        rows.iter().any(|r| r.golden.has_traffic())
    } else {
        let mut rows: Vec<StatRow> = items.iter().map(StatRow::of).collect();
        rows.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        out.stdout = match output {
            TableOutput::Json => table::json(&rows),
            _ if rows.is_empty() => String::new(),
            _ => table::stat_table(&rows, all_ns, wide),
        };
        rows.iter().any(|r| r.golden.has_traffic())
    };
    if items.is_empty() {
        out.stderr.push(q.none_found());
    } else if !traffic {
        out.stderr.push(format!(
            "no traffic in the last {} (send some requests, widen the window with -t 5m, or check that the pods are meshed: MESHED)",
            q.window_text(&items)
        ));
    }
    Ok(out)
}

/// The resources whose edges are read: the one named, or every one the API lists.
async fn edge_sources(client: &kube::Client, q: &Query) -> Result<Vec<String>, Error> {
    if q.name.is_some() {
        return Ok(vec![q.path()]);
    }
    let list = items(api::get(client, &format!("{}{}", q.path(), q.params(true))).await?);
    Ok(list
        .iter()
        .filter_map(|i| {
            let r = &i["resource"];
            let name = r["name"].as_str()?;
            Some(if r["kind"] == "Namespace" {
                format!("/namespaces/{}", encode(name))
            } else {
                let ns = r["namespace"].as_str()?;
                let plural = q.resource.plural();
                format!("/namespaces/{}/{plural}/{}", encode(ns), encode(name))
            })
        })
        .collect())
}

/// At most this many `/edges` requests in flight.
const CONCURRENCY: usize = 8;

/// Reads and prints the edges of `q`.
pub async fn edges(
    client: &kube::Client,
    q: &Query,
    output: TableOutput,
) -> Result<Printed, Error> {
    let sources = edge_sources(client, q).await?;
    let params = q.params(false);
    let mut all = Vec::new();
    let mut out = Printed::default();
    if sources.is_empty() {
        out.stderr.push(q.none_found());
    }
    for chunk in sources.chunks(CONCURRENCY) {
        let mut set = tokio::task::JoinSet::new();
        for (i, path) in chunk.iter().enumerate() {
            let (client, uri) = (client.clone(), format!("{path}/edges{params}"));
            set.spawn(async move { (i, api::get(&client, &uri).await) });
        }
        let mut answers = set.join_all().await;
        answers.sort_by_key(|(i, _)| *i);
        for (_, a) in answers {
            match a {
                Ok(v) => all.extend(items(v)),
                // Deleted since it was listed.
                Err(ApiError::NotFound(_)) if q.name.is_none() => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    let rows = table::dedup_edges(all.iter().filter_map(EdgeRow::of).collect());
    out.stdout = match output {
        TableOutput::Json => table::json(&rows),
        _ if rows.is_empty() => String::new(),
        o => table::edge_table(&rows, o == TableOutput::Wide),
    };
    if rows.is_empty() && !sources.is_empty() {
        out.stderr.push(format!(
            "no edges: no traffic in the last {} between meshed resources",
            q.window_text(&[])
        ));
    }
    Ok(out)
}

//! One request: authorize, query the metrics source, answer objects.

use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use tulle_metrics::Source;
use tulle_metrics::golden::{self, Filter, Golden, Kind, ResourceRef};

use super::objects::{self, EdgeView, Stamp};
use super::path::{ApiPath, PREFIX, Params, Resource};
use super::{Access, Authorizer, Caller, Catalog};
use crate::core::Index;

/// An answer: HTTP status and JSON body.
#[derive(Clone, Debug, PartialEq)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// The body.
    pub body: Value,
}

impl Reply {
    fn ok(body: Value) -> Self {
        Self { status: 200, body }
    }

    fn error(status: u16, reason: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        Self {
            status,
            body: objects::status(status, reason, &message),
        }
    }
}

/// The API: a metrics source, the index (pods, TrafficSplits), the catalog and the authorizer.
#[derive(Clone)]
pub struct Api {
    /// Where the numbers come from.
    pub source: Arc<dyn Source>,
    /// The controller's index.
    pub index: Arc<Index>,
    /// The resources that exist.
    pub catalog: Arc<dyn Catalog>,
    /// The SubjectAccessReview.
    pub authorizer: Arc<dyn Authorizer>,
    /// The current time as RFC 3339 (a function so tests can pin it).
    pub now: Arc<dyn Fn() -> String + Send + Sync>,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api").finish_non_exhaustive()
    }
}

fn access(p: &ApiPath) -> Option<Access> {
    let (verb, resource, subresource, namespace, name) = match p {
        ApiPath::Groups | ApiPath::Group | ApiPath::Resources => return None,
        ApiPath::List {
            resource,
            namespace,
        } => ("list", resource.plural(), None, namespace.clone(), None),
        ApiPath::Get {
            resource: Resource::Kind(Kind::Namespace),
            name,
            ..
        } => ("get", "namespaces", None, None, Some(name.clone())),
        ApiPath::Get {
            resource,
            namespace,
            name,
        } => (
            "get",
            resource.plural(),
            None,
            Some(namespace.clone()),
            Some(name.clone()),
        ),
        ApiPath::EdgeList {
            resource,
            namespace,
        } => (
            "list",
            resource.plural(),
            Some("edges"),
            namespace.clone(),
            None,
        ),
        ApiPath::Edges {
            resource,
            namespace,
            name,
        } => (
            "get",
            resource.plural(),
            Some("edges"),
            (*resource != Kind::Namespace).then(|| namespace.clone()),
            Some(name.clone()),
        ),
    };
    Some(Access {
        verb,
        resource,
        subresource,
        namespace,
        name,
    })
}

impl Api {
    /// Answers `GET path?query` for `caller`.
    pub async fn handle(&self, caller: &Caller, path: &str, query: Option<&str>) -> Reply {
        let Some(p) = ApiPath::parse(path) else {
            return Reply::error(
                404,
                "NotFound",
                format!(
                    "{path} is not served here: see {PREFIX} for the resources of metrics.smi-spec.io"
                ),
            );
        };
        let params = match Params::parse(query) {
            Ok(p) => p,
            Err(e) => return Reply::error(400, "BadRequest", e.0),
        };
        let p = match p {
            ApiPath::List {
                resource: Resource::Kind(resource),
                namespace,
            } if params.edges => ApiPath::EdgeList {
                resource,
                namespace,
            },
            _ if params.edges => {
                return Reply::error(
                    400,
                    "BadRequest",
                    "edges=true applies to lists of namespaces, pods and workloads only",
                );
            }
            p => p,
        };
        if let Some(a) = access(&p) {
            match self.authorizer.authorize(caller, &a).await {
                Ok(Ok(())) => {}
                Ok(Err(reason)) => {
                    return Reply::error(403, "Forbidden", forbidden(caller, &a, &reason));
                }
                Err(e) => {
                    return Reply::error(
                        500,
                        "InternalError",
                        format!(
                            "cannot authorize the request (SubjectAccessReview failed: {e}); retry, and check the controller's RBAC for subjectaccessreviews"
                        ),
                    );
                }
            }
        }
        let stamp = Stamp {
            now: (self.now)(),
            window: params.window,
        };
        let result = match p {
            ApiPath::List {
                resource: Resource::Kind(kind),
                namespace,
            } => self.list(&stamp, kind, namespace, &params).await,
            ApiPath::Get {
                resource: Resource::Kind(kind),
                namespace,
                name,
            } => self.get(&stamp, kind, namespace, name).await,
            ApiPath::Edges {
                resource,
                namespace,
                name,
            } => self.edges(&stamp, resource, namespace, name).await,
            ApiPath::EdgeList {
                resource,
                namespace,
            } => self.edge_list(&stamp, resource, namespace).await,
            ApiPath::List {
                resource: Resource::TrafficSplit,
                namespace,
            } => self.splits(&stamp, namespace, None).await,
            ApiPath::Get {
                resource: Resource::TrafficSplit,
                namespace,
                name,
            } => self.splits(&stamp, Some(namespace), Some(name)).await,
            ApiPath::List {
                resource: Resource::TrafficTarget,
                namespace,
            } => self.targets(&stamp, namespace, None).await,
            ApiPath::Get {
                resource: Resource::TrafficTarget,
                namespace,
                name,
            } => self.targets(&stamp, Some(namespace), Some(name)).await,
            ApiPath::Groups => Ok(Reply::ok(objects::group_list())),
            ApiPath::Group => Ok(Reply::ok(objects::group())),
            ApiPath::Resources => Ok(Reply::ok(objects::resource_list())),
        };
        result.unwrap_or_else(|e| e)
    }

    async fn exists(&self, kind: Kind, namespace: &str, name: &str) -> Result<(), Reply> {
        let ns = (kind != Kind::Namespace).then_some(namespace);
        let all = self
            .catalog
            .list(kind, ns, None)
            .await
            .map_err(catalog_error)?;
        if all.iter().any(|r| r.name == name) {
            return Ok(());
        }
        let where_ = if kind == Kind::Namespace {
            String::new()
        } else {
            format!(" in namespace {namespace:?}")
        };
        Err(Reply::error(
            404,
            "NotFound",
            format!("{} {name:?} not found{where_}", kind.plural()),
        ))
    }

    async fn list(
        &self,
        stamp: &Stamp,
        kind: Kind,
        namespace: Option<String>,
        params: &Params,
    ) -> Result<Reply, Reply> {
        let refs = self
            .catalog
            .list(kind, namespace.as_deref(), params.label_selector.as_deref())
            .await
            .map_err(catalog_error)?;
        let filter = Filter {
            kind,
            namespace: namespace.clone(),
            name: None,
        };
        let stats = golden::stat(self.source.as_ref(), &filter, stamp.window)
            .await
            .map_err(query_error)?;
        let counts = self.index.pod_counts();
        let items = refs
            .iter()
            .map(|r| {
                let g = stats.get(r).copied().unwrap_or_default();
                objects::resource_item(stamp, r, &g, pod_count(&counts, r))
            })
            .collect();
        let link = match &namespace {
            Some(ns) => format!("{PREFIX}/namespaces/{ns}/{}", kind.plural()),
            None => format!("{PREFIX}/{}", kind.plural()),
        };
        let resource = match &namespace {
            Some(ns) => json!({"kind": kind.kind_name(), "namespace": ns}),
            None => json!({"kind": kind.kind_name()}),
        };
        Ok(Reply::ok(objects::list(link, resource, items)))
    }

    async fn get(
        &self,
        stamp: &Stamp,
        kind: Kind,
        namespace: String,
        name: String,
    ) -> Result<Reply, Reply> {
        self.exists(kind, &namespace, &name).await?;
        let (r, filter) = one(kind, namespace, name);
        let stats = golden::stat(self.source.as_ref(), &filter, stamp.window)
            .await
            .map_err(query_error)?;
        let g = stats.get(&r).copied().unwrap_or_default();
        let counts = self.index.pod_counts();
        Ok(Reply::ok(objects::resource_item(
            stamp,
            &r,
            &g,
            pod_count(&counts, &r),
        )))
    }

    async fn edges(
        &self,
        stamp: &Stamp,
        kind: Kind,
        namespace: String,
        name: String,
    ) -> Result<Reply, Reply> {
        self.exists(kind, &namespace, &name).await?;
        let (of, filter) = one(kind, namespace, name);
        let items = self.edge_items(stamp, &filter, Some(&of)).await?;
        Ok(Reply::ok(objects::list(
            format!("{}/edges", objects::self_link(&of)),
            objects::object_ref(&of),
            items,
        )))
    }

    /// The edges the filter selects as items: seen from `of` (its own edges, both ways), or
    /// each from its client when `of` is `None`.
    async fn edge_items(
        &self,
        stamp: &Stamp,
        filter: &Filter,
        of: Option<&ResourceRef>,
    ) -> Result<Vec<Value>, Reply> {
        let edges = golden::edges(self.source.as_ref(), filter, stamp.window)
            .await
            .map_err(query_error)?;
        let ids = self.identities(filter.kind);
        Ok(edges
            .iter()
            .filter_map(|e| {
                let (of, peer, outgoing) = match of {
                    None => (&e.src, &e.dst, true),
                    Some(of) if e.src == *of => (of, &e.dst, true),
                    Some(of) if e.dst == *of => (of, &e.src, false),
                    Some(_) => return None,
                };
                let view = EdgeView {
                    of,
                    peer,
                    outgoing,
                    client_id: client_ids(&ids, &e.src),
                    server_id: e.server_id.clone(),
                    secured: e.secured,
                };
                Some(objects::edge_item(stamp, &view, &e.golden))
            })
            .collect())
    }

    async fn edge_list(
        &self,
        stamp: &Stamp,
        kind: Kind,
        namespace: Option<String>,
    ) -> Result<Reply, Reply> {
        let filter = Filter {
            kind,
            namespace: namespace.clone(),
            name: None,
        };
        let items = self.edge_items(stamp, &filter, None).await?;
        let (link, resource) = match &namespace {
            Some(ns) => (
                format!("{PREFIX}/namespaces/{ns}/{}?edges=true", kind.plural()),
                json!({"kind": kind.kind_name(), "namespace": ns}),
            ),
            None => (
                format!("{PREFIX}/{}?edges=true", kind.plural()),
                json!({"kind": kind.kind_name()}),
            ),
        };
        Ok(Reply::ok(objects::list(link, resource, items)))
    }

    async fn splits(
        &self,
        stamp: &Stamp,
        namespace: Option<String>,
        name: Option<String>,
    ) -> Result<Reply, Reply> {
        let mut splits = self.index.splits(namespace.as_deref());
        if let (Some(ns), Some(n)) = (&namespace, &name) {
            splits.retain(|(sns, sn), _| sns == ns && sn == n);
            if splits.is_empty() {
                return Err(Reply::error(
                    404,
                    "NotFound",
                    format!(
                        "trafficsplits {n:?} not found in namespace {ns:?} (or it is invalid: see its Events)"
                    ),
                ));
            }
        }
        let mut items = Vec::new();
        for ((ns, split), view) in &splits {
            let names: Vec<String> = view.backends.iter().map(|(b, _)| b.clone()).collect();
            let per = golden::backends(self.source.as_ref(), ns, &names, stamp.window)
                .await
                .map_err(query_error)?;
            for (backend, weight) in &view.backends {
                let g: Golden = per.get(backend).copied().unwrap_or_default();
                items.push(objects::backend_item(
                    stamp,
                    ns,
                    split,
                    &view.apex,
                    (backend, *weight),
                    &g,
                ));
            }
        }
        let link = match (&namespace, &name) {
            (Some(ns), Some(n)) => format!("{PREFIX}/namespaces/{ns}/trafficsplits/{n}"),
            (Some(ns), None) => format!("{PREFIX}/namespaces/{ns}/trafficsplits"),
            _ => format!("{PREFIX}/trafficsplits"),
        };
        let mut resource = json!({"kind": "TrafficSplit"});
        if let Some(ns) = &namespace {
            resource["namespace"] = json!(ns);
        }
        if let Some(n) = &name {
            resource["name"] = json!(n);
        }
        Ok(Reply::ok(objects::list(link, resource, items)))
    }

    /// The allow/deny counts of the TrafficTargets (of a namespace, or all; or one), from
    /// one aggregate question ([`golden::authz`]) whatever their number.
    async fn targets(
        &self,
        stamp: &Stamp,
        namespace: Option<String>,
        name: Option<String>,
    ) -> Result<Reply, Reply> {
        let mut targets = self.index.traffic_targets(namespace.as_deref());
        if let (Some(ns), Some(n)) = (&namespace, &name) {
            targets.retain(|(tns, tn), _| tns == ns && tn == n);
            if targets.is_empty() {
                return Err(Reply::error(
                    404,
                    "NotFound",
                    format!(
                        "traffictargets {n:?} not found in namespace {ns:?} (or it is invalid: see its Events)"
                    ),
                ));
            }
        }
        // The decisions are made by the destinations' proxies: ask only their namespace when
        // all the destinations share one.
        let dest_ns: BTreeSet<&str> = (targets.values())
            .filter_map(|t| t.destination.as_ref().map(|(ns, _)| ns.as_str()))
            .collect();
        let scope = match dest_ns.len() {
            1 => dest_ns.first().copied(),
            _ => None,
        };
        let counts = if targets.is_empty() {
            golden::AuthzCounts::default()
        } else {
            golden::authz(self.source.as_ref(), scope, stamp.window)
                .await
                .map_err(query_error)?
        };
        // Denials per destination ServiceAccount, through the pods that refused them.
        let accounts: BTreeMap<(String, String), String> = (self.index.meshed_pods())
            .into_iter()
            .map(|p| ((p.namespace, p.name), p.service_account))
            .collect();
        let mut denied: BTreeMap<(String, String), f64> = BTreeMap::new();
        for ((ns, pod), v) in &counts.denied {
            if let Some(sa) = accounts.get(&(ns.clone(), pod.clone())) {
                *denied.entry((ns.clone(), sa.clone())).or_default() += v;
            }
        }
        let items = (targets.iter())
            .map(|((ns, n), t)| {
                let allowed = counts.allowed.get(&format!("{ns}/{n}")).copied();
                let denied = t.destination.as_ref().and_then(|d| denied.get(d)).copied();
                objects::traffic_target_item(
                    stamp,
                    &objects::TargetCounts {
                        namespace: ns,
                        name: n,
                        destination: t.destination.as_ref(),
                        allowed: allowed.unwrap_or(0.0),
                        denied: denied.unwrap_or(0.0),
                    },
                )
            })
            .collect();
        let link = match (&namespace, &name) {
            (Some(ns), Some(n)) => format!("{PREFIX}/namespaces/{ns}/traffictargets/{n}"),
            (Some(ns), None) => format!("{PREFIX}/namespaces/{ns}/traffictargets"),
            _ => format!("{PREFIX}/traffictargets"),
        };
        let mut resource = json!({"kind": "TrafficTarget"});
        if let Some(ns) = &namespace {
            resource["namespace"] = json!(ns);
        }
        if let Some(n) = &name {
            resource["name"] = json!(n);
        }
        Ok(Reply::ok(objects::list(link, resource, items)))
    }

    /// The mesh identities of the meshed pods of each resource of `kind`.
    fn identities(&self, kind: Kind) -> BTreeMap<ResourceRef, BTreeSet<String>> {
        let td = self.index.naming().trust_domain.clone();
        let mut out: BTreeMap<ResourceRef, BTreeSet<String>> = BTreeMap::new();
        for p in self.index.meshed_pods() {
            let name = match kind {
                Kind::Namespace => Some(p.namespace.clone()),
                Kind::Pod => Some(p.name.clone()),
                k => p
                    .owner
                    .as_ref()
                    .filter(|(ok, _)| ok == k.label())
                    .map(|(_, n)| n.clone()),
            };
            let Some(name) = name else { continue };
            let id = tulle_api::ServiceAccountIdentity::new(&p.service_account, &p.namespace, &td)
                .dns_name();
            out.entry(ResourceRef {
                kind,
                namespace: p.namespace.clone(),
                name,
            })
            .or_default()
            .insert(id);
        }
        out
    }
}

/// One resource and the filter that selects just it.
fn one(kind: Kind, namespace: String, name: String) -> (ResourceRef, Filter) {
    let filter = Filter {
        kind,
        namespace: Some(namespace.clone()),
        name: Some(name.clone()),
    };
    let r = ResourceRef {
        kind,
        namespace,
        name,
    };
    (r, filter)
}

fn client_ids(ids: &BTreeMap<ResourceRef, BTreeSet<String>>, r: &ResourceRef) -> Option<String> {
    ids.get(r)
        .map(|s| s.iter().cloned().collect::<Vec<_>>().join(","))
}

fn pod_count(
    counts: &BTreeMap<(String, String, String), crate::core::PodCount>,
    r: &ResourceRef,
) -> crate::core::PodCount {
    counts
        .get(&(
            r.namespace.clone(),
            r.kind.label().to_string(),
            r.name.clone(),
        ))
        .copied()
        .unwrap_or_default()
}

fn forbidden(caller: &Caller, a: &Access, reason: &str) -> String {
    let res = match a.subresource {
        Some(s) => format!("{}/{s}", a.resource),
        None => a.resource.to_string(),
    };
    let scope = match &a.namespace {
        Some(ns) => format!(" in the namespace {ns:?}"),
        None => " at the cluster scope".to_string(),
    };
    let why = if reason.is_empty() {
        String::new()
    } else {
        format!(": {reason}")
    };
    format!(
        "{:?} cannot {} resource {res:?} in API group \"metrics.smi-spec.io\"{scope}{why} (grant it with a Role or ClusterRole on metrics.smi-spec.io)",
        caller.user, a.verb
    )
}

fn catalog_error(e: String) -> Reply {
    Reply::error(
        500,
        "InternalError",
        format!("cannot list the resources from the Kubernetes API ({e}); retry"),
    )
}

fn query_error(e: tulle_metrics::QueryError) -> Reply {
    Reply::error(503, "ServiceUnavailable", e.to_string())
}

//! The `tulle.policy.InboundPolicies` gRPC service over [`core::Policies`]: a proxy watches
//! the inbound policy of its own pod. The first message is sent at once, later ones on
//! change.
//!
//! Who may watch: the caller's mTLS client certificate (already verified against the mesh
//! trust anchors by the TLS layer) must carry, as DNS SAN, the identity of the requested
//! pod's ServiceAccount; otherwise `PERMISSION_DENIED`. An unknown pod is `NOT_FOUND`, and
//! before the initial Kubernetes lists are in, `UNAVAILABLE` (the proxy retries both).

use crate::core::{self, Policies};
use futures::Stream;
use std::{pin::Pin, sync::Arc};
use tokio::sync::mpsc;
use tonic::{Request, Response, Status};
use tulle_api::{
    policy::{self as pb, inbound_policies_server},
    tls::TlsConnectInfo,
};

/// How callers are checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallerCheck {
    /// The caller's client certificate must name the pod's identity (production).
    MeshIdentity,
    /// No check (plaintext serving without identity: development and in-process tests
    /// only; the controller logs a warning when it runs this way).
    InsecureNone,
}

/// The InboundPolicies service.
pub struct PolicyService<P> {
    policies: Arc<P>,
    check: CallerCheck,
    ready: Arc<dyn Fn() -> bool + Send + Sync>,
}

impl<P> std::fmt::Debug for PolicyService<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyService")
            .field("check", &self.check)
            .finish_non_exhaustive()
    }
}

impl<P: Policies> PolicyService<P> {
    /// A service over `policies`, checking callers with `check`; `ready` tells whether the
    /// index holds everything a policy depends on (until then callers get `UNAVAILABLE`).
    pub fn new(
        policies: Arc<P>,
        check: CallerCheck,
        ready: Arc<dyn Fn() -> bool + Send + Sync>,
    ) -> Self {
        Self {
            policies,
            check,
            ready,
        }
    }

    /// The tonic server.
    pub fn into_server(self) -> inbound_policies_server::InboundPoliciesServer<Self> {
        inbound_policies_server::InboundPoliciesServer::new(self)
    }
}

/// The DNS SANs of the caller's leaf certificate (empty without one).
pub fn caller_identities<T>(req: &Request<T>) -> Vec<String> {
    let Some(leaf) = req
        .extensions()
        .get::<TlsConnectInfo>()
        .and_then(|i| i.peer_certificates.clone())
        .and_then(|c| c.first().cloned())
    else {
        return vec![];
    };
    let Ok((_, x)) = x509_parser::parse_x509_certificate(&leaf) else {
        return vec![];
    };
    x.subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|g| match g {
                    x509_parser::extensions::GeneralName::DNSName(n) => Some(n.to_string()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default()
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl<P: Policies> inbound_policies_server::InboundPolicies for PolicyService<P> {
    type WatchStream = BoxStream<pb::PodPolicy>;

    async fn watch(
        &self,
        request: Request<pb::WorkloadRef>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let callers = caller_identities(&request);
        let req = request.into_inner();
        if self.check == CallerCheck::MeshIdentity && callers.is_empty() {
            return Err(Status::unauthenticated(
                "the policy API needs a mesh client certificate (mTLS with the proxy's identity)",
            ));
        }
        if !(self.ready)() {
            return Err(Status::unavailable(
                "the controller is still listing pods, namespaces and SMI resources; retry",
            ));
        }
        let Some(w) = self.policies.watch_policy(&req.namespace, &req.pod) else {
            return Err(Status::not_found(format!(
                "pod {}/{} is not known (yet); retry",
                req.namespace, req.pod
            )));
        };
        if self.check == CallerCheck::MeshIdentity && !callers.contains(&w.identity) {
            tracing::warn!(namespace = %req.namespace, pod = %req.pod, caller = ?callers, expected = %w.identity, "policy watch refused: the caller is not the pod's identity");
            return Err(Status::permission_denied(format!(
                "only {} may watch the policy of pod {}/{}",
                w.identity, req.namespace, req.pod
            )));
        }
        let (mut rx, identity) = (w.rx, w.identity);
        let (policies, check) = (self.policies.clone(), self.check);
        let (tx, out) = mpsc::channel(2);
        tokio::spawn(async move {
            loop {
                let cur = rx.borrow_and_update().clone();
                // A pod re-created under the same name with another ServiceAccount: the
                // caller checked at the start is no longer its identity.
                let same = check == CallerCheck::InsecureNone
                    || policies
                        .watch_policy(&req.namespace, &req.pod)
                        .is_none_or(|w| w.identity == identity);
                let msg = match cur {
                    _ if !same => Err(Status::permission_denied(format!(
                        "pod {}/{} now runs as another ServiceAccount than {identity}",
                        req.namespace, req.pod
                    ))),
                    Some(p) => Ok(to_proto(&p)),
                    None => Err(Status::not_found(format!(
                        "pod {}/{} was deleted",
                        req.namespace, req.pod
                    ))),
                };
                let end = msg.is_err();
                if tx.send(msg).await.is_err() || end {
                    return;
                }
                tokio::select! {
                    r = rx.changed() => if r.is_err() { return },
                    _ = tx.closed() => return,
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(out),
        )))
    }
}

/// The wire form of a pod policy.
pub fn to_proto(p: &core::PodPolicy) -> pb::PodPolicy {
    pb::PodPolicy {
        default_policy: match p.default_policy {
            core::DefaultPolicy::Allow => pb::DefaultPolicy::Allow,
            core::DefaultPolicy::Authenticated => pb::DefaultPolicy::Authenticated,
            core::DefaultPolicy::Deny => pb::DefaultPolicy::Deny,
        } as i32,
        targeted: p.targeted,
        authorizations: p
            .authorizations
            .iter()
            .map(|a| pb::Authorization {
                traffic_target: a.traffic_target.clone(),
                identities: a.identities.clone(),
                ports: a.ports.iter().map(|p| u32::from(*p)).collect(),
                http_routes: a
                    .http_routes
                    .iter()
                    .map(|r| pb::HttpRoute {
                        name: r.name.clone(),
                        path_regex: r.path_regex.clone().unwrap_or_default(),
                        methods: r.methods.clone(),
                        headers: r
                            .headers
                            .iter()
                            .map(|(name, value_regex)| pb::HeaderMatch {
                                name: name.clone(),
                                value_regex: value_regex.clone(),
                            })
                            .collect(),
                    })
                    .collect(),
            })
            .collect(),
        probes: p
            .probes
            .iter()
            .map(|pr| pb::Probe {
                port: u32::from(pr.port),
                path: pr.path.clone(),
            })
            .collect(),
    }
}

//! The inbound policy of this pod from tulle-controller's policy service
//! (`tulle.policy.InboundPolicies/Watch`), over mTLS with the proxy's certificate (the
//! controller serves a pod's policy only to that pod's identity).
//!
//! Until the first policy arrives the published policy is [`Policy::pending`]: the proxy is
//! not ready and denies inbound traffic (fail closed for new pods). When the controller goes
//! away the stream is re-opened with backoff and the last policy stays in force.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tonic::transport::Channel;
use tulle_api::policy::WorkloadRef;
use tulle_api::policy::inbound_policies_client::InboundPoliciesClient;

use crate::config::PolicyConfig;
use crate::control::backoff::Backoff;
use crate::policy::{Policy, PolicyRx};

/// Retry delays of the policy client.
#[derive(Debug, Clone)]
pub struct Timing {
    pub backoff_min: Duration,
    pub backoff_max: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            backoff_min: super::RECONNECT_BACKOFF_MIN,
            backoff_max: super::RECONNECT_BACKOFF_MAX,
        }
    }
}

/// The policy client could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("{0} (TULLE_PROXY_POLICY_SVC_ADDR / TULLE_PROXY_POLICY_SVC_NAME)")]
pub struct SetupError(tulle_api::tls::ChannelError);

/// Starts watching the policy of `config`'s pod; returns the receiver of the current
/// policy ([`Policy::pending`] until the first answer). The watch ends when every receiver
/// is dropped.
pub fn watch(
    config: &PolicyConfig,
    tls: Arc<rustls::ClientConfig>,
    timing: Timing,
) -> Result<PolicyRx, SetupError> {
    let channel =
        tulle_api::tls::channel(&config.svc.addr, &config.svc.name, tls).map_err(SetupError)?;
    let (tx, rx) = watch::channel(Arc::new(Policy::pending()));
    let workload = WorkloadRef {
        namespace: config.namespace.clone(),
        pod: config.pod.clone(),
    };
    tokio::spawn(run(
        InboundPoliciesClient::new(channel),
        workload,
        timing,
        tx,
    ));
    Ok(rx)
}

async fn run(
    mut client: InboundPoliciesClient<Channel>,
    workload: WorkloadRef,
    timing: Timing,
    tx: watch::Sender<Arc<Policy>>,
) {
    let pod = format!("{}/{}", workload.namespace, workload.pod);
    let mut backoff = Backoff::new(timing.backoff_min, timing.backoff_max);
    while !tx.is_closed() {
        let keeping = if tx.borrow().is_pending() {
            "inbound traffic stays denied and the proxy not ready until it answers"
        } else {
            "keeping the last policy"
        };
        match client.watch(workload.clone()).await {
            Ok(resp) => {
                let mut stream = resp.into_inner();
                loop {
                    match stream.message().await {
                        Ok(Some(p)) => {
                            backoff.reset();
                            let policy = Policy::from_proto(&p);
                            tracing::info!(%pod, policy = %policy.summary(), "inbound policy updated");
                            tx.send_replace(Arc::new(policy));
                        }
                        Ok(None) => {
                            tracing::warn!(%pod, "policy stream ended; reconnecting ({keeping})");
                            break;
                        }
                        Err(s) => {
                            tracing::warn!(%pod, "policy stream failed: {}; reconnecting ({keeping})", s.message());
                            break;
                        }
                    }
                }
            }
            Err(s) if s.code() == tonic::Code::PermissionDenied => {
                tracing::warn!(%pod, "the policy service refused this proxy's identity ({}): the proxy's identity must be the pod's ServiceAccount; retrying ({keeping})", s.message());
            }
            Err(s) if s.code() == tonic::Code::NotFound => {
                tracing::info!(%pod, "the policy service does not know this pod yet ({}); retrying", s.message());
            }
            Err(s) => {
                tracing::warn!(%pod, "policy service unavailable ({}); retrying ({keeping})", s.message());
            }
        }
        tokio::time::sleep(backoff.next_delay()).await;
    }
}

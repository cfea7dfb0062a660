//! The policy client against an in-process `InboundPolicies` server over TLS: the proxy
//! asks for its own pod, is not ready and refuses traffic until the first policy, applies
//! updates, and keeps the last policy when the server goes away.

mod support;

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::Stream;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::sync::watch;
use tonic::{Request, Response, Status};
use tulle_api::policy::inbound_policies_server::{InboundPolicies, InboundPoliciesServer};
use tulle_api::policy::{DefaultPolicy, PodPolicy, WorkloadRef};
use tulle_proxy::app::Proxy;
use tulle_proxy::discovery::StaticDiscovery;

use support::*;

const CONTROLLER: &str =
    "tulle-controller.tulle-system.serviceaccount.identity.tulle.cluster.local";

type PolicyStream = Pin<Box<dyn Stream<Item = Result<PodPolicy, Status>> + Send>>;

/// Streams the current value of `policy` (once set) and every later one.
struct Fake {
    policy: watch::Receiver<Option<PodPolicy>>,
    asked: Arc<Mutex<Vec<(String, String)>>>,
}

#[tonic::async_trait]
impl InboundPolicies for Fake {
    type WatchStream = PolicyStream;

    async fn watch(&self, req: Request<WorkloadRef>) -> Result<Response<PolicyStream>, Status> {
        let w = req.into_inner();
        self.asked.lock().unwrap().push((w.namespace, w.pod));
        let rx = self.policy.clone();
        let s = futures::stream::unfold((rx, true), |(mut rx, first)| async move {
            if !first {
                rx.changed().await.ok()?;
            }
            loop {
                let current = rx.borrow_and_update().clone();
                if let Some(p) = current {
                    return Some((Ok(p), (rx, false)));
                }
                rx.changed().await.ok()?;
            }
        });
        Ok(Response::new(Box::pin(s)))
    }
}

#[tokio::test]
async fn pending_until_the_first_policy_then_updates_and_keep_last() {
    init();
    bounded(async {
        let pki = Pki::new();
        let (app, _) = app("web").await;
        let leaf = pki.ca.leaf(CONTROLLER).unwrap();
        let mut tls = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from_pem_slice(leaf.cert_pem.as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).unwrap(),
            )
            .unwrap();
        tls.alpn_protocols = vec![b"h2".to_vec()];
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (set, policy) = watch::channel(None);
        let asked = Arc::new(Mutex::new(Vec::new()));
        let fake = Fake {
            policy,
            asked: asked.clone(),
        };
        let server = tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(InboundPoliciesServer::new(fake))
                .serve_with_incoming(tulle_api::tls::incoming(listener, Arc::new(tls))),
        );

        let proxy = Proxy::start(
            config(
                SERVER_ID,
                &[
                    ("TULLE_PROXY_INBOUND_PORT_FALLBACK", app.port().to_string()),
                    ("TULLE_PROXY_POLICY_SVC_ADDR", addr.to_string()),
                    ("TULLE_PROXY_POLICY_SVC_NAME", CONTROLLER.to_string()),
                    ("TULLE_PROXY_POD_NAMESPACE", "test".to_string()),
                    ("TULLE_PROXY_POD_NAME", "web-1".to_string()),
                ],
            ),
            pki.tls(SERVER_ID),
            Arc::new(StaticDiscovery::default()),
        )
        .await
        .unwrap();
        // No policy yet: not ready, traffic refused.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(get(proxy.admin_addr, "/ready").await.0, 503);
        assert_eq!(get(proxy.inbound_addr, "/").await.0, 403);
        assert_eq!(
            asked.lock().unwrap().first(),
            Some(&("test".to_string(), "web-1".to_string()))
        );

        let policy = |d: DefaultPolicy| PodPolicy {
            default_policy: d as i32,
            ..Default::default()
        };
        set.send_replace(Some(policy(DefaultPolicy::Allow)));
        let until = |status: u16| {
            let admin = proxy.admin_addr;
            let inbound = proxy.inbound_addr;
            async move {
                for _ in 0..100 {
                    if get(admin, "/ready").await.0 == 200 && get(inbound, "/").await.0 == status {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                panic!("no {status} within 2 s");
            }
        };
        until(200).await;
        // An update applies within 1 s.
        set.send_replace(Some(policy(DefaultPolicy::Authenticated)));
        until(403).await;

        // The controller goes away: the last policy stays in force, the proxy stays ready.
        server.abort();
        let _ = server.await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(get(proxy.admin_addr, "/ready").await.0, 200);
        assert_eq!(get(proxy.inbound_addr, "/").await.0, 403);
    })
    .await
}

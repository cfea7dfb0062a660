//! Test support for the control-plane clients: a real tulle-identity Certify server on
//! 127.0.0.1 with a fake TokenReview, and proxies in identity service mode.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
use rustls::RootCertStore;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tulle_api::ServiceAccountIdentity;
use tulle_identity::events::EventSink;
use tulle_identity::issuer::{IssuerRx, Reloader};
use tulle_identity::metrics::Metrics;
use tulle_identity::service::{Certify, CertifyConfig};
use tulle_identity::token::{TokenError, TokenReviewer, TokenSubject};

use tulle_proxy::config::ControlService;
use tulle_proxy::control::identity::{Certifier, Timing};
use tulle_proxy::tls::Tls;

pub const IDENTITY_ID: &str =
    "tulle-identity.tulle-system.serviceaccount.identity.tulle.cluster.local";

/// Tokens "good-<ns>-<sa>" authenticate ServiceAccount `<sa>` of `<ns>`.
pub struct FakeReviewer;

impl TokenReviewer for FakeReviewer {
    async fn review(&self, token: &str, _audience: &str) -> Result<TokenSubject, TokenError> {
        match token.split('-').collect::<Vec<_>>().as_slice() {
            ["good", ns, sa] => Ok(TokenSubject {
                namespace: ns.to_string(),
                service_account: sa.to_string(),
            }),
            _ => Err(TokenError::Unauthenticated("invalid bearer token".into())),
        }
    }
}

#[derive(Clone)]
pub struct NoEvents;

impl EventSink for NoEvents {
    fn issuing_failed(&self, _: &str, _: &str, _: &str, _: &str) {}
}

/// A root and an issuer signed by it, written where the identity Reloader reads them.
pub struct Ca {
    pub root_pem: String,
    pub dir: tempfile::TempDir,
    pub rx: IssuerRx,
}

impl Ca {
    pub async fn new() -> Ca {
        let root_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut root = CertificateParams::new(Vec::<String>::new()).unwrap();
        root.distinguished_name
            .push(DnType::CommonName, "root.test");
        root.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        root.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let root_cert = root.self_signed(&root_key).unwrap();
        let root_issuer = rcgen::Issuer::new(root, root_key);
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name
            .push(DnType::CommonName, "identity.test");
        p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        p.not_before = (SystemTime::now() - Duration::from_secs(3600)).into();
        p.not_after = (SystemTime::now() + Duration::from_secs(86400)).into();
        let cert = p.signed_by(&key, &root_issuer).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("tls.crt"), cert.pem()).unwrap();
        std::fs::write(dir.path().join("tls.key"), key.serialize_pem()).unwrap();
        let (reloader, mut rx) = Reloader::new(dir.path().to_path_buf(), Duration::from_secs(5));
        tokio::spawn(reloader.run(|_| {}));
        tokio::time::timeout(Duration::from_secs(20), rx.wait_for(|i| i.is_some()))
            .await
            .unwrap()
            .unwrap();
        Ca {
            root_pem: root_cert.pem(),
            dir,
            rx,
        }
    }

    pub fn roots(&self) -> RootCertStore {
        tulle_api::certify::roots_from_pem(self.root_pem.as_bytes()).unwrap()
    }

    /// A serving certificate issued directly (for control-plane servers).
    pub fn serving(&self, name: &str) -> Arc<tulle_identity::serving::ServingCert> {
        let serving = Arc::new(tulle_identity::serving::ServingCert::default());
        let iss = self.rx.borrow().clone().unwrap();
        serving
            .issue(&iss, &ServiceAccountIdentity::parse_dns_name(name).unwrap())
            .unwrap();
        serving
    }
}

/// A running Certify server.
pub struct IdentityServer {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
    pub metrics: Metrics,
}

impl IdentityServer {
    /// Serves Certify over TLS on 127.0.0.1 issuing leaves valid for `lifetime`.
    pub async fn start(ca: &Ca, lifetime: Duration) -> IdentityServer {
        let metrics = Metrics::default();
        let svc = Certify::new(
            CertifyConfig {
                trust_domain: "cluster.local".into(),
                audience: tulle_api::names::TOKEN_AUDIENCE.into(),
                lifetime,
                clock_skew: Duration::from_secs(1),
            },
            ca.rx.clone(),
            FakeReviewer,
            NoEvents,
            metrics.clone(),
        );
        let cfg = ca.serving(IDENTITY_ID).server_config().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(svc.into_server())
                .serve_with_incoming_shutdown(tulle_api::tls::incoming(listener, cfg), async {
                    let _ = rx.await;
                })
                .await;
        });
        IdentityServer {
            addr,
            stop: Some(tx),
            task,
            metrics,
        }
    }

    /// Stops the server (new connections are refused).
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), &mut self.task).await;
        self.task.abort();
    }
}

/// Pending TLS for `name` and a certifier filling it from `server` with a good token.
pub fn certified_tls(
    ca: &Ca,
    server: &IdentityServer,
    name: &str,
    dir: &std::path::Path,
) -> (Tls, Certifier) {
    let id = ServiceAccountIdentity::parse_dns_name(name).unwrap();
    let token = dir.join(format!("{}.token", id.service_account));
    std::fs::write(
        &token,
        format!("good-{}-{}\n", id.namespace, id.service_account),
    )
    .unwrap();
    let tls = Tls::pending(name.into(), ca.roots()).unwrap();
    let svc = ControlService {
        addr: server.addr.to_string(),
        name: IDENTITY_ID.into(),
    };
    let timing = Timing {
        request_timeout: Duration::from_secs(5),
        backoff_min: Duration::from_millis(100),
        backoff_max: Duration::from_secs(1),
    };
    let c = Certifier::new(&svc, name, token, tls.identity_client(), timing).unwrap();
    (tls, c)
}

pub const CONTROLLER_ID: &str =
    "tulle-controller.tulle-system.serviceaccount.identity.tulle.cluster.local";

/// The real destination gRPC service over TLS on 127.0.0.1, behind a [`Relay`] so the
/// test can cut it off like a controller pod going away.
pub struct Controller {
    pub index: Arc<tulle_controller::core::Index>,
    pub relay: Relay,
}

impl Controller {
    pub async fn start(ca: &Ca) -> Controller {
        use tulle_controller::core::{Index, Naming};
        use tulle_controller::grpc::{DestinationService, GrpcMetrics};
        let index = Arc::new(Index::new(Naming {
            cluster_domain: "cluster.local".into(),
            trust_domain: "cluster.local".into(),
        }));
        let cfg = ca
            .serving(CONTROLLER_ID)
            .mtls_server_config(ca.roots())
            .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let svc = DestinationService::new(index.clone(), GrpcMetrics::default()).into_server();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(svc)
                .serve_with_incoming(tulle_api::tls::incoming(listener, cfg)),
        );
        Controller {
            index,
            relay: Relay::start(addr).await,
        }
    }
}

/// A TCP relay to `to`; [`Relay::cut`] closes every relayed connection and the listener.
pub struct Relay {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Relay {
    pub async fn start(to: SocketAddr) -> Relay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            // Dropping the set (when the task is aborted) aborts every connection.
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let Ok((mut down, _)) = listener.accept().await else {
                    continue;
                };
                conns.spawn(async move {
                    if let Ok(mut up) = tokio::net::TcpStream::connect(to).await {
                        let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
                    }
                });
            }
        });
        Relay { addr, task }
    }

    /// The controller goes away: connections are reset, new ones refused.
    pub async fn cut(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

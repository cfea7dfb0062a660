//! Discovery through the real controller gRPC service (over a directly driven index) on
//! 127.0.0.1: client → outbound proxy → inbound proxy → server routed by the controller,
//! an endpoint change, the controller going away mid-traffic, and an unknown service
//! forwarded to its original destination. Proxies get their certificates from a real
//! tulle-identity.

mod control;
mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use control::{CONTROLLER_ID, Ca, Controller, IdentityServer, certified_tls};
use support::{CLIENT_ID, SERVER_ID, app, bounded, config, get, init, metrics};
use tulle_controller::core::{PodInfo, ServiceInfo, ServicePort, SliceEndpoint, SliceInfo};
use tulle_proxy::app::Proxy;
use tulle_proxy::config::{ControlService, DestinationConfig};
use tulle_proxy::control::Timing;
use tulle_proxy::control::destination::DestinationDiscovery;
use tulle_proxy::discovery::StaticDiscovery;

const AUTHORITY: &str = "web.test.svc.cluster.local:80";

async fn ready(p: &Proxy) {
    while get(p.admin_addr, "/ready").await.0 != 200 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A GET through the client proxy with `Host: authority`.
async fn request(outbound: SocketAddr, authority: &str, path: &str) -> (u16, String) {
    use http_body_util::{BodyExt, Full};
    let (mut send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(
        tokio::net::TcpStream::connect(outbound).await.unwrap(),
    ))
    .await
    .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get(path)
        .header("host", authority)
        .body(Full::new(bytes::Bytes::new()))
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

fn slice(ip: &str, port: u16, pod: &str) -> SliceInfo {
    SliceInfo {
        service: "web".into(),
        ports: vec![(String::new(), port)],
        endpoints: vec![SliceEndpoint {
            addrs: vec![ip.parse().unwrap()],
            ready: true,
            pod: Some(pod.into()),
        }],
    }
}

fn pod(ip: &str) -> PodInfo {
    PodInfo {
        ips: vec![ip.parse().unwrap()],
        service_account: "web".into(),
        meshed: true,
        owner: None,
    }
}

#[tokio::test]
async fn routes_by_controller_follow_changes_and_survive_its_absence() {
    init();
    bounded(async {
        let ca = Ca::new().await;
        let identity = IdentityServer::start(&ca, Duration::from_secs(3600)).await;
        let controller = Controller::start(&ca).await;
        let dir = tempfile::tempdir().unwrap();

        // Two server proxies (web-1 on 127.0.0.2, web-2 on 127.0.0.3) with their apps.
        let mut servers = Vec::new();
        for (ip, name) in [("127.0.0.2", "web-a"), ("127.0.0.3", "web-b")] {
            let (web, _) = app(name).await;
            let (tls, cert) = certified_tls(&ca, &identity, SERVER_ID, dir.path());
            let p = Proxy::start(
                config(
                    SERVER_ID,
                    &[
                        ("TULLE_PROXY_INBOUND_LISTEN_ADDR", format!("{ip}:0")),
                        ("TULLE_PROXY_INBOUND_PORT_FALLBACK", web.port().to_string()),
                    ],
                ),
                tls.clone(),
                Arc::new(StaticDiscovery::default()),
            )
            .await
            .unwrap();
            tokio::spawn(cert.run(tls.store.clone()));
            ready(&p).await;
            servers.push(p);
        }

        // The client proxy discovers through the controller (mTLS with its own certificate).
        let plain = app("plain").await.0;
        let (tls, cert) = certified_tls(&ca, &identity, CLIENT_ID, dir.path());
        tokio::spawn(cert.run(tls.store.clone()));
        let dest = DestinationConfig {
            svc: ControlService {
                addr: controller.relay.addr.to_string(),
                name: CONTROLLER_ID.into(),
            },
            namespace: "test".into(),
            pod: Some("client-0".into()),
        };
        let discovery =
            DestinationDiscovery::new(&dest, tls.control_client(), Timing::default()).unwrap();
        let client = Proxy::start(
            config(
                CLIENT_ID,
                &[("TULLE_PROXY_OUTBOUND_ORIG_DST_FALLBACK", plain.to_string())],
            ),
            tls.clone(),
            Arc::new(discovery.clone()),
        )
        .await
        .unwrap();
        ready(&client).await;

        let ix = &controller.index;
        ix.apply_service(
            "test",
            "web",
            ServiceInfo {
                cluster_ips: vec!["10.96.0.10".parse().unwrap()],
                ports: vec![ServicePort {
                    name: String::new(),
                    port: 80,
                    opaque: false,
                }],
            },
        );
        ix.apply_pod("test", "web-1", pod("127.0.0.2"));
        ix.apply_pod("test", "web-2", pod("127.0.0.3"));
        ix.apply_slice(
            "test",
            "web-a",
            slice("127.0.0.2", servers[0].inbound_addr.port(), "web-1"),
        );

        // Routed by discovery, over mTLS with the endpoint's identity.
        let (status, body) = request(client.outbound_addr, AUTHORITY, "/one").await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body, format!("web-a HTTP/1.1 GET /one {CLIENT_ID}\n"));
        let m = metrics(&client).await;
        assert!(
            m.lines().any(|l| l.starts_with("request_total{")
                && l.contains("tls=\"true\"")
                && l.contains(&format!("server_id=\"{SERVER_ID}\""))),
            "{m}"
        );

        // An endpoint change is applied: web-b replaces web-a.
        ix.apply_slice(
            "test",
            "web-b",
            slice("127.0.0.3", servers[1].inbound_addr.port(), "web-2"),
        );
        ix.delete_slice("test", "web-a");
        loop {
            let (status, body) = request(client.outbound_addr, AUTHORITY, "/two").await;
            assert_eq!(status, 200, "{body}");
            if body.starts_with("web-b ") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        // An unknown service is forwarded to the original destination (an unmeshed app).
        let (status, body) =
            request(client.outbound_addr, "nope.test.svc.cluster.local:80", "/x").await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body, "plain HTTP/1.1 GET /x -\n");

        // The controller goes away in the middle of traffic: no request fails, the last
        // known endpoints keep serving.
        let out = client.outbound_addr;
        let traffic = tokio::spawn(async move {
            for i in 0..60 {
                let (status, body) = request(out, AUTHORITY, &format!("/t{i}")).await;
                assert_eq!(status, 200, "{body}");
                assert!(body.starts_with("web-b "), "{body}");
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        controller.relay.cut().await;
        traffic.await.unwrap();
        for i in 0..10 {
            let (status, body) = request(out, AUTHORITY, &format!("/after{i}")).await;
            assert_eq!(status, 200, "{body}");
            assert!(body.starts_with("web-b "), "{body}");
        }
        assert!(discovery.streams() >= 1);
    })
    .await
}

#[tokio::test]
async fn streams_are_shared_dropped_when_idle_and_unreachable_is_unavailable() {
    use tulle_proxy::discovery::{Lookup, Resolve, Target};
    init();
    bounded(async {
        let ca = Ca::new().await;
        let controller = Controller::start(&ca).await;
        let timing = Timing {
            first_answer: Duration::from_secs(1),
            idle: Duration::from_millis(200),
            backoff_min: Duration::from_millis(50),
            backoff_max: Duration::from_millis(200),
        };
        let dest = |addr: SocketAddr| DestinationConfig {
            svc: ControlService {
                addr: addr.to_string(),
                name: CONTROLLER_ID.into(),
            },
            namespace: "test".into(),
            pod: None,
        };
        controller.index.apply_service(
            "test",
            "web",
            ServiceInfo {
                cluster_ips: vec![],
                ports: vec![ServicePort {
                    name: String::new(),
                    port: 80,
                    opaque: false,
                }],
            },
        );
        // The controller requires a client certificate (mTLS): without one the proxy cannot
        // resolve: nothing is known (the outbound side fails closed inside the mesh networks).
        let pending = tulle_proxy::tls::Tls::pending(CLIENT_ID.into(), ca.roots()).unwrap();
        let refused = DestinationDiscovery::new(
            &dest(controller.relay.addr),
            pending.control_client(),
            timing.clone(),
        )
        .unwrap();
        assert!(matches!(
            refused.resolve(Target::Authority(AUTHORITY)).await,
            Lookup::Unavailable
        ));
        drop(refused);
        // With its certificate from identity it resolves.
        let identity = IdentityServer::start(&ca, Duration::from_secs(3600)).await;
        let dir = tempfile::tempdir().unwrap();
        let (tls, cert) = certified_tls(&ca, &identity, CLIENT_ID, dir.path());
        tokio::spawn(cert.run(tls.store.clone()));
        while !tls.store.has_cert() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let d = DestinationDiscovery::new(
            &dest(controller.relay.addr),
            tls.control_client(),
            timing.clone(),
        )
        .unwrap();
        let Lookup::Found(a) = d.resolve(Target::Authority(AUTHORITY)).await else {
            panic!("a known service without endpoints is found")
        };
        assert!(a.borrow().endpoints.is_empty());
        let Lookup::Found(b) = d.resolve(Target::Authority(AUTHORITY)).await else {
            panic!("found")
        };
        assert_eq!(d.streams(), 1, "one stream per target, shared");
        assert!(matches!(
            d.resolve(Target::Authority("nope.test.svc.cluster.local:80"))
                .await,
            Lookup::NotFound
        ));
        assert!(matches!(
            d.resolve(Target::Authority("example.com:443")).await,
            Lookup::NotFound
        ));
        // Unused targets are dropped after the idle time; used ones stay.
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(d.streams(), 1, "the watched target stays: {}", d.streams());
        drop((a, b));
        while d.streams() > 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        // With the controller unreachable a new target is unavailable (not "not found").
        controller.relay.cut().await;
        let gone = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = gone.local_addr().unwrap();
        drop(gone);
        let d = DestinationDiscovery::new(&dest(addr), tls.control_client(), timing).unwrap();
        assert!(matches!(
            d.resolve(Target::Authority(AUTHORITY)).await,
            Lookup::Unavailable
        ));
    })
    .await
}

/// Discovery not answering never means plaintext inside the mesh networks: the request
/// gets a 503 that says why (and the route is resolved again a second later); outside
/// them the original destination is used as is.
#[tokio::test]
async fn an_unanswering_controller_fails_closed_inside_the_mesh_networks() {
    init();
    bounded(async {
        let (app_addr, hits) = app("plain").await;
        let gone = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let dead = gone.local_addr().unwrap();
        drop(gone);
        let timing = Timing {
            first_answer: Duration::from_millis(300),
            ..Timing::default()
        };
        let pki = support::Pki::new();
        for (networks, inside) in [("127.0.0.0/8", true), ("10.0.0.0/8", false)] {
            let cfg = config(
                CLIENT_ID,
                &[
                    (
                        "TULLE_PROXY_OUTBOUND_ORIG_DST_FALLBACK",
                        app_addr.to_string(),
                    ),
                    ("TULLE_PROXY_MESH_NETWORKS", networks.to_string()),
                ],
            );
            let tls = pki.tls(CLIENT_ID);
            let dest = DestinationConfig {
                svc: ControlService {
                    addr: dead.to_string(),
                    name: CONTROLLER_ID.into(),
                },
                namespace: "test".into(),
                pod: None,
            };
            let d = DestinationDiscovery::new(&dest, tls.control_client(), timing.clone()).unwrap();
            let proxy = Proxy::start(cfg, tls, Arc::new(d)).await.unwrap();
            let before = hits.load(std::sync::atomic::Ordering::Relaxed);
            let (status, body) = request(proxy.outbound_addr, AUTHORITY, "/").await;
            let after = hits.load(std::sync::atomic::Ordering::Relaxed);
            if inside {
                assert_eq!(status, 503, "{body}");
                assert!(body.contains("did not answer"), "{body}");
                assert_eq!(before, after, "nothing reached the app in plaintext");
            } else {
                assert_eq!(status, 200, "outside the mesh networks: as is ({body})");
                assert_eq!(after, before + 1);
            }
        }
    })
    .await
}

#[tokio::test]
async fn a_service_created_after_first_use_is_picked_up() {
    init();
    bounded(async {
        let ca = Ca::new().await;
        let identity = IdentityServer::start(&ca, Duration::from_secs(3600)).await;
        let controller = Controller::start(&ca).await;
        let dir = tempfile::tempdir().unwrap();
        let (web, _) = app("web-a").await;
        let (stls, scert) = certified_tls(&ca, &identity, SERVER_ID, dir.path());
        let server = Proxy::start(
            config(
                SERVER_ID,
                &[
                    ("TULLE_PROXY_INBOUND_LISTEN_ADDR", "127.0.0.2:0".into()),
                    ("TULLE_PROXY_INBOUND_PORT_FALLBACK", web.port().to_string()),
                ],
            ),
            stls.clone(),
            Arc::new(StaticDiscovery::default()),
        )
        .await
        .unwrap();
        tokio::spawn(scert.run(stls.store.clone()));
        let plain = app("plain").await.0;
        let (tls, cert) = certified_tls(&ca, &identity, CLIENT_ID, dir.path());
        tokio::spawn(cert.run(tls.store.clone()));
        let dest = DestinationConfig {
            svc: ControlService {
                addr: controller.relay.addr.to_string(),
                name: CONTROLLER_ID.into(),
            },
            namespace: "test".into(),
            pod: None,
        };
        let timing = Timing {
            idle: Duration::from_millis(300),
            ..Timing::default()
        };
        let discovery = DestinationDiscovery::new(&dest, tls.control_client(), timing).unwrap();
        let client = Proxy::start(
            config(
                CLIENT_ID,
                &[
                    ("TULLE_PROXY_OUTBOUND_ORIG_DST_FALLBACK", plain.to_string()),
                    ("TULLE_PROXY_ROUTE_IDLE_TIMEOUT", "500ms".into()),
                ],
            ),
            tls.clone(),
            Arc::new(discovery.clone()),
        )
        .await
        .unwrap();
        ready(&server).await;
        ready(&client).await;

        // Unknown yet: forwarded to the original destination.
        let (status, body) = request(client.outbound_addr, AUTHORITY, "/early").await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body, "plain HTTP/1.1 GET /early -\n");

        let ix = &controller.index;
        ix.apply_service(
            "test",
            "web",
            ServiceInfo {
                cluster_ips: vec![],
                ports: vec![ServicePort {
                    name: String::new(),
                    port: 80,
                    opaque: false,
                }],
            },
        );
        ix.apply_pod("test", "web-1", pod("127.0.0.2"));
        ix.apply_slice(
            "test",
            "web-a",
            slice("127.0.0.2", server.inbound_addr.port(), "web-1"),
        );
        // Within PASSTHROUGH_TTL the route is resolved again and goes through the mesh.
        loop {
            let (status, body) = request(client.outbound_addr, AUTHORITY, "/later").await;
            assert_eq!(status, 200, "{body}");
            if body.starts_with("web-a ") {
                assert_eq!(body, format!("web-a HTTP/1.1 GET /later {CLIENT_ID}\n"));
                break;
            }
            assert_eq!(body, "plain HTTP/1.1 GET /later -\n");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert!(discovery.streams() >= 1);

        // Unused, the route is dropped (on the next route lookup) and then the stream.
        tokio::time::sleep(Duration::from_millis(700)).await;
        let (status, body) = request(client.outbound_addr, "127.0.0.1:9", "/poke").await;
        assert_eq!(
            (status, body.as_str()),
            (200, "plain HTTP/1.1 GET /poke -\n")
        );
        while discovery.streams() > 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
}

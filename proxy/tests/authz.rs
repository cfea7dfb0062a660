//! SMI Traffic Access in the inbound proxy, in process: client proxies with mesh mTLS (two
//! identities) and a server proxy with a static, replaceable policy. An allowed identity
//! gets 200, another 403 with the reason header; plaintext clients are denied under
//! `authenticated`; gRPC gets `grpc-status: 7`; opaque TCP is closed; probes stay exempt
//! under `deny`; a pending policy keeps the proxy unready; a policy update closes an open
//! TCP connection it no longer admits; decisions are counted.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tulle_proxy::app::Proxy;
use tulle_proxy::discovery::StaticDiscovery;
use tulle_proxy::policy::{Policy, PolicyFile, StaticPolicy};

use support::*;

const OTHER_ID: &str = "other.test.serviceaccount.identity.tulle.cluster.local";

fn file(v: serde_json::Value) -> PolicyFile {
    serde_json::from_value(v).unwrap()
}

/// A server proxy in front of `app` with `policy`.
async fn server(pki: &Pki, app: SocketAddr, policy: &StaticPolicy) -> Proxy {
    Proxy::start_with_policy(
        config(
            SERVER_ID,
            &[("TULLE_PROXY_INBOUND_PORT_FALLBACK", app.port().to_string())],
        ),
        pki.tls(SERVER_ID),
        Arc::new(StaticDiscovery::default()),
        policy.watch(),
    )
    .await
    .unwrap()
}

/// A client proxy with identity `id` sending its outbound traffic to `server`.
async fn client(pki: &Pki, id: &str, server: &Proxy) -> Proxy {
    let discovery =
        StaticDiscovery::new(destination(&[(server.inbound_addr, Some(SERVER_ID))])).unwrap();
    Proxy::start(
        config(
            id,
            &[(
                "TULLE_PROXY_OUTBOUND_ORIG_DST_FALLBACK",
                VIRTUAL.to_string(),
            )],
        ),
        pki.tls(id),
        Arc::new(discovery),
    )
    .await
    .unwrap()
}

/// One HTTP/1 request; status, headers and body.
async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, http::HeaderMap, String) {
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(
        TcpStream::connect(addr).await.unwrap(),
    ))
    .await
    .unwrap();
    tokio::spawn(conn);
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", AUTHORITY);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = send
        .send_request(req.body(Full::new(Bytes::new())).unwrap())
        .await
        .unwrap();
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (
        parts.status.as_u16(),
        parts.headers,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

#[tokio::test]
async fn identities_routes_plaintext_grpc_and_metrics() {
    init();
    bounded(async {
        let pki = Pki::new();
        let (app, hits) = app("web").await;
        let port = app.port();
        let policy = StaticPolicy::new(&file(json!({
            "default_policy": "deny",
            "targeted": true,
            "authorizations": [{
                "traffic_target": "test/web", "identities": [CLIENT_ID], "ports": [port],
                "http_routes": [{"name": "web/api", "path_regex": "/api", "methods": ["GET"]}]
            }]
        })));
        let srv = server(&pki, app, &policy).await;
        let allowed = client(&pki, CLIENT_ID, &srv).await;
        let other = client(&pki, OTHER_ID, &srv).await;

        let (status, _, body) = request(allowed.outbound_addr, "GET", "/api/x", &[]).await;
        assert_eq!(status, 200, "{body}");
        assert!(body.contains(CLIENT_ID), "{body}");
        // The listed identity, on a route no rule allows.
        let (status, h, _) = request(allowed.outbound_addr, "POST", "/api/x", &[]).await;
        assert_eq!(status, 403);
        assert_eq!(h["tulle-proxy-error"], "unauthorized");
        // Another identity.
        let (status, h, body) = request(other.outbound_addr, "GET", "/api/x", &[]).await;
        assert_eq!(status, 403);
        assert_eq!(h["tulle-proxy-error"], "unauthorized");
        assert!(
            body.contains(OTHER_ID) && body.contains(&port.to_string()),
            "{body}"
        );
        // gRPC: 200 with grpc-status 7.
        let grpc = [("content-type", "application/grpc")];
        let (status, h, _) = request(other.outbound_addr, "POST", "/pkg.Svc/Call", &grpc).await;
        assert_eq!(status, 200);
        assert_eq!(h["grpc-status"], "7");
        assert!(h["grpc-message"].to_str().unwrap().contains(OTHER_ID));
        // A plaintext client never matches a TrafficTarget.
        let (status, _, body) = request(srv.inbound_addr, "GET", "/api/x", &[]).await;
        assert_eq!(status, 403);
        assert!(body.contains("no mesh identity"), "{body}");
        assert_eq!(hits.load(std::sync::atomic::Ordering::Relaxed), 1);

        // `authenticated`: any mesh identity, no plaintext client.
        policy.replace(&file(json!({"default_policy": "authenticated"})));
        let (status, _, _) = request(other.outbound_addr, "POST", "/x", &[]).await;
        assert_eq!(status, 200);
        let (status, _, _) = request(srv.inbound_addr, "GET", "/x", &[]).await;
        assert_eq!(status, 403);

        let m = metrics(&srv).await;
        let p = format!("target_port=\"{port}\"");
        let allow = "inbound_http_authz_allow_total";
        let deny = "inbound_http_authz_deny_total";
        let client_id = format!("client_id=\"{CLIENT_ID}\"");
        let other_id = format!("client_id=\"{OTHER_ID}\"");
        let rule = [
            p.as_str(),
            "authz=\"test/web\"",
            "route=\"web/api\"",
            &client_id,
        ];
        assert_eq!(sample(&m, allow, &rule), 1.0);
        let targeted = [p.as_str(), "authz=\"targeted\"", &other_id];
        assert_eq!(sample(&m, deny, &targeted), 2.0);
        let targeted = [p.as_str(), "authz=\"targeted\"", "client_id=\"\""];
        assert_eq!(sample(&m, deny, &targeted), 1.0);
        let auth = [
            p.as_str(),
            "authz=\"default:authenticated\"",
            "client_id=\"\"",
        ];
        assert_eq!(sample(&m, deny, &auth), 1.0);
        let auth = [p.as_str(), "authz=\"default:authenticated\"", &other_id];
        assert_eq!(sample(&m, allow, &auth), 1.0);
        // Denied requests are answered (and counted) by the inbound proxy.
        assert!(m.contains("status_code=\"403\""), "{m}");
    })
    .await
}

#[tokio::test]
async fn probes_are_exempt_under_deny_and_pending_means_not_ready() {
    init();
    bounded(async {
        let pki = Pki::new();
        let (app, _) = app("web").await;
        let policy = StaticPolicy::new(&file(json!({
            "default_policy": "deny",
            "probes": [{"port": app.port(), "path": "/healthz"}]
        })));
        let srv = server(&pki, app, &policy).await;
        assert_eq!(
            request(srv.inbound_addr, "GET", "/healthz", &[]).await.0,
            200
        );
        assert_eq!(request(srv.inbound_addr, "GET", "/other", &[]).await.0, 403);
        let cl = client(&pki, CLIENT_ID, &srv).await;
        assert_eq!(request(cl.outbound_addr, "GET", "/other", &[]).await.0, 403);
        let m = metrics(&srv).await;
        let probe = ["authz=\"probe\"", "route=\"\"", "client_id=\"\""];
        assert_eq!(sample(&m, "inbound_http_authz_allow_total", &probe), 1.0);
        assert_eq!(get(srv.admin_addr, "/ready").await.0, 200);

        // A policy service that has not answered: not ready, everything refused.
        let (tx, rx) = tokio::sync::watch::channel(Arc::new(Policy::pending()));
        let pending = Proxy::start_with_policy(
            config(
                SERVER_ID,
                &[("TULLE_PROXY_INBOUND_PORT_FALLBACK", app.port().to_string())],
            ),
            pki.tls(SERVER_ID),
            Arc::new(StaticDiscovery::default()),
            rx,
        )
        .await
        .unwrap();
        let (status, body) = get(pending.admin_addr, "/ready").await;
        assert_eq!(status, 503, "{body}");
        assert!(body.contains("policy"), "{body}");
        let (status, _, body) = request(pending.inbound_addr, "GET", "/", &[]).await;
        assert_eq!(status, 403);
        assert!(body.contains("not ready"), "{body}");
        tx.send_replace(Arc::new(Policy::allow_all()));
        assert_eq!(get(pending.admin_addr, "/ready").await.0, 200);
        assert_eq!(request(pending.inbound_addr, "GET", "/", &[]).await.0, 200);
    })
    .await
}

/// A TCP echo application.
async fn echo_app() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

/// Sends `msg` and reads its echo; `None` when the connection was closed.
async fn echo(s: &mut TcpStream, msg: &[u8]) -> Option<Vec<u8>> {
    s.write_all(msg).await.ok()?;
    let mut buf = vec![0u8; msg.len()];
    let read = tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut buf)).await;
    match read {
        Ok(Ok(_)) => Some(buf),
        Ok(Err(_)) => None,
        Err(_) => panic!("no echo and no close within 5 s"),
    }
}

#[tokio::test]
async fn opaque_tcp_denied_then_revoked_while_open() {
    init();
    bounded(async {
        let pki = Pki::new();
        let app = echo_app().await;
        let port = app.port();
        // Only HTTP routes: no opaque TCP for anyone.
        let policy = StaticPolicy::new(&file(json!({
            "targeted": true,
            "authorizations": [{"traffic_target": "test/db", "identities": [CLIENT_ID],
                "http_routes": [{"name": "db/any"}]}]
        })));
        let srv = server(&pki, app, &policy).await;
        let cl = client(&pki, CLIENT_ID, &srv).await;
        let mut s = TcpStream::connect(cl.outbound_addr).await.unwrap();
        assert_eq!(echo(&mut s, b"\x00hello").await, None, "denied: closed");

        // Allowed without routes: the connection works until the policy revokes it.
        policy.replace(&file(json!({
            "targeted": true,
            "authorizations": [{"traffic_target": "test/db", "identities": [CLIENT_ID], "ports": [port]}]
        })));
        let mut s = TcpStream::connect(cl.outbound_addr).await.unwrap();
        assert_eq!(echo(&mut s, b"\x00ping").await.as_deref(), Some(&b"\x00ping"[..]));
        // A plaintext client is still refused.
        let mut plain = TcpStream::connect(srv.inbound_addr).await.unwrap();
        assert_eq!(echo(&mut plain, b"\x00ping").await, None);

        // An update that still admits the client keeps the connection.
        policy.replace(&file(json!({
            "targeted": true,
            "authorizations": [{"traffic_target": "test/db2", "identities": [OTHER_ID, CLIENT_ID]}]
        })));
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(echo(&mut s, b"\x00still").await.is_some());

        let revoked = Instant::now();
        policy.replace(&file(json!({"targeted": true})));
        let mut buf = [0u8; 16];
        let n = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf))
            .await
            .expect("the revoked connection stays open after 2 s");
        assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
        assert!(revoked.elapsed() < Duration::from_secs(2));

        let m = metrics(&srv).await;
        let id = format!("client_id=\"{CLIENT_ID}\"");
        let p = format!("target_port=\"{port}\"");
        let deny = [p.as_str(), "authz=\"targeted\"", &id];
        assert_eq!(sample(&m, "inbound_tcp_authz_deny_total", &deny), 1.0);
        let allow = [p.as_str(), "authz=\"test/db\"", &id];
        assert_eq!(sample(&m, "inbound_tcp_authz_allow_total", &allow), 1.0);
        let plain = [p.as_str(), "authz=\"targeted\"", "client_id=\"\""];
        assert_eq!(sample(&m, "inbound_tcp_authz_deny_total", &plain), 1.0);
    })
    .await
}

#[tokio::test]
async fn revocation_closes_open_http2_connections() {
    init();
    bounded(async {
        let pki = Pki::new();
        let (app, _) = app("web").await;
        let policy = StaticPolicy::new(&file(json!({"default_policy": "allow"})));
        let srv = server(&pki, app, &policy).await;
        // A plaintext HTTP/2 client straight to the inbound proxy.
        let io = TokioIo::new(TcpStream::connect(srv.inbound_addr).await.unwrap());
        let (mut send, conn) = hyper::client::conn::http2::handshake::<_, _, Full<Bytes>>(
            hyper_util::rt::TokioExecutor::new(),
            io,
        )
        .await
        .unwrap();
        let done = tokio::spawn(conn);
        let req = || {
            Request::get(format!("http://{AUTHORITY}/x"))
                .body(Full::new(Bytes::new()))
                .unwrap()
        };
        assert_eq!(send.send_request(req()).await.unwrap().status(), 200);
        let t = Instant::now();
        policy.replace(&file(json!({"default_policy": "authenticated"})));
        let ended = tokio::time::timeout(Duration::from_secs(3), done).await;
        assert!(ended.is_ok(), "the HTTP/2 connection stayed open");
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    })
    .await
}

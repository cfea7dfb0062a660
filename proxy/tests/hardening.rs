//! Hardening of the proxy (issue 15, item 8): bounded metric label sets under a port scan,
//! long HTTP/1 request lines, the admin port's scraper-only surface for other pods, and the
//! global connection limits and HTTP/2 idle timeout of the listeners.

mod support;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use support::*;
use tokio::net::TcpStream;

use tulle_proxy::app::Proxy;
use tulle_proxy::discovery::StaticDiscovery;

/// This host's address on its default route: a client connecting from it is not local.
fn non_loopback_ip() -> IpAddr {
    let s = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
    // No packet is sent: connecting a UDP socket only chooses the source address.
    s.connect("192.0.2.200:9")
        .or_else(|_| s.connect("10.255.255.254:9"))
        .expect("a route to a non-loopback network (the admin test needs one)");
    let ip = s.local_addr().unwrap().ip();
    assert!(!ip.is_loopback(), "{ip}");
    ip
}

#[tokio::test]
async fn admin_serves_other_pods_only_what_a_scraper_needs() {
    init();
    bounded(async {
        let pki = Pki::new();
        let cfg = config(
            SERVER_ID,
            &[("TULLE_PROXY_ADMIN_LISTEN_ADDR", "0.0.0.0:0".to_string())],
        );
        let proxy = Proxy::start(
            cfg,
            pki.tls(SERVER_ID),
            Arc::new(StaticDiscovery::default()),
        )
        .await
        .unwrap();
        let port = proxy.admin_addr.port();
        let remote = SocketAddr::new(non_loopback_ip(), port);
        let local = SocketAddr::new([127, 0, 0, 1].into(), port);

        // Another pod (a non-loopback peer): the scraper's and the kubelet's paths only.
        let (status, body) = get(remote, "/metrics").await;
        assert_eq!(status, 200);
        assert!(body.contains("proxy_build_info"), "{body}");
        assert_eq!(get(remote, "/ready").await.0, 200);
        assert_eq!(get(remote, "/live").await.0, 200);
        for path in ["/config", "/", "/debug", "/metrics/../config", "/nothing"] {
            let (status, body) = get(remote, path).await;
            assert_eq!(status, 403, "{path}: {body}");
            assert!(!body.contains(SERVER_ID), "{path} leaks the config: {body}");
        }

        // kubectl exec / port-forward (loopback): everything.
        let (status, body) = get(local, "/config").await;
        assert_eq!(status, 200);
        assert!(body.contains(SERVER_ID), "{body}");
        assert_eq!(get(local, "/metrics").await.0, 200);
        assert_eq!(get(local, "/nothing").await.0, 404);
        proxy.shutdown(std::time::Duration::from_secs(1)).await;
    })
    .await
}

#[tokio::test]
async fn a_4_kib_request_line_is_http_through_both_proxies() {
    init();
    bounded(async {
        let pki = Pki::new();
        let (app, hits) = app("web").await;
        let pair = Pair::start(&pki, app, SERVER_ID, &[]).await;
        let path = format!("/search?q={}", "x".repeat(4 * 1024));
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(
            TcpStream::connect(pair.client.outbound_addr).await.unwrap(),
        ))
        .await
        .unwrap();
        tokio::spawn(conn);
        let req = Request::get(&path)
            .header("host", AUTHORITY)
            .body(Full::new(Bytes::new()))
            .unwrap();
        let resp = send.send_request(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        // Through the mesh as HTTP: the server proxy added the client's identity (the app
        // answers the path without the query).
        assert_eq!(
            String::from_utf8_lossy(&body),
            format!("web HTTP/1.1 GET /search {CLIENT_ID}\n")
        );
        assert_eq!(hits.load(std::sync::atomic::Ordering::Relaxed), 1);
        // Counted as an HTTP request on both sides, not as opaque TCP.
        let out = metrics(&pair.client).await;
        let authority = format!("authority=\"{AUTHORITY}\"");
        assert_eq!(
            sample(
                &out,
                "request_total",
                &["direction=\"outbound\"", &authority]
            ),
            1.0
        );
        let inb = metrics(&pair.server).await;
        assert_eq!(
            sample(
                &inb,
                "request_total",
                &["direction=\"inbound\"", &authority]
            ),
            1.0
        );
    })
    .await
}

/// Counts the samples of `name` (one per label set).
fn series(metrics: &str, name: &str) -> usize {
    metrics
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .count()
}

/// A mesh client scanning 10,000 target ports of a server proxy (`tulle-orig-port` on one
/// HTTP/2 connection; the same labels as redirected connections to 10,000 ports): the
/// inbound series stay bounded (MAX_TARGET_PORTS ports with labels of their own, then
/// `other`).
#[tokio::test]
async fn a_scan_of_10000_ports_keeps_the_series_bounded() {
    init();
    bounded(async {
        let pki = Pki::new();
        let cfg = config(
            SERVER_ID,
            &[
                ("TULLE_PROXY_RESPONSE_TIMEOUT", "2s".to_string()),
                ("TULLE_PROXY_CONNECT_TIMEOUT", "500ms".to_string()),
            ],
        );
        let server = Proxy::start(
            cfg,
            pki.tls(SERVER_ID),
            Arc::new(StaticDiscovery::default()),
        )
        .await
        .unwrap();
        let tls = pki.tls(CLIENT_ID);
        let connector = tokio_rustls::TlsConnector::from(tls.client(tulle_proxy::tls::ALPN_H2));
        let tcp = TcpStream::connect(server.inbound_addr).await.unwrap();
        let io = connector
            .connect(tulle_proxy::tls::server_name(SERVER_ID).unwrap(), tcp)
            .await
            .unwrap();
        let (send, conn) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            TokioIo::new(io),
        )
        .await
        .unwrap();
        tokio::spawn(conn);
        let mut ports = 1..=10_000u16;
        loop {
            let mut batch = tokio::task::JoinSet::new();
            for port in ports.by_ref().take(200) {
                let mut send = send.clone();
                batch.spawn(async move {
                    send.ready().await.unwrap();
                    let req = Request::get("/scan")
                        .header("host", "scanned")
                        .header("tulle-orig-port", port.to_string())
                        .body(Full::new(Bytes::new()))
                        .unwrap();
                    // Nothing listens on most ports: 502; any answer will do.
                    let resp = send.send_request(req).await.unwrap();
                    let _ = resp.into_body().collect().await;
                });
            }
            if batch.is_empty() {
                break;
            }
            while let Some(r) = batch.join_next().await {
                r.unwrap();
            }
        }
        let m = metrics(&server).await;
        let max = tulle_proxy::metrics::MAX_TARGET_PORTS + 1;
        for name in [
            "request_total",
            "inbound_http_authz_allow_total",
            "response_latency_ms_count",
        ] {
            let n = series(&m, name);
            assert!(n <= max, "{name}: {n} series for 10,000 ports");
        }
        // response_total also splits by status code (502, 504...).
        let n = series(&m, "response_total");
        assert!(n <= 3 * max, "response_total: {n} series");
        assert!(m.contains("target_port=\"other\""), "{m}");
        assert!(m.contains("target_addr=\"127.0.0.1:other\""));
        // Every request was counted, and the scan counted under `other` for the rest.
        assert_eq!(
            sample(&m, "request_total", &["target_addr=\"127.0.0.1:other\""]),
            (10_000 - tulle_proxy::metrics::MAX_TARGET_PORTS) as f64
        );
        server.shutdown(std::time::Duration::from_secs(1)).await;
    })
    .await
}

/// An HTTP/1 connection to `addr` that has had one request answered (so the proxy holds it).
async fn held_connection(
    addr: SocketAddr,
    host: &str,
) -> hyper::client::conn::http1::SendRequest<Full<Bytes>> {
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(
        TcpStream::connect(addr).await.unwrap(),
    ))
    .await
    .unwrap();
    tokio::spawn(conn);
    let req = Request::get("/held")
        .header("host", host)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let _ = resp.into_body().collect().await.unwrap();
    send
}

/// Whether a new connection to `addr` is refused: reset or closed with no answer to a
/// request.
async fn refused(addr: SocketAddr, host: &str) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut s) = TcpStream::connect(addr).await else {
        return true;
    };
    let _ = s
        .write_all(format!("GET / HTTP/1.1\r\nhost: {host}\r\n\r\n").as_bytes())
        .await;
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(std::time::Duration::from_secs(10), s.read(&mut buf)).await;
    matches!(read, Ok(Ok(0) | Err(_)))
}

/// Past its limit a listener resets new connections (counted); once one closes, a new one
/// is served again.
async fn limits_connections(addr: SocketAddr, host: &str, proxy: &Proxy, direction: &str) {
    let a = held_connection(addr, host).await;
    let _b = held_connection(addr, host).await;
    assert!(
        refused(addr, host).await,
        "{direction}: a third connection was served"
    );
    let m = metrics(proxy).await;
    assert_eq!(
        sample(
            &m,
            "connections_refused_total",
            &[&format!("direction=\"{direction}\"")]
        ),
        1.0
    );
    drop(a);
    // The proxy notices the close and frees its place.
    let mut served = false;
    for _ in 0..100 {
        if !refused(addr, host).await {
            served = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(served, "{direction}: no connection served after one closed");
}

#[tokio::test]
async fn the_listeners_limit_connections() {
    init();
    bounded(async {
        let pki = Pki::new();
        let (app, _) = app("web").await;
        let limit = [
            ("TULLE_PROXY_OUTBOUND_MAX_CONNECTIONS", "2".to_string()),
            ("TULLE_PROXY_INBOUND_MAX_CONNECTIONS", "2".to_string()),
        ];
        let pair = Pair::start(&pki, app, SERVER_ID, &limit).await;
        limits_connections(
            pair.client.outbound_addr,
            AUTHORITY,
            &pair.client,
            "outbound",
        )
        .await;

        let mut cfg = limit.to_vec();
        cfg.push(("TULLE_PROXY_INBOUND_PORT_FALLBACK", app.port().to_string()));
        let server = Proxy::start(
            config(SERVER_ID, &cfg),
            pki.tls(SERVER_ID),
            Arc::new(StaticDiscovery::default()),
        )
        .await
        .unwrap();
        limits_connections(server.inbound_addr, "web", &server, "inbound").await;
    })
    .await
}

#[tokio::test]
async fn idle_http2_connections_are_closed() {
    init();
    bounded(async {
        let pki = Pki::new();
        let (app, _) = app("web").await;
        let cfg = config(
            SERVER_ID,
            &[
                ("TULLE_PROXY_INBOUND_PORT_FALLBACK", app.port().to_string()),
                ("TULLE_PROXY_H2_IDLE_TIMEOUT", "500ms".to_string()),
            ],
        );
        let server = Proxy::start(
            cfg,
            pki.tls(SERVER_ID),
            Arc::new(StaticDiscovery::default()),
        )
        .await
        .unwrap();
        let (mut send, conn) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            TokioIo::new(TcpStream::connect(server.inbound_addr).await.unwrap()),
        )
        .await
        .unwrap();
        let conn = tokio::spawn(conn);
        // A request waiting longer than the idle timeout (the app answers /slow after 3 s)
        // keeps the connection busy, not idle.
        let req = Request::get("http://web/slow")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let resp = send.send_request(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"slow done");
        // Then nothing: the proxy closes the connection (GOAWAY), although the client
        // answers its keepalive pings.
        tokio::time::timeout(std::time::Duration::from_secs(15), conn)
            .await
            .expect("the idle HTTP/2 connection is still open")
            .unwrap()
            .unwrap();
    })
    .await
}

//! Hardening of the proxy (issue 15, item 8): bounded metric label sets under a port scan,
//! long HTTP/1 request lines, the admin port's scraper-only surface for other pods, the
//! global connection limits (data and admin listeners), the HTTP/2 idle timeout and the
//! request-body limit.

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
    held_connection_to(addr, host, "/held").await
}

/// [`held_connection`] with a request for `path`.
async fn held_connection_to(
    addr: SocketAddr,
    host: &str,
    path: &str,
) -> hyper::client::conn::http1::SendRequest<Full<Bytes>> {
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(
        TcpStream::connect(addr).await.unwrap(),
    ))
    .await
    .unwrap();
    tokio::spawn(conn);
    let req = Request::get(path)
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

#[tokio::test]
async fn the_admin_listener_limits_connections() {
    init();
    bounded(async {
        let pki = Pki::new();
        let cfg = config(
            SERVER_ID,
            &[("TULLE_PROXY_ADMIN_MAX_CONNECTIONS", "2".to_string())],
        );
        let proxy = Proxy::start(
            cfg,
            pki.tls(SERVER_ID),
            Arc::new(StaticDiscovery::default()),
        )
        .await
        .unwrap();
        let addr = proxy.admin_addr;
        let host = addr.to_string();
        let a = held_connection_to(addr, &host, "/live").await;
        let b = held_connection_to(addr, &host, "/live").await;
        assert!(
            refused(addr, &host).await,
            "admin: a third connection was served"
        );
        drop(a);
        drop(b);
        // Once they close, it serves again, and counts the refusal.
        let mut served = false;
        for _ in 0..100 {
            if !refused(addr, &host).await {
                served = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert!(served, "admin: no connection served after two closed");
        let m = metrics(&proxy).await;
        assert_eq!(
            sample(&m, "connections_refused_total", &["direction=\"admin\""]),
            1.0
        );
        proxy.shutdown(std::time::Duration::from_secs(1)).await;
    })
    .await
}

const BODY_LIMIT: usize = 1024;

/// A request with a streamed (chunked) body to `addr` over HTTP/1 or (prior knowledge)
/// HTTP/2: the body's sender and the response.
async fn streamed(
    addr: SocketAddr,
    uri: &str,
    h2: bool,
) -> (
    http_body_util::channel::Sender<Bytes>,
    tokio::task::JoinHandle<hyper::Result<http::Response<hyper::body::Incoming>>>,
) {
    let io = TokioIo::new(TcpStream::connect(addr).await.unwrap());
    let (tx, body) = http_body_util::channel::Channel::<Bytes>::new(4);
    let req = Request::post(uri).header("host", "web").body(body).unwrap();
    let resp = if h2 {
        let (mut send, conn) =
            hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
                .await
                .unwrap();
        tokio::spawn(conn);
        tokio::spawn(send.send_request(req))
    } else {
        let (mut send, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
        tokio::spawn(conn);
        tokio::spawn(send.send_request(req))
    };
    (tx, resp)
}

/// Sends `chunks` bytes `n` at a time on `tx`; a send the other side refused ends it.
async fn send_chunks(tx: &mut http_body_util::channel::Sender<Bytes>, chunks: usize, n: usize) {
    for _ in 0..chunks {
        if tx.send_data(Bytes::from(vec![b'x'; n])).await.is_err() {
            return;
        }
    }
}

fn too_large(resp: &http::Response<hyper::body::Incoming>) {
    assert_eq!(resp.status(), 413, "{resp:?}");
    assert_eq!(
        resp.headers()["tulle-proxy-error"],
        "request body too large"
    );
}

/// POSTs `len` bytes (with a Content-Length) through `addr`, to `host`.
async fn post(addr: SocketAddr, host: &str, len: usize) -> http::Response<Bytes> {
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(
        TcpStream::connect(addr).await.unwrap(),
    ))
    .await
    .unwrap();
    tokio::spawn(conn);
    let req = Request::post("/upload")
        .header("host", host)
        .body(Full::new(Bytes::from(vec![b'x'; len])))
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    let (parts, body) = resp.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    http::Response::from_parts(parts, body)
}

#[tokio::test]
async fn request_bodies_past_the_limit_get_413_or_are_cut() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    init();
    bounded(async {
        let pki = Pki::new();
        let (app, hits) = app("web").await;
        let limit = ("TULLE_PROXY_MAX_REQUEST_BODY_BYTES", BODY_LIMIT.to_string());
        let cfg = config(
            SERVER_ID,
            &[
                ("TULLE_PROXY_INBOUND_PORT_FALLBACK", app.port().to_string()),
                limit.clone(),
            ],
        );
        let server = Proxy::start(
            cfg,
            pki.tls(SERVER_ID),
            Arc::new(StaticDiscovery::default()),
        )
        .await
        .unwrap();
        let inbound = server.inbound_addr;

        // Within the limit: forwarded.
        let ok = post(inbound, "web", BODY_LIMIT).await;
        assert_eq!(ok.status(), 200);
        assert!(ok.body().ends_with(&[b'x'; BODY_LIMIT]));
        let before = hits.load(std::sync::atomic::Ordering::Relaxed);

        // A Content-Length past the limit: 413 before a byte of the body is sent, and the
        // application sees nothing.
        let mut s = TcpStream::connect(inbound).await.unwrap();
        s.write_all(b"POST /upload HTTP/1.1\r\nhost: web\r\ncontent-length: 1000000\r\n\r\n")
            .await
            .unwrap();
        let mut buf = vec![0u8; 1024];
        let n = s.read(&mut buf).await.unwrap();
        let head = String::from_utf8_lossy(&buf[..n]).to_lowercase();
        assert!(head.starts_with("http/1.1 413"), "{head}");
        assert!(
            head.contains("tulle-proxy-error: request body too large"),
            "{head}"
        );
        let over = post(inbound, "web", BODY_LIMIT + 1).await;
        assert_eq!(over.status(), 413);
        assert_eq!(hits.load(std::sync::atomic::Ordering::Relaxed), before);

        // A chunked body growing past the limit before the response started: 413.
        for h2 in [false, true] {
            let (mut tx, resp) = streamed(inbound, "http://web/upload", h2).await;
            send_chunks(&mut tx, 3, BODY_LIMIT / 2).await;
            too_large(&resp.await.unwrap().unwrap());
        }

        // ... after the response started (the app echoes the body as it comes): the
        // response stream is reset.
        let (mut tx, resp) = streamed(inbound, "http://web/stream", true).await;
        send_chunks(&mut tx, 1, BODY_LIMIT / 2).await;
        let resp = resp.await.unwrap().unwrap();
        assert_eq!(resp.status(), 200);
        let mut body = resp.into_body();
        let first = body.frame().await.unwrap().unwrap();
        assert_eq!(first.into_data().unwrap().len(), BODY_LIMIT / 2);
        send_chunks(&mut tx, 2, BODY_LIMIT / 2).await;
        let mut cut = false;
        while let Some(frame) = body.frame().await {
            if frame.is_err() {
                cut = true;
                break;
            }
        }
        assert!(
            cut,
            "the response of a request cut at the limit ended normally"
        );

        // Through the mesh (the client proxy sends HTTP/2 to the server proxy, whose limit
        // it is): the same answers reach the client.
        let discovery = Arc::new(
            StaticDiscovery::new(destination(&[(server.inbound_addr, Some(SERVER_ID))])).unwrap(),
        );
        let client = Proxy::start(
            config(
                CLIENT_ID,
                &[(
                    "TULLE_PROXY_OUTBOUND_ORIG_DST_FALLBACK",
                    VIRTUAL.to_string(),
                )],
            ),
            pki.tls(CLIENT_ID),
            discovery,
        )
        .await
        .unwrap();
        let outbound = client.outbound_addr;
        assert_eq!(post(outbound, AUTHORITY, BODY_LIMIT).await.status(), 200);
        let over = post(outbound, AUTHORITY, 10 * BODY_LIMIT).await;
        assert_eq!(over.status(), 413);
        assert_eq!(
            over.headers()["tulle-proxy-error"],
            "request body too large"
        );
        let uri = format!("http://{AUTHORITY}/upload");
        let (mut tx, resp) = streamed(outbound, &uri, false).await;
        send_chunks(&mut tx, 3, BODY_LIMIT / 2).await;
        too_large(&resp.await.unwrap().unwrap());
        // The client proxy has no limit of its own (it is the destination's policy).
        let m = metrics(&client).await;
        assert!(
            m.contains("status_code=\"413\""),
            "the 413 is counted by the client proxy: {m}"
        );
        server.shutdown(std::time::Duration::from_secs(1)).await;
    })
    .await
}

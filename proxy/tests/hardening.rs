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

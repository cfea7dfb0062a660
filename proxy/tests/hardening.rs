//! Hardening of the proxy (issue 15, item 8): bounded metric label sets under a port scan,
//! long HTTP/1 request lines, the admin port's scraper-only surface for other pods, and the
//! global connection limits and HTTP/2 idle timeout of the listeners.

mod support;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use support::*;

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


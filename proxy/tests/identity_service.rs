//! The proxy's certificate from a real tulle-identity Certify server on 127.0.0.1: not
//! ready before the first certificate, mTLS between two proxies with their issued
//! identities, renewal, and serving on while identity is down.

mod control;
mod support;

use std::sync::Arc;
use std::time::Duration;

use control::{Ca, IdentityServer, certified_tls};
use support::{CLIENT_ID, SERVER_ID, VIRTUAL, app, bounded, config, destination, get, init};
use tulle_proxy::app::Proxy;
use tulle_proxy::discovery::StaticDiscovery;
use tulle_proxy::tls::peer_identity;

/// Starts a server proxy in front of `app` and a client proxy routing VIRTUAL to it, both
/// in identity service mode; returns them with their certifier tasks.
async fn pair(
    ca: &Ca,
    identity: &IdentityServer,
    app: std::net::SocketAddr,
    dir: &std::path::Path,
) -> (Proxy, Proxy, Vec<tokio::task::JoinHandle<()>>) {
    let (stls, scert) = certified_tls(ca, identity, SERVER_ID, dir);
    let server = Proxy::start(
        config(
            SERVER_ID,
            &[("TULLE_PROXY_INBOUND_PORT_FALLBACK", app.port().to_string())],
        ),
        stls.clone(),
        Arc::new(StaticDiscovery::default()),
    )
    .await
    .unwrap();
    let (ctls, ccert) = certified_tls(ca, identity, CLIENT_ID, dir);
    let discovery =
        StaticDiscovery::new(destination(&[(server.inbound_addr, Some(SERVER_ID))])).unwrap();
    let client = Proxy::start(
        config(
            CLIENT_ID,
            &[(
                "TULLE_PROXY_OUTBOUND_ORIG_DST_FALLBACK",
                VIRTUAL.to_string(),
            )],
        ),
        ctls.clone(),
        Arc::new(discovery),
    )
    .await
    .unwrap();
    // Not ready before the first certificate.
    assert_eq!(get(server.admin_addr, "/ready").await.0, 503);
    assert_eq!(get(client.admin_addr, "/ready").await.0, 503);
    let tasks = vec![
        tokio::spawn(scert.run(stls.store.clone())),
        tokio::spawn(ccert.run(ctls.store.clone())),
    ];
    for p in [&server, &client] {
        while get(p.admin_addr, "/ready").await.0 != 200 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    (server, client, tasks)
}

fn leaf(p: &Proxy) -> Vec<u8> {
    p.runtime.tls.store.current().unwrap().cert[0].to_vec()
}

#[tokio::test]
async fn certificate_from_identity_makes_ready_mtls_and_renews() {
    init();
    bounded(async {
        let ca = Ca::new().await;
        // renew_after clamps to >= 10 s: a 12 s lifetime renews after about 10 s.
        let identity = IdentityServer::start(&ca, Duration::from_secs(12)).await;
        let dir = tempfile::tempdir().unwrap();
        let (web, _) = app("web").await;
        let (server, client, _tasks) = pair(&ca, &identity, web, dir.path()).await;

        // Each proxy holds a certificate for its own name, and the server sees the client's.
        let s_leaf = server.runtime.tls.store.current().unwrap();
        assert_eq!(
            peer_identity(Some(&s_leaf.cert)).as_deref(),
            Some(SERVER_ID)
        );
        let c_leaf = client.runtime.tls.store.current().unwrap();
        assert_eq!(
            peer_identity(Some(&c_leaf.cert)).as_deref(),
            Some(CLIENT_ID)
        );
        let (status, body) = get(client.outbound_addr, "/hello").await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body, format!("web HTTP/1.1 GET /hello {CLIENT_ID}\n"));

        // Renewal: a new certificate replaces the first one; traffic keeps flowing.
        let first = leaf(&server);
        while leaf(&server) == first {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let renewed = server.runtime.tls.store.current().unwrap();
        assert_eq!(
            peer_identity(Some(&renewed.cert)).as_deref(),
            Some(SERVER_ID)
        );
        let (status, body) = get(client.outbound_addr, "/again").await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(get(server.admin_addr, "/ready").await.0, 200);
    })
    .await
}

#[tokio::test]
async fn identity_down_keeps_serving_on_the_current_certificate() {
    init();
    bounded(async {
        let ca = Ca::new().await;
        // Renewal is due 28 s after issuance; the leaf stays valid for 40 s, which leaves ~10 s of
        // margin after the check below even on a slow machine (time is counted from before issuance).
        let started = tokio::time::Instant::now();
        let identity = IdentityServer::start(&ca, Duration::from_secs(40)).await;
        let dir = tempfile::tempdir().unwrap();
        let (web, _) = app("web").await;
        let (server, client, _tasks) = pair(&ca, &identity, web, dir.path()).await;
        let first = leaf(&server);
        identity.stop().await;
        // Past the renewal time: renewals fail (identity is down) and are retried.
        tokio::time::sleep_until(started + Duration::from_secs(30)).await;
        assert_eq!(leaf(&server), first, "the current certificate is kept");
        for p in [&server, &client] {
            assert_eq!(get(p.admin_addr, "/ready").await.0, 200);
        }
        let (status, body) = get(client.outbound_addr, "/still").await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body, format!("web HTTP/1.1 GET /still {CLIENT_ID}\n"));
    })
    .await
}

/// ServiceAccount names are DNS subdomains and may contain dots: the proxy
/// used to refuse its own identity name at startup (and exit), and tulle-identity to parse it.
#[tokio::test]
async fn service_account_names_with_dots_are_certified() {
    init();
    bounded(async {
        let ca = Ca::new().await;
        let identity = IdentityServer::start(&ca, Duration::from_secs(60)).await;
        let dir = tempfile::tempdir().unwrap();
        let name = "web.v2.shop.serviceaccount.identity.tulle.cluster.local";
        let (tls, certifier) = certified_tls(&ca, &identity, name, dir.path());
        let task = tokio::spawn(certifier.run(tls.store.clone()));
        while !tls.store.has_cert() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let leaf = tls.store.current().unwrap();
        assert_eq!(peer_identity(Some(&leaf.cert)).as_deref(), Some(name));
        task.abort();
    })
    .await
}

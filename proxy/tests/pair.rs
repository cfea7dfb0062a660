//! A client proxy and a server proxy on 127.0.0.1, with real sockets and mesh mTLS.

mod support;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn h1_client(
    addr: std::net::SocketAddr,
) -> hyper::client::conn::http1::SendRequest<Full<Bytes>> {
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(
        TcpStream::connect(addr).await.unwrap(),
    ))
    .await
    .unwrap();
    tokio::spawn(conn);
    send
}

#[tokio::test]
async fn http1_keepalive_chunked_through_mesh_with_exact_metrics() {
    init();
    bounded(async {
        let pki = Pki::new();
        let (app, hits) = app("web").await;
        let pair = Pair::start(&pki, app, SERVER_ID, &[]).await;
        let mut c = h1_client(pair.client.outbound_addr).await;
        for i in 0..5 {
            c.ready().await.unwrap();
            let req = Request::post(format!("/hello/{i}"))
                .header("host", AUTHORITY)
                .header("transfer-encoding", "chunked")
                .body(Full::new(Bytes::from(format!("body-{i}"))))
                .unwrap();
            let resp = c.send_request(req).await.unwrap();
            assert_eq!(resp.status(), 200);
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            // The app saw HTTP/1.1 (restored by the server proxy) and the client's identity.
            assert_eq!(
                String::from_utf8_lossy(&body),
                format!("web HTTP/1.1 POST /hello/{i} {CLIENT_ID}\nbody-{i}")
            );
        }
        assert_eq!(hits.load(std::sync::atomic::Ordering::Relaxed), 5);

        let out = metrics(&pair.client).await;
        let base = [
            "direction=\"outbound\"",
            "authority=\"web.test.svc.cluster.local:80\"",
            "tls=\"true\"",
            &format!("server_id=\"{SERVER_ID}\""),
            "dst_pod=\"web-0\"",
        ];
        assert_eq!(sample(&out, "request_total", &base), 5.0);
        let mut ok = base.to_vec();
        ok.extend(["status_code=\"200\"", "classification=\"success\""]);
        assert_eq!(sample(&out, "response_total", &ok), 5.0);
        let mut count = base.to_vec();
        count.push("le=\"+Inf\"");
        assert_eq!(sample(&out, "response_latency_ms_bucket", &count), 5.0);
        // One mesh connection to the endpoint (HTTP/1 multiplexed over HTTP/2).
        assert_eq!(
            sample(
                &out,
                "tcp_open_total",
                &["peer=\"dst\"", "dst_pod=\"web-0\""]
            ),
            1.0
        );

        let inb = metrics(&pair.server).await;
        let ib = [
            "direction=\"inbound\"",
            "tls=\"true\"",
            &format!("client_id=\"{CLIENT_ID}\""),
        ];
        assert_eq!(sample(&inb, "request_total", &ib), 5.0);
        assert_eq!(
            sample(&inb, "tcp_open_total", &["peer=\"src\"", "tls=\"true\""]),
            1.0
        );
        assert!(inb.contains("proxy_build_info{"));
        assert!(inb.contains("process_resident_memory_bytes "));
    })
    .await
}

#[tokio::test]
async fn http2_grpc_like_bidirectional_streaming_with_trailers() {
    init();
    bounded(async {
        let pki = Pki::new();
        let (app, _) = app("web").await;
        let pair = Pair::start(&pki, app, SERVER_ID, &[]).await;
        let tcp = TcpStream::connect(pair.client.outbound_addr).await.unwrap();
        let (mut send, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
                .await
                .unwrap();
        tokio::spawn(conn);
        // Unary h2.
        let req = Request::get(format!("http://{AUTHORITY}/unary"))
            .body(
                http_body_util::Empty::<Bytes>::new()
                    .map_err(|n| match n {})
                    .boxed(),
            )
            .unwrap();
        let resp = send.send_request(req).await.unwrap();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(
            String::from_utf8_lossy(&body),
            format!("web HTTP/2.0 GET /unary {CLIENT_ID}\n")
        );
        // Bidirectional streaming: each message is echoed before the next is sent.
        let (mut tx, body) = http_body_util::channel::Channel::<Bytes, hyper::Error>::new(1);
        let req = Request::post(format!("http://{AUTHORITY}/stream"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(body.boxed())
            .unwrap();
        let resp = send.send_request(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        let mut rbody = resp.into_body();
        for i in 0..3 {
            tx.send_data(Bytes::from(format!("msg-{i}"))).await.unwrap();
            let frame = rbody.frame().await.unwrap().unwrap();
            assert_eq!(frame.into_data().unwrap(), Bytes::from(format!("msg-{i}")));
        }
        drop(tx);
        let mut trailers = None;
        while let Some(f) = rbody.frame().await {
            if let Ok(t) = f.unwrap().into_trailers() {
                trailers = Some(t);
            }
        }
        assert_eq!(trailers.expect("trailers")["grpc-status"], "0");

        // A gRPC error in the trailers is classified as a failure when the stream ends.
        let req = Request::post(format!("http://{AUTHORITY}/stream?fail"))
            .header("content-type", "application/grpc")
            .body(
                http_body_util::Full::new(Bytes::from_static(b"x"))
                    .map_err(|n| match n {})
                    .boxed(),
            )
            .unwrap();
        let resp = send.send_request(req).await.unwrap();
        let t = resp
            .into_body()
            .collect()
            .await
            .unwrap()
            .trailers()
            .cloned()
            .expect("trailers");
        assert_eq!(t["grpc-status"], "13");
        let out = metrics(&pair.client).await;
        let l = ["direction=\"outbound\"", "status_code=\"200\""];
        assert_eq!(
            sample(
                &out,
                "response_total",
                &[&l[..], &["classification=\"success\""]].concat()
            ),
            2.0
        );
        assert_eq!(
            sample(
                &out,
                "response_total",
                &[&l[..], &["classification=\"failure\""]].concat()
            ),
            1.0
        );
        assert_eq!(
            sample(&out, "request_total", &["direction=\"outbound\""]),
            3.0
        );
    })
    .await
}

#[tokio::test]
async fn websocket_upgrade_passes_through() {
    init();
    bounded(async {
        let pki = Pki::new();
        let (app, _) = app("web").await;
        let pair = Pair::start(&pki, app, SERVER_ID, &[]).await;
        let mut s = TcpStream::connect(pair.client.outbound_addr).await.unwrap();
        s.write_all(format!("GET /ws HTTP/1.1\r\nHost: {AUTHORITY}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut buf = vec![0u8; 1024];
        let mut head = Vec::new();
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed before the 101");
            head.extend_from_slice(&buf[..n]);
        }
        assert!(head.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&head));
        for msg in ["ping", "pong-pong"] {
            s.write_all(msg.as_bytes()).await.unwrap();
            let mut got = vec![0u8; msg.len()];
            s.read_exact(&mut got).await.unwrap();
            assert_eq!(got, msg.as_bytes());
        }
    })
    .await
}

#[tokio::test]
async fn opaque_tcp_with_half_close() {
    init();
    bounded(async {
        let pki = Pki::new();
        let app = tcp_app().await;
        let pair = Pair::start(&pki, app, SERVER_ID, &[]).await;
        let mut s = TcpStream::connect(pair.client.outbound_addr).await.unwrap();
        s.write_all(b"\x00\x01binary hello").await.unwrap();
        s.shutdown().await.unwrap(); // half-close: the app answers after EOF
        let mut got = String::new();
        s.read_to_string(&mut got).await.unwrap();
        assert_eq!(got, "got 14: \u{0}\u{1}binary hello");
        // Counted on both sides; the server side saw mesh TLS from the client.
        let inb = metrics(&pair.server).await;
        assert_eq!(
            sample(
                &inb,
                "tcp_open_total",
                &["peer=\"src\"", &format!("client_id=\"{CLIENT_ID}\"")]
            ),
            1.0
        );
    })
    .await
}

#[tokio::test]
async fn a_client_silent_past_detection_is_told_apart_from_a_server_speaking_first() {
    init();
    bounded(async {
        let pki = Pki::new();
        let detect = [("TULLE_PROXY_DETECT_TIMEOUT", "200ms".to_string())];

        // An idle pooled HTTP connection: nothing for longer than the detection timeout,
        // then a request. It is still routed as HTTP (counted in the HTTP metrics).
        let (app, _) = app("web").await;
        let pair = Pair::start(&pki, app, SERVER_ID, &detect).await;
        let mut c = h1_client(pair.client.outbound_addr).await;
        tokio::time::sleep(Duration::from_millis(700)).await;
        let req = Request::get("/late")
            .header("host", AUTHORITY)
            .body(Full::new(Bytes::new()))
            .unwrap();
        let resp = c.send_request(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert!(String::from_utf8_lossy(&body).starts_with("web HTTP/1.1 GET /late"));
        let out = metrics(&pair.client).await;
        let http = [
            "direction=\"outbound\"",
            "tls=\"true\"",
            "dst_pod=\"web-0\"",
        ];
        assert_eq!(sample(&out, "request_total", &http), 1.0);

        // A server-speaks-first protocol on a port not listed as opaque: its banner reaches
        // the silent client through both proxies, then bytes flow both ways.
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let banner_app = l.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            s.write_all(b"220 banner\r\n").await.unwrap();
            let mut line = [0u8; 5];
            s.read_exact(&mut line).await.unwrap();
            s.write_all(&line).await.unwrap();
        });
        let pair = Pair::start(&pki, banner_app, SERVER_ID, &detect).await;
        let mut s = TcpStream::connect(pair.client.outbound_addr).await.unwrap();
        let mut banner = [0u8; 12];
        s.read_exact(&mut banner).await.unwrap();
        assert_eq!(&banner, b"220 banner\r\n");
        s.write_all(b"HELO\n").await.unwrap();
        let mut echo = [0u8; 5];
        s.read_exact(&mut echo).await.unwrap();
        assert_eq!(&echo, b"HELO\n");
    })
    .await
}

#[tokio::test]
async fn wrong_server_identity_is_refused() {
    init();
    bounded(async {
        let pki = Pki::new();
        let (app, hits) = app("web").await;
        let pair = Pair::start(
            &pki,
            app,
            "other.test.serviceaccount.identity.tulle.cluster.local",
            &[],
        )
        .await;
        let mut c = h1_client(pair.client.outbound_addr).await;
        let req = Request::get("/")
            .header("host", AUTHORITY)
            .body(Full::new(Bytes::new()))
            .unwrap();
        let resp = c.send_request(req).await.unwrap();
        assert_eq!(resp.status(), 502);
        assert_eq!(resp.headers()["tulle-proxy-error"], "tls error");
        assert_eq!(hits.load(std::sync::atomic::Ordering::Relaxed), 0);
    })
    .await
}

#[tokio::test]
async fn plaintext_client_to_inbound_is_accepted_and_labelled() {
    init();
    bounded(async {
        let pki = Pki::new();
        let (app, _) = app("web").await;
        let pair = Pair::start(&pki, app, SERVER_ID, &[]).await;
        let (status, body) = get(pair.server.inbound_addr, "/plain").await;
        assert_eq!(status, 200);
        assert_eq!(body, "web HTTP/1.1 GET /plain -\n");
        let inb = metrics(&pair.server).await;
        let l = [
            "direction=\"inbound\"",
            "tls=\"no_identity\"",
            "no_tls_reason=\"no_tls_from_remote\"",
        ];
        assert_eq!(sample(&inb, "request_total", &l), 1.0);
    })
    .await
}

#[tokio::test]
async fn application_tls_from_outside_the_mesh_passes_through_the_inbound_proxy() {
    init();
    bounded(async {
        let pki = Pki::new();
        let app = tcp_app().await;
        let pair = Pair::start(&pki, app, SERVER_ID, &[]).await;
        // A ClientHello for the application's own name, not the proxy's identity.
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
        let name = rustls_pki_types::ServerName::try_from("shop.example.com").unwrap();
        let mut tls = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
        let mut hello = Vec::new();
        tls.write_tls(&mut hello).unwrap();

        let mut s = TcpStream::connect(pair.server.inbound_addr).await.unwrap();
        s.write_all(&hello).await.unwrap();
        s.shutdown().await.unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).await.unwrap();
        // The application received the ClientHello byte for byte.
        let mut want = format!("got {}: ", hello.len()).into_bytes();
        want.extend_from_slice(&hello);
        assert_eq!(got, want);
        let inb = metrics(&pair.server).await;
        let passthrough = ["peer=\"src\"", "no_tls_reason=\"tls_not_for_mesh\""];
        assert_eq!(sample(&inb, "tcp_open_total", &passthrough), 1.0);
    })
    .await
}

#[tokio::test]
async fn errors_are_answers() {
    init();
    bounded(async {
        let pki = Pki::new();
        let (app, _) = app("web").await;
        let pair = Pair::start(
            &pki,
            app,
            SERVER_ID,
            &[("TULLE_PROXY_RESPONSE_TIMEOUT", "300ms".into())],
        )
        .await;
        let mut c = h1_client(pair.client.outbound_addr).await;
        let req = Request::get("/slow")
            .header("host", AUTHORITY)
            .body(Full::new(Bytes::new()))
            .unwrap();
        let resp = c.send_request(req).await.unwrap();
        assert_eq!(resp.status(), 504);
        assert_eq!(resp.headers()["tulle-proxy-error"], "response timeout");

        let mut c = h1_client(pair.client.outbound_addr).await;
        let req = Request::get("/status/503")
            .header("host", AUTHORITY)
            .body(Full::new(Bytes::new()))
            .unwrap();
        assert_eq!(c.send_request(req).await.unwrap().status(), 503);
        let out = metrics(&pair.client).await;
        assert_eq!(
            sample(
                &out,
                "response_total",
                &[
                    "direction=\"outbound\"",
                    "status_code=\"503\"",
                    "classification=\"failure\""
                ]
            ),
            1.0
        );
        assert_eq!(
            sample(
                &out,
                "response_total",
                &[
                    "direction=\"outbound\"",
                    "status_code=\"504\"",
                    "classification=\"failure\""
                ]
            ),
            1.0
        );

        // No endpoints: 503 at once.
        pair.discovery.replace(destination(&[])).unwrap();
        let req = Request::get("/")
            .header("host", AUTHORITY)
            .body(Full::new(Bytes::new()))
            .unwrap();
        c.ready().await.unwrap();
        let resp = c.send_request(req).await.unwrap();
        assert_eq!(resp.status(), 503);
        assert_eq!(resp.headers()["tulle-proxy-error"], "no endpoints");

        // Connect failure: 502.
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        pair.discovery
            .replace(destination(&[(closed, Some(SERVER_ID))]))
            .unwrap();
        let req = Request::get("/")
            .header("host", AUTHORITY)
            .body(Full::new(Bytes::new()))
            .unwrap();
        c.ready().await.unwrap();
        let resp = c.send_request(req).await.unwrap();
        assert_eq!(resp.status(), 502);
        assert_eq!(resp.headers()["tulle-proxy-error"], "connect error");

        // Malformed HTTP/1: 400.
        let mut s = TcpStream::connect(pair.client.outbound_addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nthis is not a header\r\n\r\n")
            .await
            .unwrap();
        let mut got = String::new();
        let _ = s.read_to_string(&mut got).await;
        assert!(got.starts_with("HTTP/1.1 400"), "{got}");
    })
    .await
}

#[tokio::test]
async fn balances_and_survives_endpoint_removal_without_failures() {
    init();
    bounded(async {
        let pki = Pki::new();
        let mut apps = Vec::new();
        for name in ["a", "b", "c"] {
            apps.push(app(name).await);
        }
        let (app0, _) = apps[0];
        let pair = Pair::start(&pki, app0, SERVER_ID, &[]).await;
        let eps: Vec<_> = apps.iter().map(|(a, _)| (*a, None)).collect();
        pair.discovery.replace(destination(&eps)).unwrap();
        let outbound = pair.client.outbound_addr;
        let run = |n: usize| async move {
            let mut tasks = Vec::new();
            for _ in 0..8 {
                tasks.push(tokio::spawn(async move {
                    let mut c = h1_client(outbound).await;
                    let mut statuses = Vec::new();
                    for _ in 0..n {
                        c.ready().await.unwrap();
                        let req = Request::get("/")
                            .header("host", AUTHORITY)
                            .body(Full::new(Bytes::new()))
                            .unwrap();
                        let resp = c.send_request(req).await.unwrap();
                        statuses.push(resp.status().as_u16());
                        let _ = resp.into_body().collect().await.unwrap();
                    }
                    statuses
                }));
            }
            let mut all = Vec::new();
            for t in tasks {
                all.extend(t.await.unwrap());
            }
            all
        };
        let first = run(25).await;
        assert!(first.iter().all(|s| *s == 200));
        for (_, hits) in &apps {
            assert!(
                hits.load(std::sync::atomic::Ordering::Relaxed) > 0,
                "every endpoint gets traffic"
            );
        }
        // Remove endpoint "c" while traffic flows.
        let traffic = tokio::spawn(run(50));
        tokio::task::yield_now().await;
        pair.discovery.replace(destination(&eps[..2])).unwrap();
        let during = traffic.await.unwrap();
        assert_eq!(during.len(), 400);
        assert!(
            during.iter().all(|s| *s == 200),
            "no failed request: {during:?}"
        );
        let c_hits = apps[2].1.load(std::sync::atomic::Ordering::Relaxed);
        let after = run(10).await;
        assert!(after.iter().all(|s| *s == 200));
        assert_eq!(
            apps[2].1.load(std::sync::atomic::Ordering::Relaxed),
            c_hits,
            "removed endpoint gets no new requests"
        );
    })
    .await
}

#[tokio::test]
async fn graceful_shutdown_drains_in_flight_requests() {
    init();
    bounded(async {
        let pki = Pki::new();
        let (app, _) = app("web").await;
        let pair = Pair::start(&pki, app, SERVER_ID, &[]).await;
        let outbound = pair.client.outbound_addr;
        let slow = tokio::spawn(async move {
            let mut c = h1_client(outbound).await;
            let req = Request::get("/slow")
                .header("host", AUTHORITY)
                .body(Full::new(Bytes::new()))
                .unwrap();
            let resp = c.send_request(req).await.unwrap();
            (
                resp.status(),
                resp.into_body().collect().await.unwrap().to_bytes(),
            )
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (status, _) = get(pair.client.admin_addr, "/ready").await;
        assert_eq!(status, 200);
        let drained = pair.client.shutdown(Duration::from_secs(20)).await;
        assert!(drained, "drained within the grace period");
        let (status, body) = slow.await.unwrap();
        assert_eq!(status, 200);
        assert_eq!(body, "slow done");
        assert!(
            TcpStream::connect(outbound).await.is_err(),
            "listener closed after shutdown"
        );
    })
    .await
}

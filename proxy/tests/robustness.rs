//! Robustness of the proxy's HTTP servers against hostile or broken clients: header size
//! limits, slow clients, HTTP/2 rapid reset and CONTINUATION floods. After each attack the
//! proxy still serves normal requests.

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use http::Request;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads until the peer closes (or fails), within `limit`; `None` if it kept the connection.
async fn read_until_closed(s: &mut TcpStream, limit: Duration) -> Option<Vec<u8>> {
    let mut got = Vec::new();
    let read = async {
        let mut buf = [0u8; 8192];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(limit, read).await.ok().map(|()| got)
}

/// The frame types of an HTTP/2 byte stream (after the server's side of the preface).
fn frame_types(mut b: &[u8]) -> Vec<u8> {
    let mut types = Vec::new();
    while b.len() >= 9 {
        let len = usize::from(b[0]) << 16 | usize::from(b[1]) << 8 | usize::from(b[2]);
        types.push(b[3]);
        b = &b[(9 + len).min(b.len())..];
    }
    types
}

async fn still_serves(pair: &Pair) {
    let (status, body) = get(pair.server.inbound_addr, "/after").await;
    assert_eq!(status, 200);
    assert!(body.starts_with("web HTTP/1.1 GET /after"), "{body}");
}

#[tokio::test]
async fn oversized_headers_get_431_and_slow_clients_are_cut_off() {
    init();
    bounded(async {
        let pki = Pki::new();
        let (app, hits) = app("web").await;
        let limits = [
            ("TULLE_PROXY_MAX_HEADER_BYTES", "16384".to_string()),
            ("TULLE_PROXY_HEADER_READ_TIMEOUT", "300ms".to_string()),
        ];
        let pair = Pair::start(&pki, app, SERVER_ID, &limits).await;

        let mut s = TcpStream::connect(pair.client.outbound_addr).await.unwrap();
        let big = format!(
            "GET / HTTP/1.1\r\nHost: {AUTHORITY}\r\nx-big: {}\r\n\r\n",
            "a".repeat(100_000)
        );
        let _ = s.write_all(big.as_bytes()).await; // the proxy may stop reading early
        let got = read_until_closed(&mut s, Duration::from_secs(10)).await;
        let got = String::from_utf8_lossy(got.as_deref().unwrap_or_default()).into_owned();
        assert!(got.starts_with("HTTP/1.1 431"), "{got}");

        // Half a request, then nothing: the connection is closed after the header timeout.
        let mut s = TcpStream::connect(pair.client.outbound_addr).await.unwrap();
        s.write_all(format!("GET / HTTP/1.1\r\nHost: {AUTHORITY}\r\n").as_bytes())
            .await
            .unwrap();
        assert!(
            read_until_closed(&mut s, Duration::from_secs(5))
                .await
                .is_some(),
            "a slow client keeps its connection"
        );
        assert_eq!(hits.load(Ordering::Relaxed), 0, "nothing reached the app");
        still_serves(&pair).await;
    })
    .await
}

#[tokio::test]
async fn http2_rapid_reset_gets_the_connection_closed() {
    init();
    bounded(async {
        let pki = Pki::new();
        let (app, _) = app("web").await;
        let pair = Pair::start(&pki, app, SERVER_ID, &[]).await;
        let tcp = TcpStream::connect(pair.server.inbound_addr).await.unwrap();
        let (mut client, conn) = h2::client::handshake(tcp).await.unwrap();
        let conn = tokio::spawn(conn);
        for _ in 0..2000 {
            let Ok(ready) = client.ready().await else {
                break;
            };
            client = ready;
            let req = Request::get("http://web.test/slow").body(()).unwrap();
            match client.send_request(req, true) {
                Ok((_, mut stream)) => stream.send_reset(h2::Reason::CANCEL),
                Err(_) => break,
            }
        }
        let ended = tokio::time::timeout(Duration::from_secs(10), conn)
            .await
            .expect("the proxy kept a connection that resets every stream")
            .unwrap();
        // GOAWAY(ENHANCE_YOUR_CALM), or the close that follows it cut our writes short.
        let err = ended.expect_err("the connection ends in an error");
        assert!(
            err.reason() == Some(h2::Reason::ENHANCE_YOUR_CALM) || err.is_io(),
            "{err}"
        );
        still_serves(&pair).await;
    })
    .await
}

#[tokio::test]
async fn http2_continuation_flood_gets_the_connection_closed() {
    init();
    bounded(async {
        let pki = Pki::new();
        let (app, hits) = app("web").await;
        let pair = Pair::start(&pki, app, SERVER_ID, &[]).await;
        let mut s = TcpStream::connect(pair.server.inbound_addr).await.unwrap();
        let frame = |kind: u8, flags: u8, payload: &[u8]| {
            let len = payload.len();
            let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
            f.extend_from_slice(&1u32.to_be_bytes()); // stream 1
            f.extend_from_slice(payload);
            f
        };
        let mut start = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        start.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]); // empty SETTINGS
        // HEADERS (END_STREAM, no END_HEADERS): GET http /, then endless CONTINUATION frames
        // of literal headers `xyz: abc`, never ending the header block.
        start.extend(frame(0x1, 0x1, &[0x82, 0x86, 0x84]));
        let filler: Vec<u8> = [0x00, 3, b'x', b'y', b'z', 3, b'a', b'b', b'c'].repeat(1800);
        let continuation = frame(0x9, 0x0, &filler);
        let writer = async {
            s.write_all(&start).await?;
            for _ in 0..400 {
                s.write_all(&continuation).await?;
            }
            std::io::Result::Ok(())
        };
        // ~6.5 MB of header block, if the proxy kept reading it.
        let wrote = tokio::time::timeout(Duration::from_secs(10), writer).await;
        assert!(
            wrote.is_ok(),
            "the proxy stopped reading but kept the connection"
        );
        let got = read_until_closed(&mut s, Duration::from_secs(10))
            .await
            .expect("the proxy kept reading an endless header block");
        // The server's SETTINGS, then GOAWAY (0x7) or nothing more than a close.
        let types = frame_types(&got);
        assert!(
            types.iter().all(|t| [0x4, 0x7, 0x8, 0x6].contains(t)),
            "{types:?}"
        );
        assert_eq!(hits.load(Ordering::Relaxed), 0);
        still_serves(&pair).await;
    })
    .await
}

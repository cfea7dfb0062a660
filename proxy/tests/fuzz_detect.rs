//! Property-based fuzzing (issue 15) of protocol detection: `detect`, `first_speaker` and
//! the SNI peek on arbitrary bytes split into arbitrary reads never fail, never lose or
//! reorder a byte, and a valid HTTP/1 request line, HTTP/2 preface or TLS ClientHello split
//! anywhere is still detected as such. Cases: `TULLE_FUZZ_CASES` (default 256); see
//! docs/fuzzing.md.

use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use tokio::io::{AsyncRead, AsyncReadExt};
use tulle_proxy::detect::{
    FirstSpeaker, MAX_PEEK, Protocol, client_hello_sni, detect, first_speaker,
};

fn config() -> ProptestConfig {
    let cases = std::env::var("TULLE_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
        .block_on(f)
}

/// `input` cut at `cuts` (any positions, sorted and deduplicated here).
fn split(input: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
    let mut at: Vec<usize> = cuts
        .iter()
        .map(|c| c % (input.len() + 1))
        .filter(|&c| c > 0 && c < input.len())
        .collect();
    at.sort_unstable();
    at.dedup();
    let mut out = Vec::new();
    let mut from = 0;
    for c in at.into_iter().chain([input.len()]) {
        out.push(input[from..c].to_vec());
        from = c;
    }
    out.retain(|c| !c.is_empty());
    out
}

/// A reader that gives `chunks`, each by a read of its own, then EOF.
fn reader(chunks: &[Vec<u8>]) -> tokio_test::io::Mock {
    let mut b = tokio_test::io::Builder::new();
    for c in chunks {
        b.read(c);
    }
    b.build()
}

async fn read_rest<I: AsyncRead + Unpin>(io: &mut I) -> Vec<u8> {
    let mut rest = Vec::new();
    io.read_to_end(&mut rest).await.unwrap();
    rest
}

/// Detects on `chunks`; asserts that the bytes read plus the rest of the stream are the
/// input, and returns the protocol.
fn detect_chunks(chunks: &[Vec<u8>], tls: bool) -> Protocol {
    block_on(async {
        let mut io = reader(chunks);
        let (p, buf) = detect(&mut io, Duration::from_secs(5), tls).await.unwrap();
        let rest = read_rest(&mut io).await;
        assert_eq!([&buf[..], &rest].concat(), chunks.concat(), "{p:?}");
        p
    })
}

fn cuts() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(any::<usize>(), 0..12)
}

/// Bytes that often look like the start of something detection knows.
fn bytes() -> impl Strategy<Value = Vec<u8>> {
    let tail = prop::collection::vec(any::<u8>(), 0..1500);
    let prefix = prop_oneof![
        Just(Vec::new()),
        Just(b"GET ".to_vec()),
        Just(b"PRI * HTTP/2.0".to_vec()),
        Just(vec![0x16, 0x03]),
        Just(vec![0x16]),
        "[A-Z]{0,20}".prop_map(String::into_bytes),
        "[A-Z]{1,8} [ -~]{0,1200}".prop_map(String::into_bytes),
    ];
    (prefix, tail, any::<bool>()).prop_map(|(mut p, t, with_tail)| {
        if with_tail {
            p.extend(t);
        }
        p
    })
}

fn request() -> impl Strategy<Value = Vec<u8>> {
    (
        prop_oneof![
            Just("GET"),
            Just("POST"),
            Just("PUT"),
            Just("DELETE"),
            Just("HEAD"),
            Just("OPTIONS"),
            Just("PATCH"),
            Just("CONNECT"),
            Just("TRACE"),
        ],
        "/[!-~]{0,2000}",
        prop_oneof![Just("HTTP/1.1"), Just("HTTP/1.0")],
        prop_oneof![Just("\r\n"), Just("\n")],
        prop::collection::vec(any::<u8>(), 0..200),
    )
        .prop_map(|(m, target, v, eol, rest)| {
            let mut r = format!("{m} {target} {v}{eol}").into_bytes();
            r.extend(rest);
            r
        })
}

fn client_hello(sni: &str) -> Vec<u8> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    let name = rustls_pki_types::ServerName::try_from(sni.to_string()).unwrap();
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let mut out = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut out).unwrap();
    }
    out
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_bytes_in_arbitrary_reads_lose_nothing(
        input in bytes(), cuts in cuts(), tls in any::<bool>()
    ) {
        let chunks = split(&input, &cuts);
        let p = detect_chunks(&chunks, tls);
        // Below MAX_PEEK, how the bytes arrive does not change the verdict.
        if input.len() < MAX_PEEK {
            prop_assert_eq!(p, detect_chunks(std::slice::from_ref(&input), tls));
        }
    }

    #[test]
    fn a_request_line_split_anywhere_is_http1(
        input in request(), cuts in cuts(), tls in any::<bool>()
    ) {
        prop_assert_eq!(detect_chunks(&split(&input, &cuts), tls), Protocol::Http1);
    }

    #[test]
    fn the_h2_preface_split_anywhere_is_http2(
        rest in prop::collection::vec(any::<u8>(), 0..100), cuts in cuts(), tls in any::<bool>()
    ) {
        let mut input = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        input.extend(rest);
        prop_assert_eq!(detect_chunks(&split(&input, &cuts), tls), Protocol::Http2);
    }

    #[test]
    fn a_client_hello_split_anywhere_is_tls_and_its_sni_is_read(
        sni in "[a-z][a-z0-9]{0,9}(\\.[a-z][a-z0-9]{0,9}){0,3}",
        cuts in cuts(),
        rest in prop::collection::vec(any::<u8>(), 0..50),
        prefix_len in any::<usize>(),
    ) {
        let hello = client_hello(&sni);
        let mut input = hello.clone();
        input.extend(&rest);
        let chunks = split(&input, &cuts);
        prop_assert_eq!(detect_chunks(&chunks, true), Protocol::Tls);
        // Any prefix of at least two bytes is TLS too (then EOF).
        let prefix = &hello[..2 + prefix_len % (hello.len() - 1)];
        prop_assert_eq!(detect_chunks(&split(prefix, &cuts), true), Protocol::Tls);
        let got = block_on(async {
            let mut io = reader(&chunks);
            let mut buf = bytes::BytesMut::new();
            let got = client_hello_sni(&mut io, &mut buf, Duration::from_secs(5)).await.unwrap();
            let rest = read_rest(&mut io).await;
            assert_eq!([&buf[..], &rest].concat(), input);
            got
        });
        prop_assert_eq!(got, Some(sni));
    }

    #[test]
    fn the_sni_peek_on_arbitrary_bytes_loses_nothing(
        head in prop::collection::vec(any::<u8>(), 0..8),
        tail in prop::collection::vec(any::<u8>(), 0..3000),
        tls_header in any::<bool>(),
        cuts in cuts(),
    ) {
        let mut input = if tls_header { vec![0x16, 0x03, 0x01] } else { Vec::new() };
        input.extend(head);
        input.extend(tail);
        let chunks = split(&input, &cuts);
        block_on(async {
            let mut io = reader(&chunks);
            let mut buf = bytes::BytesMut::new();
            let _ = client_hello_sni(&mut io, &mut buf, Duration::from_secs(5)).await.unwrap();
            let rest = read_rest(&mut io).await;
            assert_eq!([&buf[..], &rest].concat(), input);
        });
    }

    #[test]
    fn first_speaker_loses_nothing(
        input in bytes(), cuts in cuts(), tls in any::<bool>(), server_first in any::<bool>()
    ) {
        let chunks = split(&input, &cuts);
        let (got, rest) = block_on(async {
            // The silent side: a pipe whose other end stays open.
            let (mut silent, _keep) = tokio::io::duplex(64);
            let mut io = reader(&chunks);
            let got = if server_first {
                first_speaker(&mut silent, &mut io, Duration::from_secs(5), tls).await
            } else {
                first_speaker(&mut io, &mut silent, Duration::from_secs(5), tls).await
            }
            .unwrap();
            (got, read_rest(&mut io).await)
        });
        match got {
            FirstSpeaker::Server(buf) => {
                prop_assert!(server_first);
                prop_assert_eq!([&buf[..], &rest].concat(), input);
            }
            FirstSpeaker::Client(p, buf) => {
                prop_assert!(!server_first);
                prop_assert_eq!([&buf[..], &rest].concat(), input.clone());
                let want = if input.is_empty() { Protocol::Opaque } else { detect_chunks(&chunks, tls) };
                prop_assert_eq!(p, want);
            }
        }
    }
}

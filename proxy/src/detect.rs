//! Protocol detection on the first bytes of a connection, with a timeout.
//!
//! A client silent until the timeout is either waiting for a server that speaks first
//! (SMTP, MySQL...) or an idle pooled HTTP connection. [`first_speaker`] tells them apart
//! once the upstream connection is open: whichever side sends first decides.

use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt};

/// The bytes a detection reads at most (then: opaque), unless they are the start of an
/// HTTP/1 request line.
pub const MAX_PEEK: usize = 1024;

/// The longest HTTP/1 request line detection waits for (long URLs: query strings, tokens),
/// as long as the bytes still look like one: the default `TULLE_PROXY_MAX_HEADER_BYTES`,
/// which bounds the whole header block anyway.
pub const MAX_REQUEST_LINE: usize = 64 * 1024;

/// What a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Http1,
    Http2,
    /// A TLS ClientHello (inbound: mesh mTLS).
    Tls,
    /// Anything else, including timeouts and server-speaks-first protocols.
    Opaque,
}

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0";

enum Verdict {
    Done(Protocol),
    NeedMore,
}

fn classify(buf: &[u8], tls: bool) -> Verdict {
    if buf.is_empty() {
        return Verdict::NeedMore;
    }
    if tls && buf[0] == 0x16 {
        return match buf.get(1) {
            None => Verdict::NeedMore,
            Some(3) => Verdict::Done(Protocol::Tls),
            Some(_) => Verdict::Done(Protocol::Opaque),
        };
    }
    let n = buf.len().min(H2_PREFACE.len());
    if buf[..n] == H2_PREFACE[..n] {
        return if n == H2_PREFACE.len() {
            Verdict::Done(Protocol::Http2)
        } else {
            Verdict::NeedMore
        };
    }
    // HTTP/1 request line: METHOD SP target SP HTTP/1.x CRLF
    let method_len = buf.iter().take_while(|b| b.is_ascii_uppercase()).count();
    if method_len == buf.len() && method_len < 16 {
        return Verdict::NeedMore;
    }
    // No method is 16 letters or more (and then `buf[method_len]` may be past the end: a
    // panic found by fuzzing).
    if method_len == 0 || method_len >= 16 || buf[method_len] != b' ' {
        return Verdict::Done(Protocol::Opaque);
    }
    match buf.iter().position(|&b| b == b'\n') {
        Some(end) => {
            let line = buf[..end].strip_suffix(b"\r").unwrap_or(&buf[..end]);
            if line.ends_with(b" HTTP/1.1") || line.ends_with(b" HTTP/1.0") {
                Verdict::Done(Protocol::Http1)
            } else {
                Verdict::Done(Protocol::Opaque)
            }
        }
        None if buf.len() >= MAX_REQUEST_LINE => Verdict::Done(Protocol::Opaque),
        // Past MAX_PEEK, keep reading only what can be a request target and version.
        None if buf.len() >= MAX_PEEK
            && !buf[method_len + 1..]
                .iter()
                .all(|b| b.is_ascii_graphic() || *b == b' ' || *b == b'\r') =>
        {
            Verdict::Done(Protocol::Opaque)
        }
        None => Verdict::NeedMore,
    }
}

/// Reads until the protocol is known, the buffer is full, the peer stops, or `timeout`
/// passes (then: opaque). Returns the protocol and the bytes read, to be replayed.
pub async fn detect<I: AsyncRead + Unpin>(
    io: &mut I,
    timeout: Duration,
    tls: bool,
) -> std::io::Result<(Protocol, BytesMut)> {
    detect_from(io, BytesMut::with_capacity(MAX_PEEK), timeout, tls).await
}

/// [`detect`], continuing from bytes already read.
async fn detect_from<I: AsyncRead + Unpin>(
    io: &mut I,
    mut buf: BytesMut,
    timeout: Duration,
    tls: bool,
) -> std::io::Result<(Protocol, BytesMut)> {
    if let Verdict::Done(p) = classify(&buf, tls) {
        return Ok((p, buf));
    }
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match tokio::time::timeout_at(deadline, io.read_buf(&mut buf)).await {
            Err(_) => return Ok((Protocol::Opaque, buf)),
            Ok(Err(e)) => return Err(e),
            Ok(Ok(0)) => {
                let p = match classify(&buf, tls) {
                    Verdict::Done(p) => p,
                    Verdict::NeedMore => Protocol::Opaque,
                };
                return Ok((p, buf));
            }
            Ok(Ok(_)) => {
                if let Verdict::Done(p) = classify(&buf, tls) {
                    return Ok((p, buf));
                }
                // classify bounds what it waits for; this is a backstop.
                if buf.len() >= MAX_REQUEST_LINE {
                    return Ok((Protocol::Opaque, buf));
                }
            }
        }
    }
}

/// The largest ClientHello read for its SNI: one full TLS record.
const MAX_CLIENT_HELLO: usize = 5 + 16 * 1024;

/// The server name (SNI) of the TLS ClientHello at the start of `buf`, reading more from
/// `io` into `buf` as needed: every byte stays in `buf` to be replayed. `None` when the
/// ClientHello names no server, is invalid, or is not complete within `timeout`. Parsing
/// is rustls's own ([`rustls::server::Acceptor`]) on a copy of the bytes.
pub async fn client_hello_sni<I: AsyncRead + Unpin>(
    io: &mut I,
    buf: &mut BytesMut,
    timeout: Duration,
) -> std::io::Result<Option<String>> {
    let mut acceptor = rustls::server::Acceptor::default();
    let mut fed = 0;
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        while fed < buf.len() {
            let n = acceptor.read_tls(&mut &buf[fed..])?;
            if n == 0 {
                break;
            }
            fed += n;
        }
        match acceptor.accept() {
            Ok(Some(hello)) => return Ok(hello.client_hello().server_name().map(str::to_owned)),
            Ok(None) => {}
            Err(_) => return Ok(None),
        }
        if buf.len() >= MAX_CLIENT_HELLO {
            return Ok(None);
        }
        match tokio::time::timeout_at(deadline, io.read_buf(buf)).await {
            Err(_) | Ok(Ok(0)) => return Ok(None),
            Ok(Err(e)) => return Err(e),
            Ok(Ok(_)) => {}
        }
    }
}

/// Who spoke first on a connection whose client was silent through detection.
#[derive(Debug)]
pub enum FirstSpeaker {
    /// The server (a server-speaks-first protocol): its first bytes, to pass on.
    Server(BytesMut),
    /// The client, after all: the protocol detected on its bytes, and the bytes.
    Client(Protocol, BytesMut),
}

/// Waits until the client or the upstream sends something (or closes). The client's
/// bytes are then classified as by [`detect`]. No byte is lost: reads are cancel-safe.
pub async fn first_speaker<C, U>(
    client: &mut C,
    upstream: &mut U,
    timeout: Duration,
    tls: bool,
) -> std::io::Result<FirstSpeaker>
where
    C: AsyncRead + Unpin,
    U: AsyncRead + Unpin,
{
    let mut from_client = BytesMut::with_capacity(MAX_PEEK);
    let mut from_server = BytesMut::with_capacity(4096);
    tokio::select! {
        r = client.read_buf(&mut from_client) => {
            if r? == 0 {
                return Ok(FirstSpeaker::Client(Protocol::Opaque, from_client));
            }
            let (p, buf) = detect_from(client, from_client, timeout, tls).await?;
            Ok(FirstSpeaker::Client(p, buf))
        }
        r = upstream.read_buf(&mut from_server) => {
            r?;
            Ok(FirstSpeaker::Server(from_server))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Detects the protocol of `chunks`, each delivered by a read of its own.
    async fn run(chunks: &[&[u8]], tls: bool) -> Protocol {
        let mut b = tokio_test::io::Builder::new();
        for c in chunks {
            b.read(c);
        }
        let mut io = b.build();
        let (p, buf) = detect(&mut io, Duration::from_millis(200), tls)
            .await
            .unwrap();
        // Whatever was read is handed on, in order, and nothing is lost.
        let mut rest = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut io, &mut rest)
            .await
            .unwrap();
        assert_eq!([&buf[..], &rest].concat(), chunks.concat(), "{p:?}");
        p
    }

    /// Regression (fuzzing, issue 15): 16 or more capital letters and nothing else read
    /// past the buffer.
    #[tokio::test]
    async fn a_long_run_of_capitals_is_opaque() {
        assert_eq!(
            run(&[b"ABCDEFGHIJKLMNOPQRST"], false).await,
            Protocol::Opaque
        );
        assert_eq!(run(&[b"ABCDEFGHIJKLMNOP"], true).await, Protocol::Opaque);
        assert_eq!(
            run(&[b"ABCDEFGHIJKLMNOPQ", b" / HTTP/1.1\r\n"], false).await,
            Protocol::Opaque
        );
    }

    #[tokio::test]
    async fn detects() {
        assert_eq!(
            run(&[b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"], false).await,
            Protocol::Http1
        );
        assert_eq!(
            run(&[b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"], false).await,
            Protocol::Http2
        );
        assert_eq!(run(&[&[0x16, 0x03, 0x01, 0, 5]], true).await, Protocol::Tls);
        assert_eq!(
            run(&[&[0x16, 0x03, 0x01, 0, 5]], false).await,
            Protocol::Opaque
        );
        assert_eq!(
            run(&[b"SSH-2.0-OpenSSH\r\n"], false).await,
            Protocol::Opaque
        );
        assert_eq!(run(&[b"GET /foo FTP/1\r\n"], false).await, Protocol::Opaque);
        assert_eq!(run(&[b"GET"], false).await, Protocol::Opaque);
    }

    #[tokio::test]
    async fn a_request_line_or_preface_split_across_reads_is_still_detected() {
        assert_eq!(
            run(&[b"GE", b"T / HTTP/1.1\r\nHost: a\r\n\r\n"], false).await,
            Protocol::Http1
        );
        assert_eq!(
            run(&[b"GET /a", b"bc HTTP/1", b".1\r\n\r\n"], false).await,
            Protocol::Http1
        );
        assert_eq!(
            run(&[b"PRI * HT", b"TP/2.0\r\n\r\nSM\r\n\r\n"], false).await,
            Protocol::Http2
        );
        assert_eq!(
            run(&[&[0x16], &[0x03, 0x01, 0, 5]], true).await,
            Protocol::Tls
        );
        assert_eq!(
            run(&[b"GET /foo", b" FTP/1\r\n"], false).await,
            Protocol::Opaque
        );
    }

    /// Request lines over 1 KiB (long query strings) are HTTP, not opaque
    /// TCP; bytes that cannot be a request line still turn opaque after MAX_PEEK.
    #[tokio::test]
    async fn long_http1_request_lines_are_http() {
        for len in [MAX_PEEK, 4 * 1024, 60 * 1024] {
            let line = format!(
                "GET /search?q={} HTTP/1.1\r\nHost: a\r\n\r\n",
                "x".repeat(len)
            );
            assert_eq!(
                run(&[line.as_bytes()], false).await,
                Protocol::Http1,
                "{len}"
            );
            // Arriving in small pieces, as over a slow link.
            let (mut a, mut b) = tokio::io::duplex(512);
            let writer = tokio::spawn(async move {
                use tokio::io::AsyncWriteExt;
                for chunk in line.as_bytes().chunks(300) {
                    b.write_all(chunk).await.unwrap();
                }
                b
            });
            let (p, buf) = detect(&mut a, Duration::from_secs(5), true).await.unwrap();
            assert_eq!(p, Protocol::Http1, "{len} in pieces");
            assert!(buf.starts_with(b"GET /search?q=x"));
            drop(writer.await);
        }
        let too_long = format!("GET /{} HTTP/1.1\r\n", "x".repeat(MAX_REQUEST_LINE));
        assert_eq!(run(&[too_long.as_bytes()], false).await, Protocol::Opaque);
        let mut binary = b"GET /".to_vec();
        binary.extend(std::iter::repeat_n(0u8, 2 * MAX_PEEK));
        assert_eq!(run(&[&binary], false).await, Protocol::Opaque);
    }

    #[tokio::test]
    async fn times_out_to_opaque() {
        let (mut a, _b) = tokio::io::duplex(64);
        let (p, buf) = detect(&mut a, Duration::from_millis(50), true)
            .await
            .unwrap();
        assert_eq!(p, Protocol::Opaque);
        assert!(buf.is_empty());
    }
}

#[cfg(test)]
mod first_speaker_tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn a_late_http_client_is_http_and_a_banner_is_the_servers() {
        let (mut client, mut client_peer) = tokio::io::duplex(1024);
        let (mut upstream, _upstream_peer) = tokio::io::duplex(1024);
        client_peer.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        let who = first_speaker(&mut client, &mut upstream, Duration::from_secs(1), false)
            .await
            .unwrap();
        assert!(matches!(who, FirstSpeaker::Client(Protocol::Http1, b) if b.starts_with(b"GET")));

        let (mut client, _client_peer) = tokio::io::duplex(1024);
        let (mut upstream, mut upstream_peer) = tokio::io::duplex(1024);
        upstream_peer
            .write_all(b"220 smtp ready\r\n")
            .await
            .unwrap();
        let who = first_speaker(&mut client, &mut upstream, Duration::from_secs(1), false)
            .await
            .unwrap();
        assert!(matches!(who, FirstSpeaker::Server(b) if &b[..] == b"220 smtp ready\r\n"));
    }
}

#[cfg(test)]
mod sni_tests {
    use super::*;
    use std::sync::Arc;

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
        conn.write_tls(&mut out).unwrap();
        out
    }

    #[tokio::test]
    async fn reads_the_sni_across_reads_and_keeps_every_byte() {
        let hello = client_hello("web.ns.serviceaccount.identity.tulle.cluster.local");
        let (first, rest) = hello.split_at(20);
        let mut buf = BytesMut::from(first);
        let mut io = std::io::Cursor::new(rest.to_vec());
        let sni = client_hello_sni(&mut io, &mut buf, Duration::from_secs(1))
            .await
            .unwrap();
        assert_eq!(
            sni.as_deref(),
            Some("web.ns.serviceaccount.identity.tulle.cluster.local")
        );
        assert_eq!(&buf[..], &hello[..]);

        let mut buf = BytesMut::from(&b"\x16\x03\x01\x00\x05hello"[..]);
        let sni = client_hello_sni(
            &mut std::io::Cursor::new(Vec::new()),
            &mut buf,
            Duration::from_secs(1),
        )
        .await
        .unwrap();
        assert_eq!(sni, None);
    }
}

//! Protocol detection on the first bytes of a connection, with a timeout.

use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt};

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
const MAX_PEEK: usize = 1024;

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
    if method_len == 0 || buf[method_len] != b' ' {
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
        None if buf.len() >= MAX_PEEK => Verdict::Done(Protocol::Opaque),
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
    let mut buf = BytesMut::with_capacity(MAX_PEEK);
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
                if buf.len() >= MAX_PEEK {
                    return Ok((Protocol::Opaque, buf));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn run(chunks: &[&[u8]], tls: bool) -> Protocol {
        let mut b = tokio_test_io(chunks);
        detect(&mut b, Duration::from_millis(200), tls)
            .await
            .unwrap()
            .0
    }

    fn tokio_test_io(chunks: &[&[u8]]) -> impl AsyncRead + Unpin {
        let data: Vec<u8> = chunks.concat();
        std::io::Cursor::new(data)
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
    async fn times_out_to_opaque() {
        let (mut a, _b) = tokio::io::duplex(64);
        let (p, buf) = detect(&mut a, Duration::from_millis(50), true)
            .await
            .unwrap();
        assert_eq!(p, Protocol::Opaque);
        assert!(buf.is_empty());
    }
}

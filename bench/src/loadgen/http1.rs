//! The client side of one HTTP/1.1 keep-alive exchange: write a fixed request, read one response
//! (Content-Length or chunked body) without allocating per request.
use std::io;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What went wrong in one exchange.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
    #[error("the server closed the connection before a full response")]
    Closed,
    #[error("malformed response: {0}")]
    Parse(String),
}

/// The parts of a response the load generator cares about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// The server asked to close the connection after this response.
    pub close: bool,
}

/// A GET request for `/` with the given Host header.
pub fn request_bytes(host: &str) -> Vec<u8> {
    format!("GET / HTTP/1.1\r\nHost: {host}\r\nUser-Agent: tulle-bench\r\nAccept: */*\r\n\r\n")
        .into_bytes()
}

/// Sends `req` on `stream` and reads one full response, using `buf` as scratch space.
pub async fn exchange(
    stream: &mut TcpStream,
    req: &[u8],
    buf: &mut Vec<u8>,
) -> Result<Response, ExchangeError> {
    stream.write_all(req).await?;
    buf.clear();
    loop {
        if let Some((resp, total)) = parse_response(buf)?
            && buf.len() >= total
        {
            return Ok(resp);
        }
        buf.reserve(4096);
        if stream.read_buf(buf).await? == 0 {
            return Err(ExchangeError::Closed);
        }
    }
}

/// Parses a response in `buf`: `None` while incomplete, else the response and its total length
/// (headers + body). For a chunked body whose end is not buffered yet, the length returned is
/// larger than `buf`.
fn parse_response(buf: &[u8]) -> Result<Option<(Response, usize)>, ExchangeError> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut parsed = httparse::Response::new(&mut headers);
    let head_len = match parsed.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(ExchangeError::Parse(e.to_string())),
    };
    let status = parsed.code.unwrap_or(0);
    let mut close = false;
    let mut content_length = None;
    let mut chunked = false;
    for h in parsed.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            let v = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok())
                .ok_or_else(|| ExchangeError::Parse("bad content-length".into()))?;
            content_length = Some(v);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = h
                .value
                .windows(7)
                .any(|w| w.eq_ignore_ascii_case(b"chunked"));
        } else if h.name.eq_ignore_ascii_case("connection") {
            close = h.value.windows(5).any(|w| w.eq_ignore_ascii_case(b"close"));
        }
    }
    let resp = Response { status, close };
    if chunked {
        return Ok(Some((
            resp,
            chunked_len(&buf[head_len..])?.map_or(usize::MAX, |n| head_len + n),
        )));
    }
    match content_length {
        Some(n) => Ok(Some((resp, head_len + n))),
        None if status == 204 || status == 304 || (100..200).contains(&status) => {
            Ok(Some((resp, head_len)))
        }
        None => Err(ExchangeError::Parse(
            "response without content-length or chunked body (read-to-close is not supported)"
                .into(),
        )),
    }
}

/// Length of a complete chunked body at the start of `body`, or `None` if not all buffered.
fn chunked_len(body: &[u8]) -> Result<Option<usize>, ExchangeError> {
    let mut pos = 0;
    loop {
        let (size_len, size) = match httparse::parse_chunk_size(&body[pos..]) {
            Ok(httparse::Status::Complete(v)) => v,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(_) => return Err(ExchangeError::Parse("bad chunk size".into())),
        };
        pos += size_len;
        if size == 0 {
            // Trailers (if any) end with an empty line.
            loop {
                let rest = &body[pos..];
                let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") else {
                    return Ok(None);
                };
                pos += eol + 2;
                if eol == 0 {
                    return Ok(Some(pos));
                }
            }
        }
        pos += size as usize + 2;
        if pos > body.len() {
            return Ok(None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_length_response() {
        let r = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n";
        let (resp, len) = parse_response(r).unwrap().unwrap();
        assert_eq!(
            resp,
            Response {
                status: 200,
                close: false
            }
        );
        assert_eq!(len, r.len());
        assert!(parse_response(&r[..10]).unwrap().is_none());
    }

    #[test]
    fn chunked_response() {
        let r = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nok\n\r\n0\r\n\r\n";
        let (resp, len) = parse_response(r).unwrap().unwrap();
        assert_eq!(
            resp,
            Response {
                status: 200,
                close: true
            }
        );
        assert_eq!(len, r.len());
        let (_, partial_len) = parse_response(&r[..r.len() - 2]).unwrap().unwrap();
        assert!(partial_len > r.len() - 2);
    }

    #[test]
    fn rejects_garbage() {
        assert!(parse_response(b"SSH-2.0-OpenSSH\r\n\r\n").is_err());
    }
}

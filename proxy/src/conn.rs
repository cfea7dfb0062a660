//! Connection plumbing: replaying detected bytes, counting bytes, original destinations,
//! and the transport header between proxies.

use std::io;
use std::net::{SocketAddr, SocketAddrV4};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BytesMut};
use prometheus_client::metrics::counter::Counter;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

/// An IO that first replays bytes already read (during protocol detection).
#[derive(Debug)]
pub struct PrefixedIo<T> {
    prefix: BytesMut,
    io: T,
}

impl<T> PrefixedIo<T> {
    pub fn new(prefix: BytesMut, io: T) -> Self {
        PrefixedIo { prefix, io }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for PrefixedIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            if self.prefix.is_empty() {
                self.prefix = BytesMut::new();
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for PrefixedIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// An IO that counts bytes read and written (`tcp_read_bytes_total` / `tcp_write_bytes_total`).
#[derive(Debug)]
pub struct CountingIo<T> {
    io: T,
    read: Counter,
    write: Counter,
}

impl<T> CountingIo<T> {
    pub fn new(io: T, read: Counter, write: Counter) -> Self {
        CountingIo { io, read, write }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for CountingIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.io).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        if n > 0 {
            self.read.inc_by(n as u64);
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for CountingIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = r {
            self.write.inc_by(n as u64);
        }
        r
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = r {
            self.write.inc_by(n as u64);
        }
        r
    }
    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// The original destination of a redirected connection (`SO_ORIGINAL_DST`), or `None` when
/// the connection was not redirected by iptables.
pub fn original_dst(sock: &TcpStream) -> Option<SocketAddr> {
    let local = sock.local_addr().ok()?;
    let addr = nix::sys::socket::getsockopt(sock, nix::sys::socket::sockopt::OriginalDst).ok()?;
    let ip = std::net::Ipv4Addr::from(u32::from_be(addr.sin_addr.s_addr));
    let orig = SocketAddr::V4(SocketAddrV4::new(ip, u16::from_be(addr.sin_port)));
    (orig != local).then_some(orig)
}

/// The transport header between proxies on `tulle.tcp` / `tulle.h1` connections: magic and
/// the original destination port.
pub const HEADER_MAGIC: &[u8; 4] = b"TUL1";

/// Writes the transport header.
pub async fn write_header<W: AsyncWrite + Unpin>(w: &mut W, port: u16) -> io::Result<()> {
    let mut h = [0u8; 6];
    h[..4].copy_from_slice(HEADER_MAGIC);
    h[4..].copy_from_slice(&port.to_be_bytes());
    w.write_all(&h).await
}

/// Reads the transport header; returns the original port.
pub async fn read_header<R: AsyncRead + Unpin>(r: &mut R) -> io::Result<u16> {
    let mut h = [0u8; 6];
    r.read_exact(&mut h).await?;
    if &h[..4] != HEADER_MAGIC {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "bad tulle transport header",
        ));
    }
    Ok(u16::from_be_bytes([h[4], h[5]]))
}

/// Connects with a timeout, with `TCP_NODELAY`.
pub async fn connect(
    addr: SocketAddr,
    timeout: std::time::Duration,
) -> Result<TcpStream, crate::error::ProxyError> {
    match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => {
            let _ = s.set_nodelay(true);
            Ok(s)
        }
        Ok(Err(e)) => Err(crate::error::ProxyError::Connect(addr, e)),
        Err(_) => Err(crate::error::ProxyError::ConnectTimeout(addr)),
    }
}

/// Copies both ways until both sides are done (half-close aware), or until no byte moved in
/// either direction for `idle`.
pub async fn splice<A, B>(a: &mut A, b: &mut B, idle: std::time::Duration) -> io::Result<(u64, u64)>
where
    A: AsyncRead + AsyncWrite + Unpin + ?Sized,
    B: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    let base = tokio::time::Instant::now();
    let last = Arc::new(AtomicU64::new(0));
    let mut touched = Touch {
        io: a,
        last: last.clone(),
        base,
    };
    let copy = tokio::io::copy_bidirectional(&mut touched, b);
    tokio::pin!(copy);
    let mut deadline = base + idle;
    loop {
        tokio::select! {
            r = &mut copy => return r,
            _ = tokio::time::sleep_until(deadline) => {
                let seen = base + std::time::Duration::from_millis(last.load(Ordering::Relaxed));
                if seen + idle <= tokio::time::Instant::now() {
                    return Err(io::Error::new(io::ErrorKind::TimedOut, "idle timeout"));
                }
                deadline = seen + idle;
            }
        }
    }
}

struct Touch<'a, T: ?Sized> {
    io: &'a mut T,
    last: std::sync::Arc<std::sync::atomic::AtomicU64>,
    base: tokio::time::Instant,
}

impl<T: ?Sized> Touch<'_, T> {
    fn touch(&self) {
        let ms = self.base.elapsed().as_millis() as u64;
        self.last.store(ms, std::sync::atomic::Ordering::Relaxed);
    }
}

impl<T: AsyncRead + Unpin + ?Sized> AsyncRead for Touch<'_, T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut *self.io).poll_read(cx, buf);
        if r.is_ready() {
            self.touch();
        }
        r
    }
}

impl<T: AsyncWrite + Unpin + ?Sized> AsyncWrite for Touch<'_, T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut *self.io).poll_write(cx, buf);
        if r.is_ready() {
            self.touch();
        }
        r
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.io).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn splice_ends_idle_connections_and_keeps_active_ones() {
        let (mut a, mut a_peer) = tokio::io::duplex(64);
        let (mut b, _b_peer) = tokio::io::duplex(64);
        let t = tokio::spawn(async move {
            splice(&mut a, &mut b, std::time::Duration::from_secs(10)).await
        });
        // Activity every 6 s keeps it open past the idle time.
        for _ in 0..3 {
            tokio::time::sleep(std::time::Duration::from_secs(6)).await;
            a_peer.write_all(b"x").await.unwrap();
        }
        assert!(!t.is_finished());
        let err = t.await.unwrap().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }
}

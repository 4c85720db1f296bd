//! A downstream stream that gathers small writes until pingora flushes.
//!
//! pingora's HTTP/1.1 server writes a response's header and its body separately and calls `flush`
//! when a response (or a chunk) is complete, expecting the L4 stream to buffer in between, as the
//! streams its own listeners build do. The streams we build for our accept loop and for HBONE
//! tunnels (`Stream::from`) have no write buffer, so every response cost two `send`s (two DATA
//! frames inside a tunnel): on a loopback benchmark each `send` also runs the receiver's side of
//! TCP, which made it the largest cost of a proxied request. This wrapper restores the buffering:
//! writes that fit in [`CAPACITY`](crate::coalesce::CAPACITY) are gathered and go out in one write
//! at the next flush; larger writes go straight through after what was gathered.
//!
//! The buffer is allocated on the first small write, not per connection, so idle connections
//! and tunnels that never answer a request (the memory benchmark holds thousands) cost nothing.

use async_trait::async_trait;
use pingora_core::protocols::l4::stream::Stream as L4Stream;
use pingora_core::protocols::raw_connect::ProxyDigest;
use pingora_core::protocols::tls::{SslDigest, TlsRef};
use pingora_core::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl,
    TimingDigest, UniqueID, UniqueIDType, ALPN,
};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Writes smaller than this are gathered: a response header plus a small body (a few KiB) go
/// out in one write. pingora's own listeners buffer 1 460 bytes, which a header and a 1 KiB body
/// already overflow; larger bodies gain nothing from copying, so they are not gathered.
pub const CAPACITY: usize = 4096;

/// A downstream L4 stream with a small write buffer that pingora's `flush` empties; reads and
/// every digest pass through to the wrapped stream.
#[derive(Debug)]
pub struct Coalesced {
    inner: L4Stream,
    /// Gathered bytes; `buf[sent..]` has not been handed to `inner` yet.
    buf: Vec<u8>,
    sent: usize,
}

impl Coalesced {
    /// Wraps `inner`; no buffer is allocated until the first small write.
    pub fn new(inner: L4Stream) -> Self {
        Coalesced {
            inner,
            buf: Vec::new(),
            sent: 0,
        }
    }

    /// Hands every gathered byte to `inner` (without flushing `inner`).
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.buf.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.buf[self.sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        self.buf.clear();
        self.sent = 0;
        Poll::Ready(Ok(()))
    }

    fn gathered(&self) -> usize {
        self.buf.len() - self.sent
    }
}

impl AsyncRead for Coalesced {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Coalesced {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.gathered() + data.len() > CAPACITY {
            // Order matters: what was gathered goes first.
            ready!(this.poll_drain(cx))?;
        }
        if data.len() >= CAPACITY {
            return Pin::new(&mut this.inner).poll_write(cx, data);
        }
        if this.buf.capacity() == 0 {
            this.buf.reserve_exact(CAPACITY);
        }
        this.buf.extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        let this = &mut *self;
        if this.gathered() + total > CAPACITY {
            ready!(this.poll_drain(cx))?;
        }
        if total >= CAPACITY {
            return Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        }
        if this.buf.capacity() == 0 {
            this.buf.reserve_exact(CAPACITY);
        }
        for b in bufs {
            this.buf.extend_from_slice(b);
        }
        Poll::Ready(Ok(total))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_drain(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_drain(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl Drop for Coalesced {
    fn drop(&mut self) {
        // pingora flushes before it lets a connection go; this only covers an error path that
        // drops the stream with bytes gathered: try once without waiting, as pingora's own
        // stream does on drop.
        if self.gathered() > 0 {
            let waker = std::task::Waker::noop();
            let _ = self.poll_drain(&mut Context::from_waker(waker));
        }
    }
}

#[async_trait]
impl Shutdown for Coalesced {
    async fn shutdown(&mut self) {
        if let Err(e) = tokio::io::AsyncWriteExt::flush(self).await {
            tracing::debug!("cannot flush before shutting the connection down: {e}");
        }
        Shutdown::shutdown(&mut self.inner).await
    }
}

impl UniqueID for Coalesced {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for Coalesced {
    fn get_ssl(&self) -> Option<&TlsRef> {
        self.inner.get_ssl()
    }

    fn get_ssl_digest(&self) -> Option<Arc<SslDigest>> {
        self.inner.get_ssl_digest()
    }

    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for Coalesced {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }

    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }

    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for Coalesced {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.get_proxy_digest()
    }

    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.inner.set_proxy_digest(digest)
    }
}

impl GetSocketDigest for Coalesced {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }

    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.inner.set_socket_digest(digest)
    }
}

#[async_trait]
impl Peek for Coalesced {
    async fn try_peek(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        self.inner.try_peek(buf).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    async fn pair() -> (Coalesced, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let client = TcpStream::connect(addr).await.expect("connect");
        let (server, _) = listener.accept().await.expect("accept");
        (Coalesced::new(L4Stream::from(server)), client)
    }

    /// Reads whatever has arrived within a short wait.
    async fn arrived(client: &mut TcpStream) -> Vec<u8> {
        let mut out = vec![0; 64 * 1024];
        match tokio::time::timeout(Duration::from_millis(100), client.read(&mut out)).await {
            Ok(Ok(n)) => out.truncate(n),
            _ => out.clear(),
        }
        out
    }

    #[tokio::test]
    async fn small_writes_wait_for_flush_and_go_out_in_order() {
        let (mut s, mut client) = pair().await;
        s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n")
            .await
            .expect("write");
        s.write_all(b"hello").await.expect("write");
        assert!(
            arrived(&mut client).await.is_empty(),
            "nothing before flush"
        );
        s.flush().await.expect("flush");
        let mut got = Vec::new();
        while got.len() < 43 {
            let more = arrived(&mut client).await;
            assert!(!more.is_empty(), "flushed bytes arrive");
            got.extend(more);
        }
        assert_eq!(got, b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello");
    }

    #[tokio::test]
    async fn large_writes_go_through_after_what_was_gathered() {
        let (mut s, mut client) = pair().await;
        s.write_all(b"head").await.expect("write");
        let big = vec![b'x'; CAPACITY * 3];
        s.write_all(&big).await.expect("write");
        s.write_all(b"tail").await.expect("write");
        s.flush().await.expect("flush");
        drop(s);
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.expect("read");
        let mut want = b"head".to_vec();
        want.extend(&big);
        want.extend(b"tail");
        assert_eq!(got, want);
    }

    #[tokio::test]
    async fn shutdown_sends_what_was_gathered() {
        let (mut s, mut client) = pair().await;
        s.write_all(b"bye").await.expect("write");
        Shutdown::shutdown(&mut s).await;
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.expect("read");
        assert_eq!(got, b"bye");
    }

    #[tokio::test]
    async fn reads_and_digests_pass_through() {
        let (mut s, mut client) = pair().await;
        s.set_socket_digest(SocketDigest::from_raw_fd(-1));
        assert!(s.get_socket_digest().is_some());
        client
            .write_all(b"GET / HTTP/1.1\r\n")
            .await
            .expect("write");
        let mut buf = [0u8; 16];
        s.read_exact(&mut buf).await.expect("read");
        assert_eq!(&buf, b"GET / HTTP/1.1\r\n");
    }
}

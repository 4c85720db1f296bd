//! One HBONE tunnel — an HTTP/2 CONNECT stream — as a byte stream (`AsyncRead + AsyncWrite`),
//! so the same pingora proxy and TCP copy code serve tunnels and plain sockets alike.

use bytes::{Buf, Bytes};
use h2::{RecvStream, SendStream};
use pingora_core::protocols::l4::virt::{VirtualSockOpt, VirtualSocket};
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The largest chunk written in one DATA frame batch; h2 splits further by frame size.
const MAX_WRITE: usize = 64 * 1024;

/// One CONNECT stream's two halves read and written as bytes; shutdown half-closes with
/// END_STREAM, and a peer's reset with NO_ERROR reads as a clean end.
#[derive(Debug)]
pub struct H2Tunnel {
    send: SendStream<Bytes>,
    recv: RecvStream,
    /// Bytes received but not yet read (a partly consumed DATA frame, or sniffed bytes).
    pending: Bytes,
    shut_down: bool,
}

impl H2Tunnel {
    /// The tunnel over an accepted or opened CONNECT stream's send and receive halves.
    pub fn new(send: SendStream<Bytes>, recv: RecvStream) -> Self {
        H2Tunnel {
            send,
            recv,
            pending: Bytes::new(),
            shut_down: false,
        }
    }

    /// Puts bytes that were read ahead (to sniff the protocol) back in front of the stream.
    pub fn unread(&mut self, prefix: Bytes) {
        if self.pending.is_empty() {
            self.pending = prefix;
        } else {
            let mut joined = prefix.to_vec();
            joined.extend_from_slice(&self.pending);
            self.pending = Bytes::from(joined);
        }
    }
}

fn h2_to_io(e: h2::Error) -> io::Error {
    if e.is_io() {
        return e
            .into_io()
            .unwrap_or_else(|| io::Error::other("h2 I/O error"));
    }
    // A reset with NO_ERROR is the peer closing its side cleanly.
    if e.reason() == Some(h2::Reason::NO_ERROR) {
        return io::Error::new(io::ErrorKind::UnexpectedEof, e);
    }
    io::Error::new(io::ErrorKind::ConnectionReset, e)
}

impl AsyncRead for H2Tunnel {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        while this.pending.is_empty() {
            match ready!(this.recv.poll_data(cx)) {
                Some(Ok(data)) => {
                    // Give the window back at once: flow control is the reader's pace anyway,
                    // since we only poll for more when the reader asks.
                    let _ = this.recv.flow_control().release_capacity(data.len());
                    this.pending = data;
                }
                Some(Err(e)) if e.reason() == Some(h2::Reason::NO_ERROR) => {
                    return Poll::Ready(Ok(()))
                }
                Some(Err(e)) => return Poll::Ready(Err(h2_to_io(e))),
                None => return Poll::Ready(Ok(())),
            }
        }
        let n = this.pending.len().min(buf.remaining());
        buf.put_slice(&this.pending[..n]);
        this.pending.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for H2Tunnel {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let this = &mut *self;
        this.send.reserve_capacity(buf.len().min(MAX_WRITE));
        loop {
            match ready!(this.send.poll_capacity(cx)) {
                Some(Ok(0)) => continue,
                Some(Ok(n)) => {
                    let n = n.min(buf.len());
                    this.send
                        .send_data(Bytes::copy_from_slice(&buf[..n]), false)
                        .map_err(h2_to_io)?;
                    return Poll::Ready(Ok(n));
                }
                Some(Err(e)) => return Poll::Ready(Err(h2_to_io(e))),
                None => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::BrokenPipe,
                        "HBONE stream closed",
                    )))
                }
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // h2 frames go out as the connection task runs; there is no buffer of ours to flush.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Half-close: END_STREAM on our side; the peer may go on sending.
        if !self.shut_down {
            self.shut_down = true;
            self.send.send_data(Bytes::new(), true).map_err(h2_to_io)?;
        }
        Poll::Ready(Ok(()))
    }
}

impl Drop for H2Tunnel {
    /// Closing a tunnel is closing a TCP connection: what was written arrives, then the end.
    /// h2 would otherwise reset a stream dropped open (RST_STREAM CANCEL) and may discard the
    /// DATA still queued, so an answer written just before the proxy closes the connection
    /// (a local 503 after an upstream failure, say) never reached the client.
    fn drop(&mut self) {
        if !self.shut_down {
            self.shut_down = true;
            let _ = self.send.send_data(Bytes::new(), true);
        }
    }
}

impl VirtualSocket for H2Tunnel {
    fn set_socket_option(&self, _opt: VirtualSockOpt) -> io::Result<()> {
        // Nagle and keepalive belong to the TCP connection under the h2 session, not a stream.
        Ok(())
    }
}

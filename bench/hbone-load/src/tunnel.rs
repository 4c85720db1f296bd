//! One side of HBONE as ztunnel's outbound speaks it: TLS 1.3 with AES-GCM, ALPN h2, a client
//! certificate, no SNI; then HTTP/2 CONNECT streams carrying an application's plain HTTP/1.1.

use anyhow::{bail, Context};
use authz::Identity;
use bytes::{Buf, Bytes, BytesMut};
use h2::client::SendRequest;
use rustls::pki_types::ServerName;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use tokio::net::TcpStream;
use waypoint::identity::{CertStore, WorkloadCert};

/// ztunnel's flow-control windows, so both proxies see the peer they see in a mesh.
const STREAM_WINDOW: u32 = 4 * 1024 * 1024;
const CONNECTION_WINDOW: u32 = 16 * 1024 * 1024;

/// How long a closed tunnel waits for the proxy's end of stream before it is reset.
const CLOSE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// A response head larger than this is not what the benchmark backend sends: fail loudly.
const MAX_HEAD: usize = 16 * 1024;

/// Client TLS config from an Istio cert folder (`cert-chain.pem`, `key.pem`, `root-cert.pem`)
/// for a proxy that must present `peer`. It is the waypoint's own HBONE client config (TLS 1.3
/// with ztunnel's AES-GCM suites only, ALPN h2, no SNI, the peer's SPIFFE identity checked
/// against the mesh root), so both proxies under test negotiate what they would in a mesh.
pub fn client_config(dir: &Path, peer: &Identity) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let cert = WorkloadCert::load_dir(dir)
        .with_context(|| format!("cannot load the client certificate from {}", dir.display()))?;
    let store = CertStore::new(cert).context("unusable client certificate")?;
    waypoint::hbone::tls::client_config(store, peer.clone())
        .context("cannot build the HBONE client TLS config")
}

/// Dials `target` and returns a handle to open CONNECT streams on one HTTP/2 connection; the
/// connection is driven by a spawned task until every handle is dropped.
pub async fn connect(
    target: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
) -> anyhow::Result<SendRequest<Bytes>> {
    let tcp = TcpStream::connect(target)
        .await
        .with_context(|| format!("cannot connect to {target}"))?;
    tcp.set_nodelay(true)?;
    let name = ServerName::try_from("hbone.invalid")?;
    let stream = tokio_rustls::TlsConnector::from(tls)
        .connect(name, tcp)
        .await
        .with_context(|| format!("TLS handshake with {target} failed"))?;
    if stream.get_ref().1.alpn_protocol() != Some(b"h2") {
        bail!("{target} did not negotiate ALPN h2");
    }
    let (sender, connection) = h2::client::Builder::new()
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .handshake::<_, Bytes>(stream)
        .await
        .context("HTTP/2 handshake failed")?;
    tokio::spawn(async move {
        // The connection ends when the benchmark drops its handles or the proxy closes it;
        // either way the streams report the error they see.
        let _ = connection.await;
    });
    Ok(sender)
}

/// An open CONNECT stream: a byte pipe to the destination through the proxy.
pub struct Tunnel {
    send: h2::SendStream<Bytes>,
    recv: h2::RecvStream,
    buf: BytesMut,
}

impl Tunnel {
    /// Sends CONNECT with `:authority = authority` and waits for its 200.
    pub async fn open(sender: &SendRequest<Bytes>, authority: &str) -> anyhow::Result<Tunnel> {
        let mut sender = sender.clone().ready().await.context("connection closed")?;
        let request = http::Request::builder()
            .method(http::Method::CONNECT)
            .uri(authority)
            .body(())?;
        let (response, send) = sender
            .send_request(request, false)
            .context("cannot open a CONNECT stream")?;
        let response = response.await.context("CONNECT failed")?;
        if response.status() != http::StatusCode::OK {
            bail!("CONNECT {authority} answered {}", response.status());
        }
        Ok(Tunnel {
            send,
            recv: response.into_body(),
            buf: BytesMut::with_capacity(4096),
        })
    }

    /// Writes one HTTP/1.1 request and reads its whole response; returns the status code.
    pub async fn exchange(&mut self, request: &Bytes) -> anyhow::Result<u16> {
        self.send
            .send_data(request.clone(), false)
            .context("cannot write into the tunnel")?;
        loop {
            if let Some((status, total)) = parse_response(&self.buf)? {
                if self.buf.len() >= total {
                    self.buf.advance(total);
                    return Ok(status);
                }
            }
            match self.recv.data().await {
                Some(Ok(chunk)) => {
                    let _ = self.recv.flow_control().release_capacity(chunk.len());
                    self.buf.extend_from_slice(&chunk);
                }
                Some(Err(e)) => return Err(e).context("tunnel broke mid-response"),
                None => bail!("tunnel closed mid-response"),
            }
        }
    }

    /// Closes the tunnel as ztunnel does when the application closes its connection: half-close
    /// our side, then wait (in the background, up to a few seconds) for the proxy to end its
    /// side. Dropping the stream instead would reset it, which Envoy counts as a "premature
    /// reset" (its rapid-reset defence) and answers by closing the whole connection.
    pub fn close(mut self) {
        let _ = self.send.send_data(Bytes::new(), true);
        tokio::spawn(async move {
            let drain = async {
                while let Some(Ok(chunk)) = self.recv.data().await {
                    let _ = self.recv.flow_control().release_capacity(chunk.len());
                }
            };
            let _ = tokio::time::timeout(CLOSE_WAIT, drain).await;
            drop(self.send);
        });
    }
}

/// The status and total length (head + body) of the response at the start of `buf`, once its
/// head is complete. Only `Content-Length` bodies are accepted: the benchmark backend sends
/// exactly that, and a proxy that changed the framing should show up as errors.
fn parse_response(buf: &[u8]) -> anyhow::Result<Option<(u16, usize)>> {
    let Some(head_end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        if buf.len() > MAX_HEAD {
            bail!("response head over {MAX_HEAD} bytes");
        }
        return Ok(None);
    };
    let head = std::str::from_utf8(&buf[..head_end]).context("response head is not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse::<u16>().ok())
        .with_context(|| format!("bad status line {status_line:?}"))?;
    let mut length = None;
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            if name.trim().eq_ignore_ascii_case("content-length") {
                length = Some(
                    value
                        .trim()
                        .parse::<usize>()
                        .context("bad Content-Length")?,
                );
            }
        }
    }
    let length = length.with_context(|| format!("response without Content-Length: {head:?}"))?;
    Ok(Some((status, head_end + 4 + length)))
}

#[cfg(test)]
mod tests {
    use super::parse_response;

    #[test]
    fn a_response_is_complete_once_head_and_body_are_in() -> anyhow::Result<()> {
        let full = b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nabc";
        assert_eq!(parse_response(&full[..20])?, None);
        assert_eq!(parse_response(full)?, Some((200, full.len())));
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nx: y\r\n\r\n").is_err());
        Ok(())
    }
}

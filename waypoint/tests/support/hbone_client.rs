//! A minimal HBONE client for tests, shaped like ztunnel's: TLS 1.3 with a workload
//! certificate (or none, to test rejections), ALPN h2, CONNECT streams, HTTP inside.
//!
//! Its TLS is its own on purpose, not the waypoint's `hbone::tls::client_config`: it probes
//! the waypoint's HBONE server from outside, so it must present what production code would
//! refuse to (no certificate, expired ones, another trust domain's), must not share the
//! verification it is testing, and reports the certificate the server presented.

use super::pki::Leaf;
use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use waypoint::hbone::tunnel::H2Tunnel;

/// Checks the server chain against the root (the waypoint has no DNS name to check) and
/// remembers the certificate it presented.
#[derive(Debug)]
struct ChainOnly {
    roots: RootCertStore,
    seen: Arc<Mutex<Option<CertificateDer<'static>>>>,
}

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _name: &ServerName<'_>,
        _ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let parsed = rustls::server::ParsedCertificate::try_from(end_entity)?;
        let algs = rustls::crypto::ring::default_provider().signature_verification_algorithms;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &parsed,
            &self.roots,
            intermediates,
            now,
            algs.all,
        )?;
        *self.seen.lock().expect("lock") = Some(end_entity.clone().into_owned());
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _m: &[u8],
        _c: &CertificateDer<'_>,
        _d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General(
            "TLS 1.2 is not used by HBONE".into(),
        ))
    }

    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algs = rustls::crypto::ring::default_provider().signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(m, c, d, &algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

pub struct HboneConn {
    sender: h2::client::SendRequest<Bytes>,
    /// The certificate the waypoint presented.
    pub server_cert: CertificateDer<'static>,
}

/// A finished TLS 1.3 handshake with the waypoint, and the certificate it presented.
async fn tls_connect(
    addr: SocketAddr,
    source: Option<std::net::IpAddr>,
    client: Option<&Leaf>,
    root_pem: &str,
) -> anyhow::Result<(
    tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    Arc<Mutex<Option<CertificateDer<'static>>>>,
)> {
    let mut roots = RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(root_pem.as_bytes()) {
        roots.add(c?)?;
    }
    let seen = Arc::new(Mutex::new(None));
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])?
    .dangerous()
    .with_custom_certificate_verifier(Arc::new(ChainOnly {
        roots,
        seen: seen.clone(),
    }));
    let mut config = match client {
        Some(leaf) => {
            let chain: Vec<CertificateDer<'static>> =
                CertificateDer::pem_slice_iter(leaf.chain_pem.as_bytes())
                    .collect::<Result<_, _>>()?;
            let key = PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes())?;
            builder.with_client_auth_cert(chain, key)?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    config.enable_sni = false;
    let tcp = dial(addr, source).await?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::IpAddress(addr.ip().into()), tcp)
        .await?;
    Ok((tls, seen))
}

/// A TCP connection to `addr`, from `source` when given (bound before connecting, so the
/// waypoint sees that peer address: any 127.x.y.z is a distinct local source).
pub async fn dial(
    addr: SocketAddr,
    source: Option<std::net::IpAddr>,
) -> std::io::Result<tokio::net::TcpStream> {
    let Some(ip) = source else {
        return tokio::net::TcpStream::connect(addr).await;
    };
    let socket = match ip {
        std::net::IpAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        std::net::IpAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.bind(SocketAddr::new(ip, 0))?;
    socket.connect(addr).await
}

/// Opens an HBONE connection to `addr` presenting `client` (or no certificate).
pub async fn connect(
    addr: SocketAddr,
    client: Option<&Leaf>,
    root_pem: &str,
) -> anyhow::Result<HboneConn> {
    connect_from(addr, None, client, root_pem).await
}

/// [`connect`] from a chosen source address (see [`dial`]).
pub async fn connect_from(
    addr: SocketAddr,
    source: Option<std::net::IpAddr>,
    client: Option<&Leaf>,
    root_pem: &str,
) -> anyhow::Result<HboneConn> {
    let (tls, seen) = tls_connect(addr, source, client, root_pem).await?;
    let (sender, conn) = h2::client::handshake(tls).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let server_cert = seen
        .lock()
        .expect("lock")
        .clone()
        .ok_or_else(|| anyhow::anyhow!("no server certificate seen"))?;
    Ok(HboneConn {
        sender,
        server_cert,
    })
}

/// How the waypoint answers a TLS handshake presenting `client`: the error that ended it, or
/// Ok when the waypoint let the client in. A TLS 1.3 client finishes its side of the handshake
/// before the server has checked its certificate, so the server's verdict is the first thing
/// it sends: this reads it without writing anything, since a write racing the server's close
/// would turn its alert into a broken pipe.
pub async fn handshake_verdict(
    addr: SocketAddr,
    client: Option<&Leaf>,
    root_pem: &str,
) -> anyhow::Result<()> {
    use tokio::io::AsyncReadExt;
    let (mut tls, _) = tls_connect(addr, None, client, root_pem).await?;
    let mut first = [0u8; 1];
    match tokio::time::timeout(Duration::from_secs(10), tls.read(&mut first)).await {
        Err(_) => anyhow::bail!("the waypoint sent nothing within 10 s of the handshake"),
        Ok(Err(e)) => Err(e.into()),
        Ok(Ok(0)) => anyhow::bail!("the waypoint closed the connection without an alert"),
        // An accepted client gets the server's HTTP/2 SETTINGS first.
        Ok(Ok(_)) => Ok(()),
    }
}

impl HboneConn {
    /// Sends `method` to `authority` (CONNECT for a tunnel) and returns the status and, for a
    /// 200, the tunnel.
    pub async fn open(
        &self,
        method: http::Method,
        authority: &str,
        headers: &[(&str, &str)],
    ) -> anyhow::Result<(u16, Option<H2Tunnel>)> {
        let mut sender = self.sender.clone().ready().await?;
        let uri = if method == http::Method::CONNECT {
            authority.to_string()
        } else {
            format!("https://{authority}/")
        };
        let mut req = http::Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let (resp, send) = sender.send_request(req.body(())?, false)?;
        let resp = tokio::time::timeout(Duration::from_secs(10), resp).await??;
        let status = resp.status().as_u16();
        Ok(if status == 200 {
            (status, Some(H2Tunnel::new(send, resp.into_body())))
        } else {
            (status, None)
        })
    }

    /// CONNECT to `authority`, then one HTTP/1.1 GET inside; returns status and body.
    pub async fn get(
        &self,
        authority: &str,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> anyhow::Result<(u16, String)> {
        let (status, tunnel) = self.open(http::Method::CONNECT, authority, headers).await?;
        let tunnel =
            tunnel.ok_or_else(|| anyhow::anyhow!("CONNECT {authority} answered {status}"))?;
        http1_get(tunnel, host, path).await
    }
}

/// One HTTP/1.1 GET over any byte stream.
pub async fn http1_get<T>(io: T, host: &str, path: &str) -> anyhow::Result<(u16, String)>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let req = http::Request::builder()
        .uri(path)
        .header("host", host)
        .body(Empty::<Bytes>::new())?;
    let resp = tokio::time::timeout(Duration::from_secs(10), sender.send_request(req)).await??;
    let reply = super::read(resp).await?;
    Ok((reply.status, reply.body))
}

/// One HTTP/2 (prior knowledge) GET over any byte stream.
pub async fn http2_get<T>(io: T, authority: &str, path: &str) -> anyhow::Result<(u16, String)>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let req = http::Request::builder()
        .uri(format!("http://{authority}{path}"))
        .body(Empty::<Bytes>::new())?;
    let resp = tokio::time::timeout(Duration::from_secs(10), sender.send_request(req)).await??;
    let reply = super::read(resp).await?;
    Ok((reply.status, reply.body))
}

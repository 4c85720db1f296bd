//! One GET of a `jwksUri` over HTTP/1.1, plain or TLS (the system's roots plus any given), all
//! within the rule's timeout.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use rustls_pki_types::{CertificateDer, ServerName};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// A JWKS document larger than this is refused (real ones are a few KiB).
const MAX_JWKS_BYTES: usize = 1 << 20;

/// Why a fetch failed, worded for the operator.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The URI cannot be fetched as written.
    #[error("{0:?} is not an http:// or https:// URL with a host")]
    BadUri(String),
    /// No answer within the rule's `timeout`.
    #[error("no answer within {0:?} (the rule's `timeout`)")]
    Timeout(Duration),
    /// TCP connect failed.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// `host:port`.
        addr: String,
        /// The error.
        source: std::io::Error,
    },
    /// TLS handshake failed (unknown CA, wrong name, …).
    #[error("TLS with {host} failed: {source}")]
    Tls {
        /// The host.
        host: String,
        /// The error.
        source: std::io::Error,
    },
    /// HTTP exchange failed.
    #[error("HTTP exchange failed: {0}")]
    Http(String),
    /// A status other than 2xx.
    #[error("the server answered {0}")]
    Status(http::StatusCode),
    /// The OpenID discovery document names no `jwks_uri`.
    #[error("the OpenID discovery document has no \"jwks_uri\" string")]
    NoJwksUri,
    /// The body is not UTF-8 or too large.
    #[error("the body is unusable: {0}")]
    Body(String),
}

/// The TLS settings for `https://` URIs: the system's roots plus `extra_roots`; `None` when
/// ring cannot offer a TLS version (never in practice; `https://` fetches then fail clearly).
pub fn tls_config(extra_roots: &[CertificateDer<'static>]) -> Option<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    // A certificate the system store holds but rustls cannot parse is skipped, not fatal.
    if let Ok(native) = rustls_native_certs::load_native_certs() {
        roots.add_parsable_certificates(native);
    }
    roots.add_parsable_certificates(extra_roots.iter().cloned());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .ok()?;
    Some(Arc::new(
        builder.with_root_certificates(roots).with_no_client_auth(),
    ))
}

/// GETs the JWKS text of `uri` within `timeout`. An OpenID discovery URI (a rule without
/// `jwksUri` or `jwks`) is read first and its `jwks_uri` fetched, as istiod does.
pub async fn fetch_jwks(
    uri: &str,
    timeout: Duration,
    tls: Option<&Arc<rustls::ClientConfig>>,
) -> Result<String, FetchError> {
    let both = async {
        if !uri.ends_with(authz::jwt::OPENID_DISCOVERY_SUFFIX) {
            return fetch_unbounded(uri, tls).await;
        }
        let doc = fetch_unbounded(uri, tls).await?;
        let jwks_uri = serde_json::from_str::<serde_json::Value>(&doc)
            .ok()
            .and_then(|d| d.get("jwks_uri")?.as_str().map(str::to_string))
            .ok_or(FetchError::NoJwksUri)?;
        fetch_unbounded(&jwks_uri, tls).await
    };
    tokio::time::timeout(timeout, both)
        .await
        .map_err(|_| FetchError::Timeout(timeout))?
}

async fn fetch_unbounded(
    uri: &str,
    tls: Option<&Arc<rustls::ClientConfig>>,
) -> Result<String, FetchError> {
    let bad = || FetchError::BadUri(uri.to_string());
    let parsed: http::Uri = uri.parse().map_err(|_| bad())?;
    let https = match parsed.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err(bad()),
    };
    let authority = parsed.authority().ok_or_else(bad)?.clone();
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
    let addr = format!("{}:{port}", authority.host());
    let tcp = TcpStream::connect(&addr)
        .await
        .map_err(|source| FetchError::Connect { addr, source })?;
    let path = parsed.path_and_query().map_or("/", |p| p.as_str());
    if !https {
        return get(tcp, authority.as_str(), path).await;
    }
    let name = ServerName::try_from(host.to_string()).map_err(|_| bad())?;
    let tls_error = |source| FetchError::Tls {
        host: host.to_string(),
        source,
    };
    let tls = tls.ok_or_else(|| tls_error(std::io::Error::other("no TLS configuration")))?;
    let stream = tokio_rustls::TlsConnector::from(tls.clone())
        .connect(name, tcp)
        .await
        .map_err(tls_error)?;
    get(stream, authority.as_str(), path).await
}

async fn get(
    io: impl AsyncRead + AsyncWrite + Unpin + Send + 'static,
    host: &str,
    path: &str,
) -> Result<String, FetchError> {
    let http_err = |e: hyper::Error| FetchError::Http(e.to_string());
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(http_err)?;
    tokio::spawn(async move {
        if let Err(error) = conn.await {
            tracing::debug!(%error, "JWKS fetch connection ended");
        }
    });
    let request = http::Request::get(path)
        .header(http::header::HOST, host)
        .header(http::header::ACCEPT, "application/json")
        .body(Empty::<Bytes>::new())
        .map_err(|e| FetchError::Http(e.to_string()))?;
    let response = sender.send_request(request).await.map_err(http_err)?;
    if !response.status().is_success() {
        return Err(FetchError::Status(response.status()));
    }
    let body = Limited::new(response.into_body(), MAX_JWKS_BYTES)
        .collect()
        .await
        .map_err(|e| FetchError::Body(e.to_string()))?
        .to_bytes();
    String::from_utf8(body.to_vec()).map_err(|e| FetchError::Body(e.to_string()))
}

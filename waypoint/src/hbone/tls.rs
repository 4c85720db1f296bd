//! mTLS for HBONE, as ztunnel speaks it: TLS 1.3 only, AES-GCM suites only, ALPN `h2`, no SNI; both
//! sides present their workload certificate and check the other's SPIFFE identity against the mesh
//! root. Certificates are resolved per handshake from the
//! [`CertStore`](crate::identity::CertStore), so a rotation reaches new connections at once and
//! leaves established ones alone.

use crate::identity::{spiffe_identity, CertStore};
use authz::Identity;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls13_signature, CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::ParsedCertificate;
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, Error, RootCertStore,
    SignatureScheme,
};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use std::sync::Arc;

/// The ALPN protocol of HBONE.
pub const ALPN_H2: &[u8] = b"h2";

/// ring with only the TLS 1.3 AES-GCM suites ztunnel accepts.
fn provider() -> Arc<CryptoProvider> {
    let mut p = rustls::crypto::ring::default_provider();
    p.cipher_suites = vec![
        rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256,
        rustls::crypto::ring::cipher_suite::TLS13_AES_256_GCM_SHA384,
    ];
    Arc::new(p)
}

fn algorithms() -> WebPkiSupportedAlgorithms {
    rustls::crypto::ring::default_provider().signature_verification_algorithms
}

fn roots(store: &CertStore) -> Result<RootCertStore, Error> {
    let mut roots = RootCertStore::empty();
    for r in &store.current().roots {
        roots.add(r.clone())?;
    }
    Ok(roots)
}

/// Verifies a peer chain against the store's current roots (read per handshake, so a root
/// rotation applies at once) and returns the leaf's identity.
fn verify_chain(
    store: &CertStore,
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    now: UnixTime,
) -> Result<Identity, Error> {
    let roots = roots(store)?;
    let parsed = ParsedCertificate::try_from(end_entity)?;
    rustls::client::verify_server_cert_signed_by_trust_anchor(
        &parsed,
        &roots,
        intermediates,
        now,
        algorithms().all,
    )?;
    spiffe_identity(end_entity).map_err(|why| {
        Error::InvalidCertificate(CertificateError::Other(rustls::OtherError(Arc::new(
            PeerIdentityError(why),
        ))))
    })
}

#[derive(Debug)]
struct PeerIdentityError(String);

impl std::fmt::Display for PeerIdentityError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "peer certificate has no usable SPIFFE identity: {}",
            self.0
        )
    }
}

impl std::error::Error for PeerIdentityError {}

fn identity_mismatch(why: String) -> Error {
    Error::InvalidCertificate(CertificateError::Other(rustls::OtherError(Arc::new(
        PeerIdentityError(why),
    ))))
}

/// The signature checks both verifiers share: TLS 1.3 with ring's algorithms. The configs
/// below offer TLS 1.3 only, so a TLS 1.2 signature never reaches them.
macro_rules! tls13_signatures {
    () => {
        fn verify_tls12_signature(
            &self,
            _message: &[u8],
            _cert: &CertificateDer<'_>,
            _dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, Error> {
            Err(Error::PeerIncompatible(
                rustls::PeerIncompatible::Tls12NotOffered,
            ))
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, Error> {
            verify_tls13_signature(message, cert, dss, &algorithms())
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            algorithms().supported_schemes()
        }
    };
}

/// Whether a peer's trust domain is one of the mesh's, asked per handshake so that a
/// MeshConfig change (trust domain, `trustDomainAliases`) applies to the next connection.
pub type TrustedDomains = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// Accepts client certificates chained to the mesh root and in a trusted trust domain.
struct MeshClientVerifier {
    store: Arc<CertStore>,
    /// Trust domains accepted besides our own certificate's.
    trusted: Option<TrustedDomains>,
}

impl std::fmt::Debug for MeshClientVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeshClientVerifier")
            .field("store", &self.store)
            .field("trusted", &self.trusted.as_ref().map(|_| "mesh config"))
            .finish()
    }
}

impl ClientCertVerifier for MeshClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        let peer = verify_chain(&self.store, end_entity, intermediates, now)?;
        // Our own certificate's trust domain is always the mesh's (istiod signs both); the
        // MeshConfig adds its trust domain and aliases when it names them.
        let own = peer.trust_domain == self.store.current().identity.trust_domain;
        let trusted = own || self.trusted.as_ref().is_some_and(|t| t(&peer.trust_domain));
        if !trusted {
            return Err(identity_mismatch(format!(
                "peer {peer} is in trust domain {}, neither the mesh's nor one of its \
                 trustDomainAliases (MeshConfig)",
                peer.trust_domain
            )));
        }
        Ok(ClientCertVerified::assertion())
    }

    tls13_signatures!();
}

/// Accepts a server whose chain leads to the mesh root and whose identity is the one the
/// destination must have; the server name (no SNI in HBONE) plays no part.
#[derive(Debug)]
struct MeshServerVerifier {
    store: Arc<CertStore>,
    expected: Identity,
}

impl ServerCertVerifier for MeshServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let peer = verify_chain(&self.store, end_entity, intermediates, now)?;
        if peer != self.expected {
            return Err(identity_mismatch(format!(
                "destination presented {peer}, expected {}",
                self.expected
            )));
        }
        Ok(ServerCertVerified::assertion())
    }

    tls13_signatures!();
}

/// Hands out the store's current certificate on every handshake.
#[derive(Debug)]
struct CurrentCert(Arc<CertStore>);

impl rustls::server::ResolvesServerCert for CurrentCert {
    fn resolve(
        &self,
        _hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.certified_key())
    }
}

impl rustls::client::ResolvesClientCert for CurrentCert {
    fn resolve(
        &self,
        _hints: &[&[u8]],
        _schemes: &[SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.certified_key())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// The HBONE listener's TLS config: requires a client certificate chained to the mesh root
/// and in our own certificate's trust domain, and presents the store's current certificate.
pub fn server_config(store: Arc<CertStore>) -> Result<Arc<rustls::ServerConfig>, Error> {
    server_config_with(store, None)
}

/// [`server_config`] for the waypoint's HBONE listener: a client's trust domain must be our
/// certificate's or one `trusted` accepts (the MeshConfig's trust domain or an alias, as
/// istiod's SAN prefixes for Envoy's inbound validation during a trust-domain migration).
pub fn mesh_server_config(
    store: Arc<CertStore>,
    trusted: TrustedDomains,
) -> Result<Arc<rustls::ServerConfig>, Error> {
    server_config_with(store, Some(trusted))
}

fn server_config_with(
    store: Arc<CertStore>,
    trusted: Option<TrustedDomains>,
) -> Result<Arc<rustls::ServerConfig>, Error> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(Arc::new(MeshClientVerifier {
            store: store.clone(),
            trusted,
        }))
        .with_cert_resolver(Arc::new(CurrentCert(store)));
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok(Arc::new(config))
}

/// A TLS config for dialing a destination that must present `expected`.
pub fn client_config(
    store: Arc<CertStore>,
    expected: Identity,
) -> Result<Arc<rustls::ClientConfig>, Error> {
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(MeshServerVerifier {
            store: store.clone(),
            expected,
        }))
        .with_client_cert_resolver(Arc::new(CurrentCert(store)));
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    // ztunnel sends no SNI; peers identify each other by certificate alone.
    config.enable_sni = false;
    Ok(Arc::new(config))
}

//! Certificates as rustls needs them, the SPIFFE identity in a certificate, and the store
//! that hands the current ones to every TLS handshake.

use arc_swap::ArcSwap;
use authz::Identity;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Istio's file name for the workload certificate chain, leaf first.
pub const CERT_CHAIN_FILE: &str = "cert-chain.pem";
/// Istio's file name for the leaf certificate's private key.
pub const KEY_FILE: &str = "key.pem";
/// Istio's file name for the mesh root certificate(s) that peers are verified against.
pub const ROOT_CERT_FILE: &str = "root-cert.pem";

/// Why a workload certificate could not be loaded or installed.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// A file of the certificate folder is missing or unreadable: check `--cert-dir` and the
    /// mount of Istio's certificate volume.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file that could not be read.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The certificate material does not parse or does not fit together (no SPIFFE URI, key
    /// not matching the leaf, a renewal with another identity); the current certificate, if
    /// any, stays in force.
    #[error("{what}: {reason}")]
    Invalid {
        /// Which part was rejected, with its source (file, folder or "the Istio CA's answer").
        what: String,
        /// What is wrong with it.
        reason: String,
    },
}

fn invalid(what: impl Into<String>, reason: impl std::fmt::Display) -> CertError {
    CertError::Invalid {
        what: what.into(),
        reason: reason.to_string(),
    }
}

/// A workload certificate (leaf first), its private key, the mesh roots, and what they say.
#[derive(Debug)]
pub struct WorkloadCert {
    /// The certificate chain presented in handshakes, leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    /// The leaf's private key (checked to match the leaf).
    pub key: PrivateKeyDer<'static>,
    /// The mesh roots peers' chains are verified against.
    pub roots: Vec<CertificateDer<'static>>,
    /// The SPIFFE identity of the leaf.
    pub identity: Identity,
    /// The leaf's validity start.
    pub not_before: SystemTime,
    /// The leaf's expiry; renewal is scheduled from it.
    pub not_after: SystemTime,
}

impl Clone for WorkloadCert {
    fn clone(&self) -> Self {
        WorkloadCert {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
            roots: self.roots.clone(),
            identity: self.identity.clone(),
            not_before: self.not_before,
            not_after: self.not_after,
        }
    }
}

impl WorkloadCert {
    /// Parses PEM text; `what` names the source in errors (a file, "the Istio CA").
    pub fn from_pem(
        what: &str,
        chain_pem: &str,
        key_pem: &str,
        root_pem: &str,
    ) -> Result<Self, CertError> {
        let chain = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| invalid(format!("{what}: certificate chain"), e))?;
        if chain.is_empty() {
            return Err(invalid(
                format!("{what}: certificate chain"),
                "no CERTIFICATE block",
            ));
        }
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
            .map_err(|e| invalid(format!("{what}: private key"), e))?;
        let roots = CertificateDer::pem_slice_iter(root_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| invalid(format!("{what}: root certificate"), e))?;
        if roots.is_empty() {
            return Err(invalid(
                format!("{what}: root certificate"),
                "no CERTIFICATE block",
            ));
        }
        let identity = spiffe_identity(&chain[0])
            .map_err(|e| invalid(format!("{what}: leaf certificate"), e))?;
        let (not_before, not_after) =
            validity(&chain[0]).map_err(|e| invalid(format!("{what}: leaf certificate"), e))?;
        // The key must belong to the leaf, or every handshake would fail later, one by one.
        let provider = rustls::crypto::ring::default_provider();
        let signing = provider
            .key_provider
            .load_private_key(key.clone_key())
            .map_err(|e| invalid(format!("{what}: private key"), e))?;
        rustls::sign::CertifiedKey::new(chain.clone(), signing)
            .keys_match()
            .map_err(|e| {
                invalid(
                    format!("{what}: private key"),
                    format!("does not match the leaf certificate: {e}"),
                )
            })?;
        Ok(WorkloadCert {
            chain,
            key,
            roots,
            identity,
            not_before,
            not_after,
        })
    }

    /// Loads Istio's three files from `dir`.
    pub fn load_dir(dir: &Path) -> Result<Self, CertError> {
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read_to_string(&path).map_err(|source| CertError::Read { path, source })
        };
        let chain = read(CERT_CHAIN_FILE)?;
        let key = read(KEY_FILE)?;
        let root = read(ROOT_CERT_FILE)?;
        WorkloadCert::from_pem(&dir.display().to_string(), &chain, &key, &root)
    }

    /// The signing key and chain in the form rustls' certificate resolvers hand out.
    pub fn certified_key(&self) -> Result<Arc<rustls::sign::CertifiedKey>, CertError> {
        let provider = rustls::crypto::ring::default_provider();
        let signing = provider
            .key_provider
            .load_private_key(self.key.clone_key())
            .map_err(|e| invalid("private key", e))?;
        Ok(Arc::new(rustls::sign::CertifiedKey::new(
            self.chain.clone(),
            signing,
        )))
    }

    /// Time left until expiry (zero once expired).
    pub fn remaining(&self, now: SystemTime) -> Duration {
        self.not_after.duration_since(now).unwrap_or(Duration::ZERO)
    }
}

/// The one SPIFFE URI SAN of an Istio certificate.
pub fn spiffe_identity(cert: &CertificateDer<'_>) -> Result<Identity, String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref())
        .map_err(|e| format!("not an X.509 certificate: {e}"))?;
    let san = parsed
        .subject_alternative_name()
        .map_err(|e| format!("bad subjectAltName extension: {e}"))?
        .ok_or("no subjectAltName with a spiffe:// URI")?;
    let mut uris = san.value.general_names.iter().filter_map(|n| match n {
        x509_parser::extensions::GeneralName::URI(u) if u.starts_with("spiffe://") => Some(*u),
        _ => None,
    });
    let uri = uris.next().ok_or("no spiffe:// URI in subjectAltName")?;
    if uris.next().is_some() {
        // Two identities in one certificate would make authorization ambiguous.
        return Err("more than one spiffe:// URI in subjectAltName".into());
    }
    uri.parse::<Identity>().map_err(|e| e.to_string())
}

fn validity(cert: &CertificateDer<'_>) -> Result<(SystemTime, SystemTime), String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref())
        .map_err(|e| format!("not an X.509 certificate: {e}"))?;
    let to_time = |t: x509_parser::time::ASN1Time| {
        let secs = t.timestamp();
        if secs >= 0 {
            UNIX_EPOCH + Duration::from_secs(secs as u64)
        } else {
            UNIX_EPOCH
        }
    };
    Ok((
        to_time(parsed.validity().not_before),
        to_time(parsed.validity().not_after),
    ))
}

/// The current workload certificate, replaced atomically on rotation. TLS configs resolve
/// through it per handshake, so established connections keep the certificate they began with.
#[derive(Debug)]
pub struct CertStore {
    current: ArcSwap<WorkloadCert>,
    key: ArcSwap<rustls::sign::CertifiedKey>,
}

impl CertStore {
    /// A store holding `cert`; fails if its key cannot sign.
    pub fn new(cert: WorkloadCert) -> Result<Arc<Self>, CertError> {
        let key = cert.certified_key()?;
        Ok(Arc::new(CertStore {
            current: ArcSwap::from_pointee(cert),
            key: ArcSwap::new(key),
        }))
    }

    /// The certificate in force now.
    pub fn current(&self) -> Arc<WorkloadCert> {
        self.current.load_full()
    }

    /// The current chain and signing key, as the TLS certificate resolvers hand it out.
    pub fn certified_key(&self) -> Arc<rustls::sign::CertifiedKey> {
        self.key.load_full()
    }

    /// Installs a renewed certificate. The identity may not change: a waypoint that suddenly
    /// presented another workload's identity would break every peer's authorization.
    pub fn replace(&self, cert: WorkloadCert) -> Result<(), CertError> {
        let old = self.current.load();
        if cert.identity != old.identity {
            return Err(invalid(
                "renewed certificate",
                format!(
                    "identity {} differs from the current {}",
                    cert.identity, old.identity
                ),
            ));
        }
        let key = cert.certified_key()?;
        self.key.store(key);
        self.current.store(Arc::new(cert));
        Ok(())
    }
}

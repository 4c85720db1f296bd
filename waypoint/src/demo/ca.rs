//! The demo's mesh CA: a throwaway root made when the demo starts, and workload certificates
//! shaped like the ones istiod signs (ECDSA P-256, empty subject, a single URI SAN
//! `spiffe://<td>/ns/<ns>/sa/<sa>`, EKU serverAuth + clientAuth), so the demo client, the
//! waypoint and the pods' HBONE endpoints verify each other the way they would in a mesh.

use crate::identity::{CertStore, WorkloadCert};
use anyhow::Context;
use authz::Identity;
use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Istio's default trust domain.
pub const TRUST_DOMAIN: &str = "cluster.local";

// The files Istio mounts for a workload, which `--cert-dir` reads.
use crate::identity::{CERT_CHAIN_FILE, KEY_FILE, ROOT_CERT_FILE};

/// Certificates start a little in the past, so a peer whose clock runs behind still accepts
/// them, and outlive any demo run by far: the demo never rotates them.
const BACKDATE: Duration = Duration::from_secs(3600);
const LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// A workload certificate and its private key, both PEM, as istiod hands them out.
#[derive(Debug, Clone)]
pub struct IssuedCert {
    /// The leaf certificate (the chain is the leaf alone: the root signs leaves directly).
    pub chain_pem: String,
    /// The leaf's private key (PKCS#8).
    pub key_pem: String,
}

/// A self-signed root CA for one trust domain.
pub struct DemoCa {
    trust_domain: String,
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl DemoCa {
    /// A fresh root (ECDSA P-256) for `trust_domain`.
    pub fn generate(trust_domain: &str) -> anyhow::Result<DemoCa> {
        let mut params = CertificateParams::default();
        // Istio's self-signed root carries the trust domain as its organization.
        let mut name = DistinguishedName::new();
        name.push(DnType::OrganizationName, trust_domain);
        name.push(DnType::CommonName, "waypoint demo root CA");
        params.distinguished_name = name;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = SystemTime::now();
        set_validity(&mut params, now - BACKDATE, now + LIFETIME)?;
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .context("cannot generate the demo root CA key")?;
        let issuer = CertifiedIssuer::self_signed(params, key)
            .context("cannot self-sign the demo root CA")?;
        Ok(DemoCa {
            trust_domain: trust_domain.to_owned(),
            issuer,
        })
    }

    /// The trust domain the root serves.
    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    /// The identity istiod would give service account `sa` of namespace `ns`.
    pub fn identity(&self, ns: &str, sa: &str) -> Identity {
        Identity::new(&self.trust_domain, ns, sa)
    }

    /// The root certificate, PEM: what `root-cert.pem` holds.
    pub fn root_pem(&self) -> String {
        self.issuer.pem()
    }

    /// A leaf for `identity`, signed by this root, valid for the demo's whole run.
    pub fn issue(&self, identity: &Identity) -> anyhow::Result<IssuedCert> {
        let now = SystemTime::now();
        self.issue_valid(identity, now - BACKDATE, now + LIFETIME)
    }

    /// A leaf for `identity` valid from `not_before` to `not_after`: tests use it for expired
    /// and not-yet-valid certificates, and for identities of another trust domain signed by
    /// this root.
    pub fn issue_valid(
        &self,
        identity: &Identity,
        not_before: SystemTime,
        not_after: SystemTime,
    ) -> anyhow::Result<IssuedCert> {
        let mut params = CertificateParams::default();
        // Istio workload certificates have an empty subject; the URI SAN is the identity.
        params.distinguished_name = DistinguishedName::new();
        let uri = identity.to_string();
        params.subject_alt_names = vec![SanType::URI(
            uri.as_str()
                .try_into()
                .with_context(|| format!("{uri} cannot be a URI SAN"))?,
        )];
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        set_validity(&mut params, not_before, not_after)?;
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .with_context(|| format!("cannot generate a key for {identity}"))?;
        let cert = params
            .signed_by(&key, &self.issuer)
            .with_context(|| format!("cannot sign a certificate for {identity}"))?;
        Ok(IssuedCert {
            chain_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// A certificate store holding a fresh leaf for `identity`, for an in-process peer.
    pub fn cert_store(&self, identity: &Identity) -> anyhow::Result<Arc<CertStore>> {
        let issued = self.issue(identity)?;
        let cert = WorkloadCert::from_pem(
            &format!("demo certificate for {identity}"),
            &issued.chain_pem,
            &issued.key_pem,
            &self.root_pem(),
        )?;
        Ok(CertStore::new(cert)?)
    }

    /// Writes the files Istio mounts for a workload (`cert-chain.pem`, `key.pem`,
    /// `root-cert.pem`) with a fresh leaf for `identity` into the existing folder `dir`.
    pub fn write_cert_dir(&self, dir: &Path, identity: &Identity) -> anyhow::Result<()> {
        self.write_issued(dir, &self.issue(identity)?)
    }

    /// Writes `issued` and this root in Istio's file layout into the existing folder `dir`,
    /// replacing what is there (a rotation, to a waypoint watching the folder).
    pub fn write_issued(&self, dir: &Path, issued: &IssuedCert) -> anyhow::Result<()> {
        for (name, contents) in [
            (CERT_CHAIN_FILE, issued.chain_pem.as_str()),
            (KEY_FILE, issued.key_pem.as_str()),
            (ROOT_CERT_FILE, self.root_pem().as_str()),
        ] {
            let path = dir.join(name);
            std::fs::write(&path, contents)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        Ok(())
    }
}

/// rcgen takes validity as the `time` crate's `OffsetDateTime`, which it does not re-export;
/// its epoch (`date_time_ymd(1970, 1, 1)`) plus a std duration gets there without a direct
/// dependency on `time`.
fn set_validity(
    params: &mut CertificateParams,
    not_before: SystemTime,
    not_after: SystemTime,
) -> anyhow::Result<()> {
    let since_epoch = |at: SystemTime| {
        at.duration_since(UNIX_EPOCH)
            .context("certificate times must be after 1970")
    };
    params.not_before = date_time_ymd(1970, 1, 1) + since_epoch(not_before)?;
    params.not_after = date_time_ymd(1970, 1, 1) + since_epoch(not_after)?;
    Ok(())
}

/// A private folder under the system's temporary directory, removed with everything in it
/// when dropped: the demo's certificate files live here.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Creates `<tmp>/<prefix>-<pid>-<nanos>`, readable by the current user only (it holds a
    /// private key).
    pub fn create(prefix: &str) -> anyhow::Result<TempDir> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .subsec_nanos();
        let path = std::env::temp_dir().join(format!("{prefix}-{}-{nanos:09}", std::process::id()));
        let mut builder = std::fs::DirBuilder::new();
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder
            .create(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        Ok(TempDir { path })
    }

    /// Where the folder is.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Err(error) = std::fs::remove_dir_all(&self.path) {
            tracing::warn!(path = %self.path.display(), %error, "cannot remove the demo's temporary folder");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_certificates_carry_the_identity_and_chain_to_the_root() -> anyhow::Result<()> {
        let ca = DemoCa::generate(TRUST_DOMAIN)?;
        let identity = ca.identity("travel-portal", "voyages");
        let issued = ca.issue(&identity)?;
        // from_pem checks the key matches the leaf and reads the SPIFFE identity back.
        let cert =
            WorkloadCert::from_pem("test", &issued.chain_pem, &issued.key_pem, &ca.root_pem())?;
        assert_eq!(cert.identity, identity);
        let now = SystemTime::now();
        assert!(cert.not_before < now && now < cert.not_after);
        let roots = {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(cert.roots[0].clone())?;
            roots
        };
        let parsed = rustls::server::ParsedCertificate::try_from(&cert.chain[0])?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &parsed,
            &roots,
            &[],
            rustls_pki_types::UnixTime::now(),
            rustls::crypto::ring::default_provider()
                .signature_verification_algorithms
                .all,
        )?;
        Ok(())
    }

    #[test]
    fn cert_dir_loads_as_the_waypoint_would() -> anyhow::Result<()> {
        let ca = DemoCa::generate(TRUST_DOMAIN)?;
        let identity = ca.identity("travel-agency", "waypoint");
        let path = {
            let dir = TempDir::create("waypoint-demo-test")?;
            ca.write_cert_dir(dir.path(), &identity)?;
            assert_eq!(WorkloadCert::load_dir(dir.path())?.identity, identity);
            dir.path().to_path_buf()
        };
        assert!(!path.exists(), "{} outlived its TempDir", path.display());
        Ok(())
    }
}

//! An Istio-style test PKI: one root CA per trust domain, and workload leaves shaped like the
//! ones istiod signs (ECDSA P-256, a single URI SAN `spiffe://<td>/ns/<ns>/sa/<sa>`, EKU
//! serverAuth + clientAuth, empty subject), so the HBONE peers in a test verify each other the
//! way ztunnel and a waypoint do in a mesh.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
};

/// A workload certificate and its private key, both PEM.
#[derive(Debug, Clone)]
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
}

/// A self-signed root CA (ECDSA P-256) for one trust domain.
pub struct TestCa {
    trust_domain: String,
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl TestCa {
    pub fn new(trust_domain: &str) -> TestCa {
        let mut params = CertificateParams::default();
        // Istio's self-signed root carries the trust domain as its organization.
        let mut name = DistinguishedName::new();
        name.push(DnType::OrganizationName, trust_domain);
        name.push(DnType::CommonName, "waypoint test root CA");
        params.distinguished_name = name;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = SystemTime::now();
        params.not_before =
            date_time_ymd(1970, 1, 1) + since_epoch(now - Duration::from_secs(24 * 3600));
        params.not_after =
            date_time_ymd(1970, 1, 1) + since_epoch(now + Duration::from_secs(365 * 24 * 3600));
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("root CA key");
        let issuer = CertifiedIssuer::self_signed(params, key).expect("self-signed root CA");
        TestCa {
            trust_domain: trust_domain.to_owned(),
            issuer,
        }
    }

    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    pub fn root_pem(&self) -> String {
        self.issuer.pem()
    }

    /// The SPIFFE id istiod would give service account `sa` of namespace `ns`.
    pub fn spiffe_id(&self, ns: &str, sa: &str) -> String {
        format!("spiffe://{}/ns/{ns}/sa/{sa}", self.trust_domain)
    }

    /// A leaf with exactly one URI SAN `spiffe://<td>/ns/<ns>/sa/<sa>`, EKU serverAuth +
    /// clientAuth, ECDSA P-256, valid from an hour ago to a day from now.
    pub fn issue(&self, ns: &str, sa: &str) -> Leaf {
        let now = SystemTime::now();
        self.issue_with(
            &self.spiffe_id(ns, sa),
            now - Duration::from_secs(3600),
            now + Duration::from_secs(24 * 3600),
        )
    }

    /// A leaf with any single URI SAN and validity window: for expired, not-yet-valid and
    /// foreign-trust-domain certificates.
    pub fn issue_with(&self, uri_san: &str, not_before: SystemTime, not_after: SystemTime) -> Leaf {
        let mut params = CertificateParams::default();
        // Istio workload certificates have an empty subject; the URI SAN is the identity.
        params.distinguished_name = DistinguishedName::new();
        params.subject_alt_names = vec![SanType::URI(
            uri_san.try_into().expect("URI SAN must be ASCII"),
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
        params.not_before = date_time_ymd(1970, 1, 1) + since_epoch(not_before);
        params.not_after = date_time_ymd(1970, 1, 1) + since_epoch(not_after);
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("leaf key");
        let cert = params.signed_by(&key, &self.issuer).expect("sign leaf");
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    /// Writes the files Istio mounts for a workload (`cert-chain.pem`, `key.pem`,
    /// `root-cert.pem`) into `dir`, creating it if needed.
    pub fn write_cert_dir(&self, dir: &Path, leaf: &Leaf) {
        std::fs::create_dir_all(dir).expect("create cert dir");
        for (name, contents) in [
            ("cert-chain.pem", leaf.cert_pem.as_str()),
            ("key.pem", leaf.key_pem.as_str()),
            ("root-cert.pem", self.root_pem().as_str()),
        ] {
            let path = dir.join(name);
            std::fs::write(&path, contents)
                .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        }
    }
}

/// rcgen takes validity as the `time` crate's `OffsetDateTime`, which it does not re-export;
/// its epoch (`date_time_ymd(1970, 1, 1)`) plus this std duration gets there without a direct
/// dependency on `time`.
fn since_epoch(at: SystemTime) -> Duration {
    at.duration_since(UNIX_EPOCH)
        .expect("certificate times are after 1970")
}

//! The tests' Istio-style PKI: the demo's CA (one root per trust domain, workload leaves shaped
//! like the ones istiod signs: ECDSA P-256, a single URI SAN `spiffe://<td>/ns/<ns>/sa/<sa>`,
//! EKU serverAuth + clientAuth, empty subject), so the HBONE peers in a test verify each other
//! the way ztunnel and a waypoint do in a mesh. The same CA issues the demo's and the
//! benchmark's certificates: one certificate shape for all. This wrapper only gives it the
//! tests' vocabulary (namespace and service account as strings, panics instead of errors).

use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use waypoint::demo::ca::DemoCa;
use waypoint::identity::CertStore;

/// A workload certificate and its private key, both PEM.
pub use waypoint::demo::ca::IssuedCert as Leaf;

/// A self-signed root CA (ECDSA P-256) for one trust domain.
pub struct TestCa {
    ca: DemoCa,
}

impl TestCa {
    /// A fresh root for `trust_domain`.
    pub fn new(trust_domain: &str) -> TestCa {
        TestCa {
            ca: DemoCa::generate(trust_domain).expect("test root CA"),
        }
    }

    /// The trust domain the root serves.
    pub fn trust_domain(&self) -> &str {
        self.ca.trust_domain()
    }

    /// The root certificate, PEM.
    pub fn root_pem(&self) -> String {
        self.ca.root_pem()
    }

    /// The SPIFFE id istiod would give service account `sa` of namespace `ns`.
    pub fn spiffe_id(&self, ns: &str, sa: &str) -> String {
        self.ca.identity(ns, sa).to_string()
    }

    /// A leaf with exactly one URI SAN `spiffe://<td>/ns/<ns>/sa/<sa>`, EKU serverAuth +
    /// clientAuth, ECDSA P-256, valid from an hour ago to a day from now.
    pub fn issue(&self, ns: &str, sa: &str) -> Leaf {
        self.ca
            .issue(&self.ca.identity(ns, sa))
            .expect("issue a leaf")
    }

    /// A leaf with any single SPIFFE URI SAN and validity window: for expired, not-yet-valid
    /// and foreign-trust-domain certificates.
    pub fn issue_with(&self, uri_san: &str, not_before: SystemTime, not_after: SystemTime) -> Leaf {
        let identity = uri_san.parse().expect("URI SAN must be a SPIFFE id");
        self.ca
            .issue_valid(&identity, not_before, not_after)
            .expect("issue a leaf")
    }

    /// A certificate store with a fresh leaf for `ns`/`sa`, for an in-process peer.
    pub fn cert_store(&self, ns: &str, sa: &str) -> Arc<CertStore> {
        self.ca
            .cert_store(&self.ca.identity(ns, sa))
            .expect("certificate store")
    }

    /// Writes the files Istio mounts for a workload (`cert-chain.pem`, `key.pem`,
    /// `root-cert.pem`) into `dir`, creating it if needed.
    pub fn write_cert_dir(&self, dir: &Path, leaf: &Leaf) {
        std::fs::create_dir_all(dir).expect("create cert dir");
        self.ca
            .write_issued(dir, leaf)
            .unwrap_or_else(|e| panic!("write {}: {e:#}", dir.display()));
    }
}

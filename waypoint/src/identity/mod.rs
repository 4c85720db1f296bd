//! The waypoint's own workload identity and the mesh's trust anchors: a certificate chain,
//! its key and the mesh root, loaded from Istio's files (`cert-chain.pem`, `key.pem`,
//! `root-cert.pem`) or issued by the Istio CA, and swapped in place when renewed so that new
//! handshakes use the new certificate while established connections carry on.

/// The Istio CA client that issues and renews the waypoint's certificate (`--ca-address`).
pub mod ca;
mod certs;

pub use certs::{
    spiffe_identity, CertError, CertStore, WorkloadCert, CERT_CHAIN_FILE, KEY_FILE, ROOT_CERT_FILE,
};

//! PeerAuthentication: whether plaintext is accepted on the waypoint's plain listener.
//!
//! CONTRACT (issue 12): the rbac helper replaces the placeholder bodies below.

use crate::spec::{PolicyIssue, PolicyRef};

/// An mTLS mode (`spec.mtls.mode`, `portLevelMtls[..].mode`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MtlsMode {
    /// Inherit from the parent (namespace, then mesh).
    #[default]
    Unset,
    /// Plaintext and mTLS both accepted.
    Permissive,
    /// mTLS only: plaintext refused.
    Strict,
    /// Plaintext only.
    Disable,
}

/// One compiled PeerAuthentication.
#[derive(Debug, Default)]
pub struct PeerAuthentication {
    /// Which policy.
    pub source: PolicyRef,
    /// Its mode for every port not listed in `portLevelMtls`.
    pub mode: MtlsMode,
    /// `portLevelMtls`.
    pub ports: Vec<(u16, MtlsMode)>,
    /// What is wrong with it.
    pub issues: Vec<PolicyIssue>,
}

impl PeerAuthentication {
    /// Compiles `spec`; an unknown mode is an issue and reads as STRICT (fail closed).
    pub fn compile(source: PolicyRef, spec: &serde_json::Value) -> PeerAuthentication {
        let _ = spec;
        PeerAuthentication {
            source,
            ..PeerAuthentication::default()
        }
    }
}

/// The mode in force on `port` given the policies from most to least specific (workload,
/// namespace, mesh root); PERMISSIVE when all are unset, as Istio's default.
pub fn effective_mode(most_specific_first: &[&PeerAuthentication], port: u16) -> MtlsMode {
    let _ = (most_specific_first, port);
    MtlsMode::Permissive
}

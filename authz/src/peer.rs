//! PeerAuthentication: whether plaintext is accepted on the waypoint's plain listener.
//!
//! Istio's inheritance: a workload policy's port-level mode, then its own mode, then the
//! namespace's policy, then the mesh-wide one (root namespace); UNSET defers to the next, and
//! PERMISSIVE applies when every level is unset. A mode that cannot be read is STRICT (fail
//! closed: plaintext refused) with an issue.

use crate::spec::{PolicyIssue, PolicyRef};

#[cfg(test)]
mod tests;

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
        let mut pa = PeerAuthentication {
            source,
            ..PeerAuthentication::default()
        };
        if !spec.is_object() && !spec.is_null() {
            pa.fail(
                "spec",
                "the spec must be an object; plaintext is refused until fixed",
            );
            pa.mode = MtlsMode::Strict;
            return pa;
        }
        pa.mode = pa.mtls(spec.get("mtls"), "spec.mtls");
        match spec.get("portLevelMtls") {
            None | Some(serde_json::Value::Null) => {}
            Some(serde_json::Value::Object(ports)) => {
                for (port, mtls) in ports {
                    let field = format!("spec.portLevelMtls[{port}]");
                    let mode = pa.mtls(Some(mtls), &field);
                    match port.trim().parse::<u16>() {
                        Ok(p) if p > 0 => pa.ports.push((p, mode)),
                        _ => pa.fail(
                            &field,
                            "the key must be a port number (1 to 65535); the entry is ignored",
                        ),
                    }
                }
            }
            Some(_) => {
                pa.fail(
                    "spec.portLevelMtls",
                    "must be a map of port number to {mode: …}; plaintext is refused on every port until fixed",
                );
                pa.mode = MtlsMode::Strict;
            }
        }
        pa.ports.sort_unstable_by_key(|(port, _)| *port);
        pa
    }

    fn fail(&mut self, field: &str, message: &str) {
        self.issues.push(PolicyIssue::error(field, message));
    }

    /// Reads `{mode: …}` at `field`; what cannot be read is STRICT.
    fn mtls(&mut self, v: Option<&serde_json::Value>, field: &str) -> MtlsMode {
        let mode = match v {
            None | Some(serde_json::Value::Null) => return MtlsMode::Unset,
            Some(serde_json::Value::Object(m)) => m.get("mode"),
            Some(_) => {
                self.fail(field, "must be an object {mode: STRICT|PERMISSIVE|DISABLE|UNSET}; read as STRICT until fixed");
                return MtlsMode::Strict;
            }
        };
        match mode.map(|m| m.as_str()) {
            None | Some(Some("UNSET")) => MtlsMode::Unset,
            Some(Some("PERMISSIVE")) => MtlsMode::Permissive,
            Some(Some("STRICT")) => MtlsMode::Strict,
            Some(Some("DISABLE")) => MtlsMode::Disable,
            _ => {
                self.fail(
                    &format!("{field}.mode"),
                    "unknown mode (STRICT, PERMISSIVE, DISABLE or UNSET); read as STRICT until fixed",
                );
                MtlsMode::Strict
            }
        }
    }
}

/// The mode in force on `port` given the policies from most to least specific (workload,
/// namespace, mesh root); PERMISSIVE when all are unset, as Istio's default.
pub fn effective_mode(most_specific_first: &[&PeerAuthentication], port: u16) -> MtlsMode {
    for pa in most_specific_first {
        let port_mode = pa.ports.iter().find(|(p, _)| *p == port).map(|(_, m)| *m);
        for mode in port_mode.into_iter().chain(std::iter::once(pa.mode)) {
            if mode != MtlsMode::Unset {
                return mode;
            }
        }
    }
    MtlsMode::Permissive
}

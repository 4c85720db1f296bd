//! Istio workload identities: `spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>`,
//! the URI SAN of every mesh certificate and the form AuthorizationPolicy `principals` take
//! (without the `spiffe://` scheme).

use std::fmt;
use std::str::FromStr;

/// A workload identity as Istio issues it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Identity {
    /// The mesh's trust domain, e.g. "cluster.local".
    pub trust_domain: String,
    /// The workload's Kubernetes namespace.
    pub namespace: String,
    /// The workload's Kubernetes service account.
    pub service_account: String,
}

/// Why a string is not an Istio workload identity; the message quotes it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// It is not a SPIFFE ID at all (no `spiffe://`).
    #[error("'{0}' is not a SPIFFE ID: it must start with spiffe://")]
    Scheme(String),
    /// A SPIFFE ID, but not `<trust-domain>/ns/<namespace>/sa/<service-account>` with
    /// non-empty, non-dot, unescaped segments.
    #[error("'{0}' is not an Istio workload identity: expected spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>")]
    Shape(String),
}

impl Identity {
    /// The identity of `service_account` in `namespace`; the parts are taken as given, unchecked.
    pub fn new(trust_domain: &str, namespace: &str, service_account: &str) -> Self {
        Identity {
            trust_domain: trust_domain.to_string(),
            namespace: namespace.to_string(),
            service_account: service_account.to_string(),
        }
    }

    /// The principal string AuthorizationPolicy `source.principals` matches:
    /// `<trust-domain>/ns/<namespace>/sa/<service-account>`.
    pub fn principal(&self) -> String {
        format!(
            "{}/ns/{}/sa/{}",
            self.trust_domain, self.namespace, self.service_account
        )
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "spiffe://{}", self.principal())
    }
}

impl FromStr for Identity {
    type Err = IdentityError;

    fn from_str(s: &str) -> Result<Self, IdentityError> {
        let rest = s
            .strip_prefix("spiffe://")
            .ok_or_else(|| IdentityError::Scheme(s.to_string()))?;
        let parts: Vec<&str> = rest.split('/').collect();
        match parts.as_slice() {
            [td, "ns", ns, "sa", sa] if [td, ns, sa].iter().all(|p| valid_segment(p)) => {
                Ok(Identity::new(td, ns, sa))
            }
            _ => Err(IdentityError::Shape(s.to_string())),
        }
    }
}

/// SPIFFE path segments are non-empty and not dot segments; a certificate whose SAN smuggles
/// `..` or an empty name must not parse into someone else's identity.
fn valid_segment(s: &str) -> bool {
    !s.is_empty() && s != "." && s != ".." && s.bytes().all(|b| b.is_ascii_graphic() && b != b'%')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_istio_identities() {
        let id: Identity = "spiffe://cluster.local/ns/travel-agency/sa/travels"
            .parse()
            .expect("valid");
        assert_eq!(
            id,
            Identity::new("cluster.local", "travel-agency", "travels")
        );
        assert_eq!(id.principal(), "cluster.local/ns/travel-agency/sa/travels");
        assert_eq!(
            id.to_string(),
            "spiffe://cluster.local/ns/travel-agency/sa/travels"
        );
    }

    #[test]
    fn rejects_everything_else() {
        for bad in [
            "cluster.local/ns/a/sa/b",
            "https://cluster.local/ns/a/sa/b",
            "spiffe://cluster.local/ns/a",
            "spiffe://cluster.local/ns/a/sa/b/extra",
            "spiffe://cluster.local/ns//sa/b",
            "spiffe://cluster.local/ns/../sa/b",
            "spiffe://cluster.local/namespace/a/sa/b",
            "spiffe://cluster.local/ns/a/sa/b%2f",
            "spiffe:///ns/a/sa/b",
        ] {
            assert!(bad.parse::<Identity>().is_err(), "{bad} parsed");
        }
    }
}

//! AuthorizationPolicy: compiled rules, evaluated in Istio's order (CUSTOM, then DENY, then
//! ALLOW; AUDIT only logged; `istio.io/dry-run` only shadowed), failing closed. Also Istio's
//! path normalization and `remote.ip`.
//!
//! CONTRACT (issue 12): the rbac helper replaces the placeholder bodies below; the signatures
//! are what the waypoint's pipeline, `explain` and the snapshot builder call.

use crate::attrs::{RequestAttrs, TrustDomains};
use crate::spec::{PolicyIssue, PolicyRef};
use std::net::IpAddr;
use std::sync::Arc;

/// `spec.action`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PolicyAction {
    /// ALLOW (the default).
    Allow,
    /// DENY.
    Deny,
    /// AUDIT: logged, never changes the outcome.
    Audit,
    /// CUSTOM: delegated to the named ext_authz provider.
    Custom {
        /// `spec.provider.name`.
        provider: String,
    },
}

/// One compiled AuthorizationPolicy.
#[derive(Debug)]
pub struct AuthorizationPolicy {
    /// Which policy.
    pub source: PolicyRef,
    /// Its action.
    pub action: PolicyAction,
    /// `istio.io/dry-run: "true"`: evaluated and logged, never enforced.
    pub dry_run: bool,
    /// What is wrong with it; errors mean parts of it are in force fail closed.
    pub issues: Vec<PolicyIssue>,
}

impl AuthorizationPolicy {
    /// Compiles `spec` (the policy's `spec` as written). Never fails: what cannot be
    /// evaluated is compiled fail closed and reported in `issues`.
    pub fn compile(
        source: PolicyRef,
        spec: &serde_json::Value,
        dry_run: bool,
        trust: &TrustDomains,
    ) -> AuthorizationPolicy {
        let _ = (spec, trust);
        AuthorizationPolicy {
            source,
            action: PolicyAction::Allow,
            dry_run,
            issues: Vec::new(),
        }
    }
}

/// The policies in force for one target (the waypoint's and the destination service's), ready
/// to evaluate.
#[derive(Debug, Default)]
pub struct PolicySet {
    /// Every policy, in a stable order (namespace, name).
    pub policies: Vec<Arc<AuthorizationPolicy>>,
}

/// A CUSTOM policy whose rules matched: the request must be checked by `provider`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomMatch {
    /// The ext_authz provider's name.
    pub provider: String,
    /// The policy that matched (the first, if several use the same provider).
    pub policy: PolicyRef,
}

/// The outcome of DENY and ALLOW evaluation, with why.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// Whether the request may go on.
    pub allowed: bool,
    /// The policy, rule and field that decided; `None` when nothing was in force or no ALLOW
    /// policy exists.
    pub decided_by: Option<Decision>,
    /// Every policy evaluated, in order, one line each, for `waypoint explain` and the debug
    /// log.
    pub trace: Vec<String>,
    /// What AUDIT and dry-run policies would have done, for the log.
    pub shadow: Vec<String>,
}

/// Which policy decided, and by what.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// The policy.
    pub policy: PolicyRef,
    /// Its action.
    pub action: PolicyAction,
    /// The rule index that matched (DENY/ALLOW), or `None` when the verdict comes from no ALLOW
    /// rule matching.
    pub rule: Option<usize>,
    /// The deciding field path and what it compared, e.g.
    /// `rules[0].to[0].operation.paths: "/admin/*" matched "/admin/x"`.
    pub detail: String,
}

impl PolicySet {
    /// The set of `policies` (their order does not matter: evaluation orders them).
    pub fn new(policies: Vec<Arc<AuthorizationPolicy>>) -> PolicySet {
        PolicySet { policies }
    }

    /// True when no policy is in force: everything is allowed without evaluation.
    pub fn is_empty(&self) -> bool {
        self.policies.is_empty()
    }

    /// The first enforced CUSTOM policy whose rules match `attrs`, if any.
    pub fn custom(&self, attrs: &RequestAttrs<'_>) -> Option<CustomMatch> {
        let _ = attrs;
        None
    }

    /// DENY, then ALLOW (AUDIT and dry-run policies shadowed) for `attrs`.
    pub fn evaluate(&self, attrs: &RequestAttrs<'_>) -> Verdict {
        let _ = attrs;
        Verdict {
            allowed: true,
            decided_by: None,
            trace: Vec::new(),
            shadow: Vec::new(),
        }
    }
}

/// Why a request path cannot be normalized (Envoy answers 400).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadPath(pub String);

/// Istio's default path normalization (BASE): `\` to `/`, percent-decoded unreserved
/// characters, dot segments removed, `//` kept, `%2F` kept encoded. Takes a path with its
/// query and returns it normalized (query untouched); the backend receives the result.
pub fn normalize_path(path_and_query: &str) -> Result<String, BadPath> {
    Ok(path_and_query.to_string())
}

/// `remote.ip` as Envoy computes it with `use_remote_address: false` and no trusted hops: the
/// rightmost X-Forwarded-For address, else the connection's source.
pub fn remote_ip(x_forwarded_for: Option<&str>, source_ip: Option<IpAddr>) -> Option<IpAddr> {
    let _ = x_forwarded_for;
    source_ip
}

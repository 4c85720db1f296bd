//! What every `security.istio.io` policy shares: its name, how it is attached, and the issues
//! found while compiling it.
//!
//! The waypoint keeps security policies' specs as JSON values and the modules of this crate
//! compile them, so that an invalid AuthorizationPolicy is loaded fail closed and reported
//! instead of rejecting the whole folder (Istio's behaviour).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// `namespace/name` of a policy, as verdicts and reports name it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct PolicyRef {
    /// The policy's kind (`AuthorizationPolicy`, `RequestAuthentication`, …).
    pub kind: String,
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
}

impl fmt::Display for PolicyRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
    }
}

/// `targetRef`/`targetRefs[]` of a policy (Istio's PolicyTargetReference).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetRef {
    /// API group: `gateway.networking.k8s.io` for Gateway and GatewayClass, `""` for Service,
    /// `networking.istio.io` for ServiceEntry.
    #[serde(default)]
    pub group: String,
    /// Gateway, GatewayClass, Service or ServiceEntry.
    pub kind: String,
    /// The target's name.
    pub name: String,
    /// Must be empty or the policy's own namespace (Istio forbids cross-namespace targets).
    #[serde(default)]
    pub namespace: Option<String>,
}

/// How a security policy is attached, read from its spec before the kind-specific compile.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attachment {
    /// `selector.matchLabels`: workload selection, which does not apply at a waypoint.
    #[serde(default)]
    pub selector: Option<Selector>,
    /// `targetRef` (deprecated single form).
    #[serde(default)]
    pub target_ref: Option<TargetRef>,
    /// `targetRefs`.
    #[serde(default)]
    pub target_refs: Vec<TargetRef>,
}

/// `selector` of a policy.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Selector {
    /// The labels a workload must carry.
    #[serde(default)]
    pub match_labels: BTreeMap<String, String>,
}

impl Attachment {
    /// Reads the attachment fields of a policy's spec; other fields are left to the compile.
    pub fn of(spec: &serde_json::Value) -> Result<Attachment, String> {
        Attachment::deserialize(spec).map_err(|e| e.to_string())
    }

    /// Every target, the single `targetRef` first.
    pub fn targets(&self) -> impl Iterator<Item = &TargetRef> {
        self.target_ref.iter().chain(self.target_refs.iter())
    }
}

/// How bad an issue is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Severity {
    /// The policy (or the part named) is in force fail closed: an ALLOW rule that cannot be
    /// evaluated never matches, a DENY rule always does; a JWT rule verifies nothing.
    Error,
    /// In force as written, but probably not as meant.
    Warning,
}

/// Something wrong with a policy, naming the field and what to do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PolicyIssue {
    /// How bad it is.
    pub severity: Severity,
    /// The field path, e.g. `spec.rules[0].when[1].key`.
    pub field: String,
    /// What is wrong and what to do.
    pub message: String,
}

impl PolicyIssue {
    /// An error at `field`.
    pub fn error(field: impl Into<String>, message: impl Into<String>) -> Self {
        PolicyIssue {
            severity: Severity::Error,
            field: field.into(),
            message: message.into(),
        }
    }

    /// A warning at `field`.
    pub fn warning(field: impl Into<String>, message: impl Into<String>) -> Self {
        PolicyIssue {
            severity: Severity::Warning,
            field: field.into(),
            message: message.into(),
        }
    }
}

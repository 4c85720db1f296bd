//! Problems found while compiling a route, in a form the config layer can report as route status,
//! log lines and `/config_dump` entries without parsing messages.

/// How much of the user's intent survives the problem.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Severity {
    /// The route cannot be honoured exactly: some part of it is dropped or fails closed.
    Error,
    /// The route is honoured; something the user wrote has no effect here.
    Warning,
}

/// Machine-readable reason, named after Gateway API route condition reasons where one exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum IssueReason {
    /// A value breaks the Gateway API's own rules (a bad regex, an out-of-range weight, a
    /// conflicting pair of fields): what a CRD validation or webhook would have refused.
    Invalid,
    /// ResolvedRefs=False `BackendNotFound`: the backendRef names a Service or port that does
    /// not exist; its share of the traffic gets 500.
    BackendNotFound,
    /// ResolvedRefs=False `InvalidKind`: the backendRef is not a core Service.
    InvalidKind,
    /// ResolvedRefs=False `RefNotPermitted`: a backendRef crosses namespaces without a
    /// ReferenceGrant allowing it.
    RefNotPermitted,
    /// Valid Gateway API that this waypoint does not implement (or ignores for Service
    /// parents); the message says what happens instead.
    Unsupported,
    /// Accepted=False (`NoMatchingParent` where no finer reason applies): a parentRef does not
    /// attach (no such parent or port, or its listeners refuse the route), so no traffic
    /// reaches the route through that parent.
    NoMatchingParent,
    /// A field this crate does not know; reserved, nothing reports it yet.
    UnknownField,
}

/// One problem found in a route, with the JSON-ish field path a user can find in their YAML,
/// e.g. field = "spec.rules[1].matches[0].path.value", message = "invalid regular expression: ...".
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Issue {
    /// Whether the route is still honoured as written.
    pub severity: Severity,
    /// The class of problem, for status conditions and for deciding what still loads.
    pub reason: IssueReason,
    /// Where in the resource, e.g. "spec.rules[1].matches[0].path.value".
    pub field: String,
    /// What is wrong and what the waypoint does instead, for an operator to act on.
    pub message: String,
}

impl Issue {
    /// An issue of [`Severity::Error`]: part of the route is dropped or fails closed.
    pub fn error(
        reason: IssueReason,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            severity: Severity::Error,
            reason,
            field: field.into(),
            message: message.into(),
        }
    }

    /// An issue of [`Severity::Warning`]: the route works, but `field` has no effect.
    pub fn warning(
        reason: IssueReason,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            severity: Severity::Warning,
            reason,
            field: field.into(),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Issue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let severity = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(
            f,
            "{severity} ({:?}) at {}: {}",
            self.reason, self.field, self.message
        )
    }
}

/// A policy value `resilience` could not honour is an invalid field of the route.
impl From<resilience::PolicyIssue> for Issue {
    fn from(i: resilience::PolicyIssue) -> Self {
        match i.warning {
            true => Issue::warning(IssueReason::Invalid, i.field, i.message),
            false => Issue::error(IssueReason::Invalid, i.field, i.message),
        }
    }
}

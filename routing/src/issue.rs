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
    Invalid,
    BackendNotFound,
    InvalidKind,
    RefNotPermitted,
    Unsupported,
    NoMatchingParent,
    UnknownField,
}

/// One problem found in a route, with the JSON-ish field path a user can find in their YAML,
/// e.g. field = "spec.rules[1].matches[0].path.value", message = "invalid regular expression: ...".
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Issue {
    pub severity: Severity,
    pub reason: IssueReason,
    pub field: String,
    pub message: String,
}

impl Issue {
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

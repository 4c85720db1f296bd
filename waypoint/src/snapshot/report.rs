//! The report of one build: how every object fared, and the problems of the whole folder.

use super::GatewayStatus;
use crate::config::{LoadError, ObjectRef, Origin};
use routing::{Issue, IssueReason, Severity};
use serde::Serialize;

/// How one object fared when the snapshot was built.
#[derive(Clone, Debug, Serialize)]
pub struct ResourceStatus {
    pub origin: Origin,
    pub object: ObjectRef,
    pub state: State,
    pub issues: Vec<StatusIssue>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum State {
    Accepted,
    /// Read but not acted on; the reason says why (a kind not supported yet, another waypoint's).
    Ignored(String),
    Error,
}

#[derive(Clone, Debug, Serialize)]
pub struct StatusIssue {
    pub severity: Severity,
    /// Set for route problems whose runtime behaviour Gateway API defines (a backend that
    /// cannot be used gets 500s, an unattached parent gets no traffic): the rest of the
    /// configuration still loads. Every other error keeps the last good configuration.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<IssueReason>,
    pub field: String,
    pub message: String,
}

impl StatusIssue {
    /// Whether Gateway API says what happens at run time (see [`StatusIssue::reason`]).
    pub fn runtime_defined(&self) -> bool {
        matches!(
            self.reason,
            Some(
                IssueReason::BackendNotFound
                    | IssueReason::RefNotPermitted
                    | IssueReason::InvalidKind
                    | IssueReason::NoMatchingParent
            )
        )
    }
}

impl From<Issue> for StatusIssue {
    fn from(i: Issue) -> Self {
        StatusIssue {
            severity: i.severity,
            reason: Some(i.reason),
            field: i.field,
            message: i.message,
        }
    }
}

/// Everything `check`, the startup log and `/config_dump` say about one build.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    pub file_errors: Vec<LoadError>,
    pub statuses: Vec<ResourceStatus>,
    /// Problems of the whole folder, not of one object (no Gateway to serve, say).
    pub global_errors: Vec<String>,
    /// Gateway API status of the Gateways of our class and their routes.
    pub gateway_status: GatewayStatus,
    /// How long reading and parsing the folder took, and building the snapshot from the parsed
    /// resources (validation, route attachment, compiled route tables), each in milliseconds.
    pub load_ms: f64,
    pub compile_ms: f64,
}

impl Report {
    /// Errors that stop a folder from loading: all but the route problems Gateway API gives a
    /// runtime meaning (see [`StatusIssue::reason`]).
    pub fn blocking_error_count(&self) -> usize {
        self.file_errors.len()
            + self.global_errors.len()
            + self
                .statuses
                .iter()
                .filter(|s| {
                    s.state == State::Error
                        && s.issues
                            .iter()
                            .any(|i| i.severity == Severity::Error && !i.runtime_defined())
                })
                .count()
    }

    pub fn error_count(&self) -> usize {
        self.file_errors.len()
            + self.global_errors.len()
            + self
                .statuses
                .iter()
                .filter(|s| s.state == State::Error)
                .count()
    }

    /// One line per error, each naming file, document, object, field and reason.
    pub fn error_lines(&self) -> Vec<String> {
        let mut lines: Vec<String> = self.global_errors.clone();
        lines.extend(self.file_errors.iter().map(|e| e.to_string()));
        lines.extend(self.issue_lines(Severity::Error));
        lines
    }

    pub fn warning_lines(&self) -> Vec<String> {
        self.issue_lines(Severity::Warning).collect()
    }

    fn issue_lines(&self, severity: Severity) -> impl Iterator<Item = String> + '_ {
        self.statuses.iter().flat_map(move |s| {
            s.issues
                .iter()
                .filter(move |i| i.severity == severity)
                .map(move |i| {
                    format!(
                        "{} document {}: {}: field {}: {}",
                        s.origin.file.display(),
                        s.origin.document,
                        s.object,
                        i.field,
                        one_line(&i.message)
                    )
                })
        })
    }

    /// Kinds read but not acted on yet, for the startup log.
    pub fn unsupported(&self) -> Vec<&ResourceStatus> {
        self.statuses
            .iter()
            .filter(|s| matches!(&s.state, State::Ignored(r) if r.starts_with("kind")))
            .collect()
    }
}

/// Some messages (a regex parser's, say) span lines; a log line must not.
fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

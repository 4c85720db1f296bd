//! The report of one build: how every object fared, and the problems of the whole folder.

use super::GatewayStatus;
use crate::config::{LoadError, ObjectRef, Origin};
use routing::{Issue, IssueReason, Severity};
use serde::Serialize;

/// How one object fared when the snapshot was built.
#[derive(Clone, Debug, Serialize)]
pub struct ResourceStatus {
    /// The file and document it was read from.
    pub origin: Origin,
    /// Its kind, namespace and name.
    pub object: ObjectRef,
    /// What the build did with it.
    pub state: State,
    /// Its errors and warnings, each naming a field.
    pub issues: Vec<StatusIssue>,
}

/// What a build did with one object.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum State {
    /// Read and acted on.
    Accepted,
    /// Read but not acted on; the reason says why (a kind not supported yet, another waypoint's).
    Ignored(String),
    /// At least one issue is an error.
    Error,
    /// A security policy (or the MeshConfig's ext_authz providers) with errors: in force fail
    /// closed where it attaches (an ALLOW rule in error never matches, a DENY rule always
    /// does), reported loudly, and — unlike [`State::Error`] — it does not keep the folder from
    /// loading (issue 12, Istio's behaviour for security policies).
    FailClosed,
}

/// One problem with one field of an object.
#[derive(Clone, Debug, Serialize)]
pub struct StatusIssue {
    /// An error, or a warning that does not stop the object from being used.
    pub severity: Severity,
    /// Set for route problems whose runtime behaviour Gateway API defines (a backend that
    /// cannot be used gets 500s, an unattached parent gets no traffic): the rest of the
    /// configuration still loads. Every other error keeps the last good configuration.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<IssueReason>,
    /// The field's path, as `spec.rules[0].backendRefs[1]`.
    pub field: String,
    /// What is wrong, and what to do about it.
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
    /// Files, documents and objects that could not be read.
    pub file_errors: Vec<LoadError>,
    /// One entry per object read, in file and document order.
    pub statuses: Vec<ResourceStatus>,
    /// Problems of the whole folder, not of one object (no Gateway to serve, say).
    pub global_errors: Vec<String>,
    /// Gateway API status of the Gateways of our class and their routes.
    pub gateway_status: GatewayStatus,
    /// How long reading and parsing the folder took, and building the snapshot from the parsed
    /// resources (validation, route attachment, compiled route tables), each in milliseconds.
    pub load_ms: f64,
    /// See `load_ms`.
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

    /// Every error: unreadable files, global errors and objects in state `Error`.
    pub fn error_count(&self) -> usize {
        self.file_errors.len()
            + self.global_errors.len()
            + self
                .statuses
                .iter()
                .filter(|s| s.state == State::Error)
                .count()
    }

    /// One line per error, each naming file, document, object, field and reason. Errors of
    /// objects loaded fail closed are in [`Report::fail_closed_lines`] instead.
    pub fn error_lines(&self) -> Vec<String> {
        let mut lines: Vec<String> = self.global_errors.clone();
        lines.extend(self.file_errors.iter().map(|e| e.to_string()));
        lines.extend(self.issue_lines(Severity::Error, |s| s.state != State::FailClosed));
        lines
    }

    /// One line per error of an object in state [`State::FailClosed`]: in force fail closed,
    /// not blocking the load, and still to be shown as loudly as an error.
    pub fn fail_closed_lines(&self) -> Vec<String> {
        self.issue_lines(Severity::Error, |s| s.state == State::FailClosed)
            .collect()
    }

    /// One line per warning, formed as [`Report::error_lines`] forms them.
    pub fn warning_lines(&self) -> Vec<String> {
        self.issue_lines(Severity::Warning, |_| true).collect()
    }

    fn issue_lines(
        &self,
        severity: Severity,
        of: fn(&ResourceStatus) -> bool,
    ) -> impl Iterator<Item = String> + '_ {
        self.statuses
            .iter()
            .filter(move |s| of(s))
            .flat_map(move |s| {
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

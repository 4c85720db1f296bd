//! A rule's `timeouts` and `retry`: how long a request may take and when it is tried again.

use std::time::Duration;

use gateway_api::experimental::httproutes::{HttpRouteRulesRetry, HttpRouteRulesTimeouts};

use crate::issue::{Issue, IssueReason};

/// A rule's timeouts; None is "no timeout" (the field was left out or set to "0s").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Timeouts {
    /// From the start of the request until the response is complete, across all retries.
    pub request: Option<Duration>,
    /// One attempt at a backend.
    pub backend_request: Option<Duration>,
}

/// A rule's retry policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Retry {
    /// Response statuses that make the attempt fail and be tried again.
    pub codes: Vec<u16>,
    /// How many times a request may be retried after its first attempt.
    pub attempts: u32,
    /// The wait before each retry; None retries at once.
    pub backoff: Option<Duration>,
}

/// Retries when a route asks for retry without saying how many: Istio's default, which this
/// waypoint replaces.
pub const DEFAULT_RETRY_ATTEMPTS: u32 = 2;

impl Retry {
    /// Whether an attempt that got `status` should be retried, `retries_done` retries in.
    pub fn should_retry(&self, status: u16, retries_done: u32) -> bool {
        retries_done < self.attempts && self.codes.contains(&status)
    }

    pub(crate) fn compile(
        spec: &HttpRouteRulesRetry,
        field: &str,
        issues: &mut Vec<Issue>,
    ) -> Self {
        let mut codes = Vec::new();
        for (i, code) in spec.codes.iter().flatten().enumerate() {
            match u16::try_from(*code) {
                Ok(code @ 400..=599) if !codes.contains(&code) => codes.push(code),
                Ok(400..=599) => {}
                _ => issues.push(Issue::error(
                    IssueReason::Invalid,
                    format!("{field}.codes[{i}]"),
                    format!("retry code {code} is not an error status (400-599); it is ignored"),
                )),
            }
        }
        let attempts = match spec.attempts {
            None => DEFAULT_RETRY_ATTEMPTS,
            Some(n) => u32::try_from(n).unwrap_or_else(|_| {
                issues.push(Issue::error(
                    IssueReason::Invalid,
                    format!("{field}.attempts"),
                    format!("attempts {n} is out of range; the request is not retried"),
                ));
                0
            }),
        };
        let backoff = spec
            .backoff
            .as_deref()
            .and_then(|b| parse_field_duration(b, &format!("{field}.backoff"), issues));
        Self {
            codes,
            attempts,
            backoff,
        }
    }
}

impl Timeouts {
    pub(crate) fn compile(
        spec: &HttpRouteRulesTimeouts,
        field: &str,
        issues: &mut Vec<Issue>,
    ) -> Self {
        let request = spec
            .request
            .as_deref()
            .and_then(|d| parse_field_duration(d, &format!("{field}.request"), issues));
        let backend_request = spec
            .backend_request
            .as_deref()
            .and_then(|d| parse_field_duration(d, &format!("{field}.backendRequest"), issues));
        if let (Some(request), Some(backend)) = (request, backend_request) {
            if backend > request {
                issues.push(Issue::error(
                    IssueReason::Invalid,
                    format!("{field}.backendRequest"),
                    format!(
                        "backendRequest ({backend:?}) must not be longer than request \
                         ({request:?}); the request timeout still applies"
                    ),
                ));
            }
        }
        Self {
            request,
            backend_request,
        }
    }
}

/// Parses a Gateway API duration (GEP-2257: up to four of `<1-5 digits><h|m|s|ms>`, e.g.
/// "1h", "500ms", "1m30s"). Zero means "disabled", so it is `Ok(None)`.
pub fn parse_duration(value: &str) -> Result<Option<Duration>, String> {
    let parsed: gateway_api::Duration = value.parse()?;
    let millis = u64::try_from(parsed.as_millis()).map_err(|e| e.to_string())?;
    Ok((millis > 0).then(|| Duration::from_millis(millis)))
}

fn parse_field_duration(value: &str, field: &str, issues: &mut Vec<Issue>) -> Option<Duration> {
    parse_duration(value).unwrap_or_else(|e| {
        issues.push(Issue::error(
            IssueReason::Invalid,
            field.to_owned(),
            format!(
                "{value:?} is not a Gateway API duration ({e}); write e.g. 10s, 500ms or 1m30s; \
                 it is ignored"
            ),
        ));
        None
    })
}

#[cfg(test)]
mod tests;

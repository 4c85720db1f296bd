//! A rule's `timeouts` (GEP-1742): how long a request, and each attempt at a backend, may take.

use std::time::Duration;

use gateway_api::experimental::httproutes::HttpRouteRulesTimeouts;

use crate::policy::PolicyIssue;

/// A rule's timeouts; None is "no timeout" (the field was left out or set to "0s").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Timeouts {
    /// From the start of the request until the response is complete, across all retries.
    pub request: Option<Duration>,
    /// One attempt at a backend: HTTPRoute `backendRequest`, VirtualService
    /// `retries.perTryTimeout`. A per-try timeout that fires is retried when the retry policy
    /// says so (5xx, gateway-error, reset); the request timeout never is.
    pub backend_request: Option<Duration>,
}

impl Timeouts {
    /// Compiles a rule's `timeouts`; a problem is reported against `field` and the part it
    /// concerns is left out (no timeout), as the route's status says.
    pub fn compile(
        spec: &HttpRouteRulesTimeouts,
        field: &str,
        issues: &mut Vec<PolicyIssue>,
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
                issues.push(PolicyIssue::new(
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

    /// How long the next attempt may take, `elapsed` into the request: the per-attempt timeout
    /// capped by what is left of the request timeout (zero when that is used up). None when
    /// the rule sets neither.
    pub fn attempt_deadline(&self, elapsed: Duration) -> Option<Duration> {
        let remaining = self.request.map(|t| t.saturating_sub(elapsed));
        match (remaining, self.backend_request) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
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

/// [`parse_duration`] for a field of a route: an invalid value is reported and ignored.
pub(crate) fn parse_field_duration(
    value: &str,
    field: &str,
    issues: &mut Vec<PolicyIssue>,
) -> Option<Duration> {
    parse_duration(value).unwrap_or_else(|e| {
        issues.push(PolicyIssue::new(
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

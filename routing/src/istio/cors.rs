//! VirtualService `corsPolicy` → routing's [`Cors`], so both route kinds answer preflights
//! and add `Access-Control-*` headers through one implementation.

use super::virtual_service::CorsPolicy;
use crate::cors::{Cors, CorsParts};
use crate::issue::{Issue, IssueReason};
use crate::request_match::{full_match_regex, invalid_regex, TextMatch};

/// Compiles `spec` at `field` (`spec.http[0].corsPolicy`).
pub(super) fn compile(spec: &CorsPolicy, field: &str, issues: &mut Vec<Issue>) -> Cors {
    let mut origins = Vec::new();
    for (i, origin) in spec.allow_origins.iter().enumerate() {
        let at = format!("allowOrigins[{i}]");
        match (&origin.exact, &origin.prefix, &origin.regex) {
            (Some(exact), None, None) => origins.push((at, Ok(exact.as_str()))),
            (None, Some(prefix), None) => {
                origins.push((at, Err(TextMatch::Prefix(prefix.clone()))));
            }
            (None, None, Some(re)) => match full_match_regex(re) {
                Ok(re) => origins.push((at, Err(TextMatch::RegularExpression(re)))),
                Err(e) => issues.push(invalid_regex(format!("{field}.{at}.regex"), &e)),
            },
            _ => issues.push(Issue::error(
                IssueReason::Invalid,
                format!("{field}.{at}"),
                "set exactly one of exact, prefix and regex",
            )),
        }
    }
    let max_age_seconds = match spec
        .max_age
        .as_deref()
        .map(resilience::parse_istio_duration)
    {
        None => None,
        Some(Ok(d)) => Some(i32::try_from(d.as_secs()).unwrap_or(i32::MAX)),
        Some(Err(e)) => {
            issues.push(Issue::error(
                IssueReason::Invalid,
                format!("{field}.maxAge"),
                format!("{e}; no max age is sent"),
            ));
            None
        }
    };
    let forward_unmatched_preflights = match spec.unmatched_preflights.as_deref() {
        None | Some("UNSPECIFIED" | "FORWARD") => true,
        Some("IGNORE") => false,
        Some(other) => {
            issues.push(Issue::error(
                IssueReason::Invalid,
                format!("{field}.unmatchedPreflights"),
                format!("{other:?} is not FORWARD or IGNORE; preflights are forwarded"),
            ));
            true
        }
    };
    Cors::compile_parts(
        CorsParts {
            origins,
            methods: &spec.allow_methods,
            headers: &spec.allow_headers,
            expose_headers: &spec.expose_headers,
            max_age_seconds,
            allow_credentials: spec.allow_credentials.unwrap_or(false),
            forward_unmatched_preflights,
        },
        field,
        issues,
    )
}

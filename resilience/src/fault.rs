//! Fault injection (VirtualService `http[].fault`): a rule's delay and abort, compiled as istiod
//! hands them to Envoy's fault filter, and the per-request decision, made once before any
//! upstream work from random draws the caller passes in.

use std::time::Duration;

use crate::istio::{parse_istio_duration, FaultAbort, FaultDelay, HttpFaultInjection, Percent};
use crate::policy::PolicyIssue;

/// Envoy's denominator for the fractional percentages istiod writes (`MILLION`).
pub const PER_MILLION: u32 = 1_000_000;

/// A rule's fault injection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaultPolicy {
    /// Delay some requests before forwarding them.
    pub delay: Option<DelayFault>,
    /// Answer some requests locally instead of forwarding them.
    pub abort: Option<AbortFault>,
}

/// `fault.delay`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DelayFault {
    /// How long a delayed request waits.
    pub delay: Duration,
    /// The share of requests delayed, in millionths.
    pub per_million: u32,
}

/// `fault.abort`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AbortFault {
    /// The local answer.
    pub answer: AbortAnswer,
    /// The share of requests aborted, in millionths.
    pub per_million: u32,
}

/// What an aborted request is answered with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AbortAnswer {
    /// This HTTP status.
    Http(u16),
    /// This gRPC status code, in a 200 response (as Envoy's fault filter answers).
    Grpc(u32),
}

/// What fault injection does to one request: Envoy delays first, then aborts, so both can
/// apply.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultDecision {
    /// Wait this long before going on.
    pub delay: Option<Duration>,
    /// Then answer locally with this.
    pub abort: Option<AbortAnswer>,
}

/// gRPC status names as Istio's `grpcStatus` takes them, with their codes.
const GRPC_STATUSES: [(&str, u32); 17] = [
    ("OK", 0),
    ("CANCELLED", 1),
    ("UNKNOWN", 2),
    ("INVALID_ARGUMENT", 3),
    ("DEADLINE_EXCEEDED", 4),
    ("NOT_FOUND", 5),
    ("ALREADY_EXISTS", 6),
    ("PERMISSION_DENIED", 7),
    ("RESOURCE_EXHAUSTED", 8),
    ("FAILED_PRECONDITION", 9),
    ("ABORTED", 10),
    ("OUT_OF_RANGE", 11),
    ("UNIMPLEMENTED", 12),
    ("INTERNAL", 13),
    ("UNAVAILABLE", 14),
    ("DATA_LOSS", 15),
    ("UNAUTHENTICATED", 16),
];

impl FaultPolicy {
    /// Compiles a rule's `fault`; None when neither part can be applied. A delay or abort with
    /// no percentage injects nothing, as on Istio's waypoint (istiod leaves Envoy's percentage
    /// unset, which is 0 %); it is reported so the author can add `percentage.value: 100`.
    pub fn compile(
        spec: &HttpFaultInjection,
        field: &str,
        issues: &mut Vec<PolicyIssue>,
    ) -> Option<Self> {
        let delay = spec
            .delay
            .as_ref()
            .and_then(|d| compile_delay(d, &format!("{field}.delay"), issues));
        let abort = spec
            .abort
            .as_ref()
            .and_then(|a| compile_abort(a, &format!("{field}.abort"), issues));
        (delay.is_some() || abort.is_some()).then_some(FaultPolicy { delay, abort })
    }

    /// The decision for one request; `draw` gives uniformly random numbers (one per part, the
    /// delay's first), as Envoy draws once per fault.
    pub fn decide(&self, mut draw: impl FnMut() -> u64) -> FaultDecision {
        let hit =
            |per_million: u32, value: u64| value % u64::from(PER_MILLION) < u64::from(per_million);
        FaultDecision {
            delay: self
                .delay
                .filter(|d| hit(d.per_million, draw()))
                .map(|d| d.delay),
            abort: self
                .abort
                .filter(|a| hit(a.per_million, draw()))
                .map(|a| a.answer),
        }
    }
}

fn compile_delay(
    spec: &FaultDelay,
    field: &str,
    issues: &mut Vec<PolicyIssue>,
) -> Option<DelayFault> {
    let Some(text) = spec.fixed_delay.as_deref() else {
        issues.push(PolicyIssue::new(
            format!("{field}.fixedDelay"),
            "a delay needs fixedDelay (exponentialDelay is not supported by Istio); no delay is injected",
        ));
        return None;
    };
    let delay = match parse_istio_duration(text) {
        Ok(d) if d >= Duration::from_millis(1) => d,
        Ok(_) => {
            issues.push(PolicyIssue::new(
                format!("{field}.fixedDelay"),
                format!(
                    "fixedDelay {text:?} is under 1ms, which Istio refuses; no delay is injected"
                ),
            ));
            return None;
        }
        Err(e) => {
            issues.push(PolicyIssue::new(
                format!("{field}.fixedDelay"),
                format!("{e}; no delay is injected"),
            ));
            return None;
        }
    };
    // istiod prefers `percentage`, else the deprecated integer `percent` (0 when unset).
    let per_million = match (&spec.percentage, spec.percent) {
        (Some(p), _) => percentage(p, &format!("{field}.percentage"), issues)?,
        (None, Some(p)) => match u32::try_from(p).ok().filter(|p| *p <= 100) {
            Some(p) => p * (PER_MILLION / 100),
            None => {
                issues.push(PolicyIssue::new(
                    format!("{field}.percent"),
                    format!("percent {p} is not between 0 and 100; no delay is injected"),
                ));
                return None;
            }
        },
        (None, None) => {
            issues.push(unset_percentage(field, "delayed"));
            0
        }
    };
    Some(DelayFault { delay, per_million })
}

fn compile_abort(
    spec: &FaultAbort,
    field: &str,
    issues: &mut Vec<PolicyIssue>,
) -> Option<AbortFault> {
    let answer = match (
        spec.http_status,
        spec.grpc_status.as_deref(),
        &spec.http2_error,
    ) {
        (Some(status), _, _) => match u16::try_from(status)
            .ok()
            .filter(|s| (200..600).contains(s))
        {
            Some(s) => AbortAnswer::Http(s),
            None => {
                issues.push(PolicyIssue::new(
                    format!("{field}.httpStatus"),
                    format!("httpStatus {status} is not an HTTP status (200-599); no request is aborted"),
                ));
                return None;
            }
        },
        (None, Some(name), _) => match GRPC_STATUSES.iter().find(|(n, _)| *n == name) {
            Some((_, code)) => AbortAnswer::Grpc(*code),
            None => {
                issues.push(PolicyIssue::new(
                    format!("{field}.grpcStatus"),
                    format!("{name:?} is not a gRPC status name such as UNAVAILABLE or INTERNAL; no request is aborted"),
                ));
                return None;
            }
        },
        (None, None, Some(_)) => {
            issues.push(PolicyIssue::new(
                format!("{field}.http2Error"),
                "http2Error aborts are not supported by Istio; use httpStatus or grpcStatus. No request is aborted",
            ));
            return None;
        }
        (None, None, None) => {
            issues.push(PolicyIssue::new(
                field,
                "an abort needs httpStatus or grpcStatus; no request is aborted",
            ));
            return None;
        }
    };
    let per_million = match &spec.percentage {
        Some(p) => percentage(p, &format!("{field}.percentage"), issues)?,
        None => {
            issues.push(unset_percentage(field, "aborted"));
            0
        }
    };
    Some(AbortFault {
        answer,
        per_million,
    })
}

/// A `Percent` in millionths, as istiod converts it (`value × 10 000`, truncated).
fn percentage(p: &Percent, field: &str, issues: &mut Vec<PolicyIssue>) -> Option<u32> {
    if !(0.0..=100.0).contains(&p.value) {
        issues.push(PolicyIssue::new(
            field,
            format!(
                "percentage {} is not between 0 and 100; the fault is not injected",
                p.value
            ),
        ));
        return None;
    }
    // In range, so the product fits; `as` truncates as istiod's uint32 conversion does.
    Some((p.value * 10_000.0) as u32)
}

fn unset_percentage(field: &str, verb: &str) -> PolicyIssue {
    PolicyIssue::warning(
        format!("{field}.percentage"),
        format!(
            "no percentage: as on Istio's waypoint, no request is {verb}; \
             set percentage.value (e.g. 100) to inject the fault"
        ),
    )
}

#[cfg(test)]
mod tests;

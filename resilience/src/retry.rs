//! Retries: a rule's retry policy, compiled once as istiod would hand it to Envoy, and the
//! per-request state that decides, attempt by attempt, whether the next one happens and how
//! long to wait before it.
//!
//! The proxy asks this module at each point pingora offers (response header, attempt failure,
//! next attempt); it keeps no retry bookkeeping of its own.

use std::time::Duration;

use gateway_api::experimental::httproutes::HttpRouteRulesRetry;

use crate::backoff::Backoff;
use crate::istio::{parse_istio_duration, HttpRetry};
use crate::policy::PolicyIssue;
use crate::retry_on::{AttemptFailure, ResponseView, RetryOn, RetryOnSet};
use crate::timeouts::parse_field_duration;

/// Retries when a policy does not say how many: Istio's default.
pub const DEFAULT_RETRY_ATTEMPTS: u32 = 2;

/// The most tries (first attempt included) a request gets, whatever a policy's `attempts`
/// asks: it bounds the work one request can cause upstream (the proxy hands it to pingora as
/// `max_retries`, which counts the first attempt too).
pub const MAX_TRIES: usize = 16;

/// The conditions of Istio's default policy (istiod's `DefaultPolicy`), and of a Gateway API
/// `retry` before its codes are added.
const ISTIO_DEFAULT_RETRY_ON: [RetryOn; 4] = [
    RetryOn::ConnectFailure,
    RetryOn::RefusedStream,
    RetryOn::Unavailable,
    RetryOn::Cancelled,
];

/// A rule's retry policy, in Envoy's terms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The conditions that make a failed attempt be retried.
    pub retry_on: RetryOnSet,
    /// The statuses `retriable-status-codes` retries.
    pub codes: Vec<u16>,
    /// How many times a request may be retried after its first attempt.
    pub attempts: u32,
    /// The wait before each retry.
    pub backoff: Backoff,
    /// Each retry goes to an endpoint not tried yet when there is one (Envoy's
    /// `previous_hosts` predicate). A DestinationRule with consistent hashing turns it off,
    /// as istiod does.
    pub avoid_previous_hosts: bool,
}

impl Default for RetryPolicy {
    /// Istio's default policy, which istiod puts on every route that does not set its own:
    /// 2 retries on connect-failure, refused-stream, unavailable, cancelled and a 503, each on
    /// another endpoint.
    fn default() -> Self {
        let mut retry_on = RetryOnSet::of(&ISTIO_DEFAULT_RETRY_ON);
        retry_on.insert(RetryOn::RetriableStatusCodes);
        RetryPolicy {
            retry_on,
            codes: vec![503],
            attempts: DEFAULT_RETRY_ATTEMPTS,
            backoff: Backoff::default(),
            avoid_previous_hosts: true,
        }
    }
}

impl RetryPolicy {
    /// The policy istiod gives a waypoint's inbound default route (a service port no route
    /// governs): 2 retries of a request reset before it reached the endpoint, on any endpoint.
    pub fn no_route() -> Self {
        RetryPolicy {
            retry_on: RetryOnSet::of(&[RetryOn::ResetBeforeRequest]),
            codes: Vec::new(),
            avoid_previous_hosts: false,
            ..RetryPolicy::default()
        }
    }

    /// Whether an attempt whose response header is `response` fails for a retry.
    pub fn retries_response(&self, response: &ResponseView) -> bool {
        response.is_retried(self.retry_on, &self.codes)
    }

    /// Whether an attempt that ended with `failure` (no response header) fails for a retry.
    pub fn retries_failure(&self, failure: AttemptFailure) -> bool {
        self.retry_on.any(failure.retried_under())
    }

    /// Compiles a Gateway API rule's `retry` as istiod converts it: connect-failure,
    /// refused-stream, unavailable and cancelled, plus the listed codes; 2 retries unless
    /// `attempts` says otherwise (0 turns retries off); `backoff` is the base interval.
    /// Invalid values are reported against `field` and left out.
    pub fn compile(
        spec: &HttpRouteRulesRetry,
        field: &str,
        issues: &mut Vec<PolicyIssue>,
    ) -> Option<Self> {
        let mut codes = Vec::new();
        for (i, code) in spec.codes.iter().flatten().enumerate() {
            match u16::try_from(*code) {
                Ok(code @ 400..=599) if !codes.contains(&code) => codes.push(code),
                Ok(400..=599) => {}
                _ => issues.push(PolicyIssue::new(
                    format!("{field}.codes[{i}]"),
                    format!("retry code {code} is not an error status (400-599); it is ignored"),
                )),
            }
        }
        let attempts = match spec.attempts {
            None => DEFAULT_RETRY_ATTEMPTS,
            Some(n) => attempts_in_range(n, &format!("{field}.attempts"), issues)?,
        };
        if attempts == 0 {
            return None;
        }
        let backoff = spec
            .backoff
            .as_deref()
            .and_then(|b| parse_field_duration(b, &format!("{field}.backoff"), issues))
            .map_or_else(Backoff::default, Backoff::with_base);
        let mut retry_on = RetryOnSet::of(&ISTIO_DEFAULT_RETRY_ON);
        if !codes.is_empty() {
            retry_on.insert(RetryOn::RetriableStatusCodes);
        }
        Some(RetryPolicy {
            retry_on,
            codes,
            attempts,
            backoff,
            avoid_previous_hosts: true,
        })
    }

    /// Compiles a VirtualService rule's `retries` as istiod's `ConvertPolicy` does: no
    /// `retries` is Istio's default policy; `attempts` 0 (or unset) turns retries off; a
    /// `retryOn` replaces the default conditions, its numbers becoming retriable status codes;
    /// `backoff` is the base interval; `retryIgnorePreviousHosts: false` lets a retry reuse an
    /// endpoint. `perTryTimeout` is returned beside the policy, for the rule's timeouts.
    pub fn from_istio(
        spec: Option<&HttpRetry>,
        field: &str,
        issues: &mut Vec<PolicyIssue>,
    ) -> (Option<Self>, Option<Duration>) {
        let Some(spec) = spec else {
            return (Some(RetryPolicy::default()), None);
        };
        let attempts = spec.attempts.unwrap_or(0);
        let Some(attempts) =
            attempts_in_range(attempts.into(), &format!("{field}.attempts"), issues)
                .filter(|n| *n > 0)
        else {
            if spec.attempts.is_none() && spec != &HttpRetry::default() {
                issues.push(PolicyIssue::warning(
                    format!("{field}.attempts"),
                    "retries without attempts turns retries off (Istio's attempts defaults to \
                     0); set attempts to retry",
                ));
            }
            return (None, None);
        };
        let mut policy = RetryPolicy {
            attempts,
            ..RetryPolicy::default()
        };
        if let Some(retry_on) = spec.retry_on.as_deref().filter(|r| !r.trim().is_empty()) {
            (policy.retry_on, policy.codes) =
                parse_retry_on(retry_on, &format!("{field}.retryOn"), issues);
        }
        if let Some(avoid) = spec.retry_ignore_previous_hosts {
            policy.avoid_previous_hosts = avoid;
        }
        if spec.retry_remote_localities == Some(true) {
            issues.push(PolicyIssue::warning(
                format!("{field}.retryRemoteLocalities"),
                "the waypoint has no locality information; retries choose among all endpoints",
            ));
        }
        if let Some(base) =
            istio_duration(spec.backoff.as_deref(), &format!("{field}.backoff"), issues)
        {
            policy.backoff = Backoff::with_base(base);
        }
        let per_try = istio_duration(
            spec.per_try_timeout.as_deref(),
            &format!("{field}.perTryTimeout"),
            issues,
        );
        (Some(policy), per_try)
    }
}

/// `attempts` as a count of retries, reported when negative and capped at what a request can
/// get; None when negative.
fn attempts_in_range(n: i64, field: &str, issues: &mut Vec<PolicyIssue>) -> Option<u32> {
    let max = u32::try_from(MAX_TRIES - 1).unwrap_or(u32::MAX);
    match u32::try_from(n) {
        Err(_) => {
            issues.push(PolicyIssue::new(
                field,
                format!("attempts {n} is negative; write 0 to turn retries off. The request is not retried"),
            ));
            None
        }
        Ok(n) if n > max => {
            issues.push(PolicyIssue::warning(
                field,
                format!("attempts {n} is more than the waypoint allows; requests are retried at most {max} times"),
            ));
            Some(max)
        }
        Ok(n) => Some(n),
    }
}

/// A non-zero Istio duration, or None (unset, zero, or reported as invalid).
fn istio_duration(
    value: Option<&str>,
    field: &str,
    issues: &mut Vec<PolicyIssue>,
) -> Option<Duration> {
    match parse_istio_duration(value?) {
        Ok(d) if d.is_zero() => None,
        Ok(d) => Some(d),
        Err(e) => {
            issues.push(PolicyIssue::new(field, format!("{e}; it is ignored")));
            None
        }
    }
}

/// `retryOn` as istiod splits it: names are conditions, numbers that are HTTP statuses are
/// retriable status codes (which add `retriable-status-codes`); anything else is reported.
fn parse_retry_on(
    text: &str,
    field: &str,
    issues: &mut Vec<PolicyIssue>,
) -> (RetryOnSet, Vec<u16>) {
    let mut set = RetryOnSet::default();
    let mut codes = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        if let Some(condition) = RetryOn::from_name(part) {
            if condition == RetryOn::RetriableHeaders {
                issues.push(PolicyIssue::warning(
                    field,
                    "retriable-headers needs a list of headers, which Istio's API cannot give; \
                     it never matches",
                ));
            }
            set.insert(condition);
        } else if let Some(code) = part.parse::<u16>().ok().filter(|c| (100..600).contains(c)) {
            if !codes.contains(&code) {
                codes.push(code);
            }
        } else {
            issues.push(PolicyIssue::new(
                field,
                format!(
                    "'{part}' is neither a retry condition (5xx, gateway-error, reset, \
                     connect-failure, refused-stream, retriable-4xx, retriable-status-codes, \
                     cancelled, deadline-exceeded, internal, resource-exhausted, unavailable…) \
                     nor an HTTP status; it is ignored"
                ),
            ));
        }
    }
    if !codes.is_empty() {
        set.insert(RetryOn::RetriableStatusCodes);
    }
    (set, codes)
}

/// One request's retry bookkeeping, from its first attempt to its last.
///
/// A retry happens in three steps: the attempt's outcome is judged
/// ([`RetryState::on_response`] for a response header, [`RetryState::on_failure`] for a failure
/// without one); the retry is let through only if the request body can be sent again
/// ([`RetryState::confirm`]); the next attempt waits out the backoff first
/// ([`RetryState::before_attempt`]).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RetryState {
    retries_done: u32,
    /// The last attempt failed for a retry that has not started yet.
    pending: bool,
    /// An attempt failed in a way the policy retries, but no retry was left (Envoy's URX).
    limit_exceeded: bool,
}

impl RetryState {
    /// An attempt's response header arrived: true when the policy retries it, in which case
    /// the caller fails the attempt (nothing has gone downstream yet) so it is tried again.
    /// The response of the last allowed attempt is let through (and marks the limit hit).
    pub fn on_response(&mut self, policy: Option<&RetryPolicy>, response: &ResponseView) -> bool {
        let retried = policy.filter(|p| p.retries_response(response));
        self.take_retry(retried)
    }

    /// An attempt failed before a response header: true when the policy retries it.
    pub fn on_failure(&mut self, policy: Option<&RetryPolicy>, failure: AttemptFailure) -> bool {
        let retried = policy.filter(|p| p.retries_failure(failure));
        self.take_retry(retried)
    }

    fn take_retry(&mut self, policy: Option<&RetryPolicy>) -> bool {
        let Some(policy) = policy else {
            return false;
        };
        if self.retries_done >= policy.attempts {
            self.limit_exceeded = true;
            return false;
        }
        self.retries_done += 1;
        self.pending = true;
        true
    }

    /// Whether the retry decided for the failed attempt goes ahead: only when the request
    /// body can be sent again (`body_replayable`); otherwise the failure is final.
    pub fn confirm(&mut self, body_replayable: bool) -> bool {
        if self.pending && !body_replayable {
            self.pending = false;
            self.retries_done -= 1;
        }
        self.pending
    }

    /// Whether a retry was decided and the next attempt is it.
    pub fn is_pending(&self) -> bool {
        self.pending
    }

    /// An attempt is about to start: the backoff to wait first when it is a retry, drawn with
    /// the uniformly random `draw`.
    pub fn before_attempt(&mut self, policy: Option<&RetryPolicy>, draw: u64) -> Option<Duration> {
        if !std::mem::take(&mut self.pending) {
            return None;
        }
        policy.map(|p| p.backoff.delay(self.retries_done, draw))
    }

    /// Retries started so far.
    pub fn retries_done(&self) -> u32 {
        self.retries_done
    }

    /// Whether an attempt failed in a way the policy retries after the retries ran out
    /// (Envoy's URX flag).
    pub fn limit_exceeded(&self) -> bool {
        self.limit_exceeded
    }
}

#[cfg(test)]
mod tests;

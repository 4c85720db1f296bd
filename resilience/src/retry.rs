//! Retries (GEP-1731): a rule's retry policy, compiled once, and the per-request state that
//! decides, attempt by attempt, whether the next one happens and how long to wait before it.
//!
//! The proxy asks this module at each point pingora offers (response header, attempt failure,
//! connect failure, next attempt); it keeps no retry bookkeeping of its own.

use std::time::Duration;

use gateway_api::experimental::httproutes::HttpRouteRulesRetry;

use crate::policy::PolicyIssue;
use crate::timeouts::parse_field_duration;

/// Retries when a route asks for retry without saying how many: Istio's default, so a route
/// behaves as it would on the Envoy waypoint this one replaces.
pub const DEFAULT_RETRY_ATTEMPTS: u32 = 2;

/// The most tries (first attempt included) a request gets, whatever a route's `retry.attempts`
/// asks: it bounds the work one request can cause upstream (the proxy hands it to pingora as
/// `max_retries`, which counts the first attempt too).
pub const MAX_TRIES: usize = 16;

/// A rule's retry policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Response statuses that make the attempt fail and be tried again.
    pub codes: Vec<u16>,
    /// How many times a request may be retried after its first attempt.
    pub attempts: u32,
    /// The wait before each retry; None retries at once.
    pub backoff: Option<Duration>,
}

impl RetryPolicy {
    /// Whether an attempt that got `status` should be retried, `retries_done` retries in.
    pub fn should_retry(&self, status: u16, retries_done: u32) -> bool {
        retries_done < self.attempts && self.codes.contains(&status)
    }

    /// Compiles a rule's `retry`; invalid codes and attempts are reported against `field` and
    /// left out, as the route's status says.
    pub fn compile(spec: &HttpRouteRulesRetry, field: &str, issues: &mut Vec<PolicyIssue>) -> Self {
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
            Some(n) => u32::try_from(n).unwrap_or_else(|_| {
                issues.push(PolicyIssue::new(
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

/// One request's retry bookkeeping, from its first attempt to its last.
///
/// A retry happens in three steps, each a method: a response status the policy retries on fails
/// the attempt ([`RetryState::on_response`]); the failure is let through as retryable only if
/// the request body can be sent again ([`RetryState::on_attempt_error`]); the next attempt waits
/// out the backoff first ([`RetryState::before_attempt`]).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RetryState {
    retries_done: u32,
    /// The status that failed the last attempt for a retry, until the retry starts.
    pending: Option<u16>,
}

impl RetryState {
    /// An attempt's response header arrived with `status`: true when the policy retries it, in
    /// which case the caller fails the attempt (nothing has gone downstream yet) so it is tried
    /// again. The last allowed attempt's response is let through.
    pub fn on_response(&mut self, policy: Option<&RetryPolicy>, status: u16) -> bool {
        match policy {
            Some(p) if p.should_retry(status, self.retries_done) => {
                self.retries_done += 1;
                self.pending = Some(status);
                true
            }
            _ => false,
        }
    }

    /// An attempt failed: whether the failure may be retried. Only a status the policy retries
    /// on is (Gateway API retries whatever the method), and only when the request body can be
    /// replayed; any other failure is final.
    pub fn on_attempt_error(&mut self, body_replayable: bool) -> bool {
        let retry = self.pending.is_some() && body_replayable;
        if !retry {
            self.pending = None;
        }
        retry
    }

    /// A connection to the endpoint could not be made: never retried, since route retries are
    /// on response status; the failure is reported (503 UF) instead.
    pub fn on_connect_failure(&mut self) -> bool {
        self.pending = None;
        false
    }

    /// An attempt is about to start: the backoff to wait first when it is a retry.
    pub fn before_attempt(&mut self, policy: Option<&RetryPolicy>) -> Option<Duration> {
        self.pending.take()?;
        policy.and_then(|p| p.backoff)
    }

    /// Retries started so far.
    pub fn retries_done(&self) -> u32 {
        self.retries_done
    }
}

#[cfg(test)]
mod tests;

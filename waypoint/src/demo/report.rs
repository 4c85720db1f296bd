//! What the demo's traffic generator saw: status counts, response flags, latency, version split,
//! and the requests each pod received (hence retries and outlier ejections) per destination;
//! the tables printed every second and at the end; and the run's verdict.
//!
//! The verdict tells the answers the configured policy intends from failures: a fault-injection
//! abort (flag FI) or a circuit-breaker overflow (UO) is what the resilience YAML asks for, and
//! a 401 or 403 to a request the security YAML must refuse (an expired token, a denied path) is
//! what that asks for, so they do not fail the run; any other answer but a 2xx does, including
//! a 503 from a flaky pod that retries and outlier detection should have hidden, a 401 to a
//! valid token, and a 2xx to a request the policies should have refused.

mod tables;

use std::collections::BTreeMap;
use std::time::Duration;

use http::{HeaderMap, StatusCode};
use telemetry::{LatencyHistogram, ResponseFlag, REASON_HEADER};

use super::security::Denial;

pub(super) use tables::{write_final, write_second};

/// Responses by status class, plus requests that got no response at all. An answer the
/// configured policy intends (see [`intended`]) is counted in `intended`, not in its class.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatusCounts {
    /// 2xx answers: the only ones the demo counts as success.
    pub success: u64,
    /// 3xx answers.
    pub redirect: u64,
    /// 4xx answers, but the intended ones.
    pub client_error: u64,
    /// 5xx answers (but the intended ones), and any status outside 2xx–4xx.
    pub server_error: u64,
    /// Connect failures, broken connections and timeouts.
    pub transport_error: u64,
    /// 2xx answers to requests the security policies should have refused: a policy not in
    /// force.
    pub unenforced: u64,
    /// Non-2xx answers the configured policy intends: fault-injection aborts (FI),
    /// circuit-breaker overflows (UO), and the 401/403 a security policy gives a request it
    /// must refuse.
    pub intended: u64,
}

impl StatusCounts {
    /// Every request sent.
    pub fn total(&self) -> u64 {
        self.success
            + self.redirect
            + self.client_error
            + self.server_error
            + self.transport_error
            + self.unenforced
            + self.intended
    }

    /// Requests that got no 2xx (a 3xx, a 4xx, a 5xx or no answer at all, intended or not), or
    /// a 2xx the security policies should have refused.
    pub fn failures(&self) -> u64 {
        self.total() - self.success
    }

    /// Requests that got no 2xx for a reason no policy explains. The travel portals only ask
    /// for what the travel services have, so such an answer means the waypoint routed or
    /// forwarded wrongly (a waypoint answering 404 to everything must not pass), or let a
    /// failure through that its retries and outlier detection should have hidden.
    pub fn unexpected(&self) -> u64 {
        self.failures() - self.intended
    }

    /// `2 3xx, 1 transport error`: the unexpected failures by kind, for the verdict's message.
    fn failure_kinds(&self) -> String {
        [
            (self.redirect, "3xx"),
            (self.client_error, "4xx"),
            (self.server_error, "5xx"),
            (self.transport_error, "transport errors"),
            (
                self.unenforced,
                "2xx that the security policies should have refused",
            ),
        ]
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, kind)| format!("{n} {kind}"))
        .collect::<Vec<_>>()
        .join(", ")
    }

    fn record(&mut self, outcome: &Outcome) {
        let counter = match outcome {
            Outcome::Status(status, _) if status.is_success() => &mut self.success,
            Outcome::Status(_, Some(flag)) if intended(*flag) => &mut self.intended,
            Outcome::Status(status, _) if status.is_redirection() => &mut self.redirect,
            Outcome::Status(status, _) if status.is_client_error() => &mut self.client_error,
            Outcome::Status(..) => &mut self.server_error,
            Outcome::Transport(_) => &mut self.transport_error,
            Outcome::Refused(_) => &mut self.intended,
            Outcome::NotRefused => &mut self.unenforced,
        };
        *counter += 1;
    }

    fn add(&mut self, other: &StatusCounts) {
        self.success += other.success;
        self.redirect += other.redirect;
        self.client_error += other.client_error;
        self.server_error += other.server_error;
        self.transport_error += other.transport_error;
        self.unenforced += other.unenforced;
        self.intended += other.intended;
    }
}

/// Whether a non-2xx answer with `flag` is what the configured policy asks for: a fault
/// injection abort, or a circuit breaker turning away what exceeds its limits.
pub fn intended(flag: ResponseFlag) -> bool {
    matches!(
        flag,
        ResponseFlag::FaultInjected | ResponseFlag::UpstreamOverflow
    )
}

/// The outcome of a request that got `status` with `flag` and `body`: for a request the
/// policies must refuse with `denial`, whether they did.
pub(super) fn classify(
    denial: Option<Denial>,
    status: StatusCode,
    flag: Option<ResponseFlag>,
    body: &[u8],
) -> Outcome {
    match denial {
        Some(denial) if denial.is(status, body) => Outcome::Refused(denial),
        Some(_) if status.is_success() => Outcome::NotRefused,
        _ => Outcome::Status(status, flag),
    }
}

/// The refusals the security policies intended, by kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DenialCounts {
    /// 401s from request authentication to bad tokens.
    pub unauthenticated: u64,
    /// 403s from an AuthorizationPolicy.
    pub forbidden: u64,
}

impl DenialCounts {
    fn record(&mut self, denial: Denial) {
        match denial {
            Denial::Unauthenticated => self.unauthenticated += 1,
            Denial::Forbidden => self.forbidden += 1,
        }
    }

    fn add(&mut self, other: &DenialCounts) {
        self.unauthenticated += other.unauthenticated;
        self.forbidden += other.forbidden;
    }

    /// Requests that never reached a pod because a policy refused them.
    fn total(&self) -> u64 {
        self.unauthenticated + self.forbidden
    }
}

/// Answers by the response flag the waypoint gave them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlagCounts {
    /// `UO`: circuit-breaker overflows.
    pub overflow: u64,
    /// `UT`: route or per-try timeouts.
    pub timeout: u64,
    /// `FI`: fault-injection aborts.
    pub fault: u64,
    /// Any other flag, by Envoy's short name (`URX`, `UH`…).
    pub other: BTreeMap<&'static str, u64>,
}

impl FlagCounts {
    fn record(&mut self, flag: ResponseFlag) {
        match flag {
            ResponseFlag::UpstreamOverflow => self.overflow += 1,
            ResponseFlag::UpstreamRequestTimeout => self.timeout += 1,
            ResponseFlag::FaultInjected => self.fault += 1,
            other => *self.other.entry(other.as_str()).or_default() += 1,
        }
    }
}

/// The flag a response carries, as a client can tell: the waypoint's `x-waypoint-reason`
/// header on its own answers; else Envoy's ways, so that the same client reads an Envoy
/// waypoint: `x-envoy-overloaded: true` on an overflow, a 504 on a timeout, and the body of a
/// fault-injection abort.
pub fn flag_of(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Option<ResponseFlag> {
    if let Some(flag) = headers
        .get(REASON_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| ResponseFlag::from_short_name(v.trim()))
    {
        return Some(flag);
    }
    if headers
        .get("x-envoy-overloaded")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"true"))
    {
        return Some(ResponseFlag::UpstreamOverflow);
    }
    if status == StatusCode::GATEWAY_TIMEOUT {
        return Some(ResponseFlag::UpstreamRequestTimeout);
    }
    (body == b"fault filter abort").then_some(ResponseFlag::FaultInjected)
}

/// One finished request, as a worker reports it.
#[derive(Debug)]
pub(super) struct Sample {
    /// Index of the flow's label in the plan.
    pub(super) label: usize,
    pub(super) outcome: Outcome,
    pub(super) latency: Duration,
    /// The `x-demo-version` the response carried.
    pub(super) version: Option<String>,
}

/// How one request ended.
#[derive(Debug)]
pub(super) enum Outcome {
    /// An answer, with the flag it carried ([`flag_of`]).
    Status(StatusCode, Option<ResponseFlag>),
    /// No response: why, for the summary's "last error" line.
    Transport(String),
    /// The refusal a security policy intends, to a request it must refuse.
    Refused(Denial),
    /// A 2xx to a request the security policies must refuse.
    NotRefused,
}

/// Everything observed for one summary label.
#[derive(Debug, Clone)]
pub struct LabelReport {
    /// The flows' destination, e.g. `travels.travel-agency`.
    pub label: String,
    /// Responses by status class.
    pub statuses: StatusCounts,
    /// Responses by response flag.
    pub flags: FlagCounts,
    /// The refusals the security policies intended.
    pub denials: DenialCounts,
    /// Responses per `x-demo-version` value; responses without the header are not counted.
    pub versions: BTreeMap<String, u64>,
    /// Time from sending the request to the end of the response body.
    pub latency: LatencyHistogram,
    /// The most recent transport error, so that an `err` count comes with a reason.
    pub last_error: Option<String>,
    /// Requests each pod of the destination's service received (every upstream attempt), by
    /// pod name; empty when the pods are not known.
    pub pods: Vec<(String, u64)>,
    /// Requests sent so far, including those still in flight (the completed ones are
    /// [`LabelReport::total`]): set on the cumulative report each second, so that a request a
    /// pod already counts is not taken for a retry while its answer is on the way.
    pub sent: u64,
    /// Times a pod that had received traffic got none for a whole second while its service
    /// still got some: outlier ejections, as the pods see them.
    pub ejections: u64,
    /// Pods out of the traffic as of the last second judged.
    ejected: Vec<String>,
}

impl LabelReport {
    pub(super) fn new(label: String) -> Self {
        Self {
            label,
            statuses: StatusCounts::default(),
            flags: FlagCounts::default(),
            denials: DenialCounts::default(),
            versions: BTreeMap::new(),
            latency: LatencyHistogram::new(),
            last_error: None,
            pods: Vec::new(),
            sent: 0,
            ejections: 0,
            ejected: Vec::new(),
        }
    }

    /// Requests sent to this label.
    pub fn total(&self) -> u64 {
        self.statuses.total()
    }

    /// Requests to this label that got no 2xx (see [`StatusCounts::failures`]).
    pub fn failures(&self) -> u64 {
        self.statuses.failures()
    }

    /// Median latency.
    pub fn p50(&self) -> Duration {
        self.latency.quantile(0.50)
    }

    /// 99th percentile latency.
    pub fn p99(&self) -> Duration {
        self.latency.quantile(0.99)
    }

    /// `v1 90% v2 10%`, or `-` when no response carried a version.
    pub fn version_split(&self) -> String {
        let seen: u64 = self.versions.values().sum();
        if seen == 0 {
            return "-".to_owned();
        }
        self.versions
            .iter()
            .map(|(version, n)| format!("{version} {}%", (n * 100 + seen / 2) / seen))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Requests the destination's pods received, or `None` when they are not known.
    pub fn attempts(&self) -> Option<u64> {
        (!self.pods.is_empty()).then(|| self.pods.iter().map(|(_, n)| n).sum())
    }

    /// Upstream attempts beyond one per request that reached a pod: the waypoint's retries.
    /// Fault aborts, overflows and the security policies' refusals never reach a pod, so they
    /// are left out of the requests;
    /// requests still in flight are in (see [`LabelReport::sent`]), so a live figure may miss
    /// a retry in flight but never shows one that did not happen. `None` when the pods are
    /// not known.
    pub fn retries(&self) -> Option<u64> {
        let reached = self
            .sent
            .max(self.total())
            .saturating_sub(self.flags.fault + self.flags.overflow + self.denials.total());
        self.attempts().map(|a| a.saturating_sub(reached))
    }

    /// Pods of a service with more than one that received nothing this second while the
    /// service got at least two requests per pod, in order; `None` when there is too little
    /// traffic to tell an ejected pod from an unlucky one.
    pub fn idle_pods(&self) -> Option<Vec<&str>> {
        let attempts = self.attempts()?;
        if self.pods.len() < 2 || attempts < 2 * self.pods.len() as u64 {
            return None;
        }
        Some(
            self.pods
                .iter()
                .filter(|(_, n)| *n == 0)
                .map(|(pod, _)| pod.as_str())
                .collect(),
        )
    }

    pub(super) fn record(&mut self, sample: &Sample) {
        self.statuses.record(&sample.outcome);
        self.latency.record(sample.latency);
        if let Some(version) = &sample.version {
            *self.versions.entry(version.clone()).or_default() += 1;
        }
        match &sample.outcome {
            Outcome::Status(_, Some(flag)) => self.flags.record(*flag),
            Outcome::Refused(denial) => self.denials.record(*denial),
            Outcome::Status(_, None) | Outcome::NotRefused => {}
            Outcome::Transport(error) => self.last_error = Some(error.clone()),
        }
    }

    /// Pods out of the traffic as of the last second judged: idle then, after receiving
    /// traffic before (a pod no route sends to is not ejected, only unused).
    pub fn ejected(&self) -> &[String] {
        &self.ejected
    }

    /// On the cumulative report (whose pod counts already include `second`): notes the pods
    /// that had traffic before and got none in `second` (the window's report), counting those
    /// that were not out already. A second with too little traffic to judge changes nothing.
    pub(super) fn observe_second(&mut self, second: &LabelReport) {
        let Some(idle) = second.idle_pods() else {
            return;
        };
        let had_traffic = |pod: &&str| self.pods.iter().any(|(p, n)| p == pod && *n > 0);
        let ejected: Vec<String> = idle
            .into_iter()
            .filter(had_traffic)
            .map(str::to_owned)
            .collect();
        let newly = ejected.iter().filter(|pod| !self.ejected.contains(pod));
        self.ejections += newly.count() as u64;
        self.ejected = ejected;
    }

    pub(super) fn reset(&mut self) {
        self.statuses = StatusCounts::default();
        self.flags = FlagCounts::default();
        self.denials = DenialCounts::default();
        self.versions.clear();
        self.latency.reset();
        self.last_error = None;
        self.pods.iter_mut().for_each(|(_, n)| *n = 0);
    }
}

/// The cumulative result of a [`super::traffic::run`].
#[derive(Debug, Clone)]
pub struct Report {
    labels: Vec<LabelReport>,
    elapsed: Duration,
}

/// Why a demo run failed: `waypoint demo` exits non-zero with this message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    /// Nothing was sent (stopped at once, or a zero duration).
    #[error("the demo sent no request")]
    NoTraffic,
    /// Some requests got no 2xx, and no policy explains why; or a policy did not refuse what
    /// it should have.
    #[error(
        "{failed} of {total} requests did not get the answer the configuration intends \
         ({kinds}; to {destinations}); only fault-injection aborts (FI), circuit-breaker \
         overflows (UO) and the security policies' 401/403 to the requests they must refuse \
         may lack a 2xx"
    )]
    NotAll2xx {
        /// Requests without a 2xx and without a policy that explains it, and 2xx answers to
        /// requests a policy must refuse.
        failed: u64,
        /// Requests sent.
        total: u64,
        /// The failures by kind, e.g. `3 4xx, 1 transport errors`.
        kinds: String,
        /// The failures by destination, e.g. `discounts.travel-agency 3`.
        destinations: String,
    },
}

impl Report {
    pub(super) fn new(labels: Vec<LabelReport>, elapsed: Duration) -> Self {
        Self { labels, elapsed }
    }

    /// Every request sent, over all labels.
    pub fn total(&self) -> u64 {
        self.labels.iter().map(LabelReport::total).sum()
    }

    /// Requests that got no 2xx, over all labels, intended or not.
    pub fn failures(&self) -> u64 {
        self.labels.iter().map(LabelReport::failures).sum()
    }

    /// One entry per distinct flow label, in the order the labels first appear in the plan.
    pub fn per_label(&self) -> &[LabelReport] {
        &self.labels
    }

    /// How long traffic actually ran (shorter than planned if stopped).
    pub fn elapsed(&self) -> Duration {
        self.elapsed
    }

    /// The demo's verdict: it passes only if it sent requests and every one got a 2xx, or an
    /// answer the configured policy intends (FI, UO, a security policy's 401/403 to a request
    /// it must refuse), and no request it must refuse got a 2xx.
    pub fn verdict(&self) -> Result<(), Failure> {
        let all = self.statuses();
        if all.total() == 0 {
            return Err(Failure::NoTraffic);
        }
        if all.unexpected() > 0 {
            return Err(Failure::NotAll2xx {
                failed: all.unexpected(),
                total: all.total(),
                kinds: all.failure_kinds(),
                destinations: self
                    .labels
                    .iter()
                    .filter(|l| l.statuses.unexpected() > 0)
                    .map(|l| format!("{} {}", l.label, l.statuses.unexpected()))
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        Ok(())
    }

    /// The verdict in one line, with what the policies did: the summary's last line.
    pub fn verdict_line(&self) -> String {
        let mut flags = FlagCounts::default();
        let mut denials = DenialCounts::default();
        let mut retries = 0;
        let mut ejections = 0;
        for label in &self.labels {
            flags.fault += label.flags.fault;
            flags.overflow += label.flags.overflow;
            denials.add(&label.denials);
            retries += label.retries().unwrap_or(0);
            ejections += label.ejections;
        }
        let policy =
            format!("the waypoint retried {retries} times and ejected a pod {ejections} times");
        match self.verdict() {
            Err(failure) => format!("verdict: FAIL: {failure} ({policy})"),
            Ok(()) if self.statuses().intended == 0 => {
                format!("verdict: PASS: every request got a 2xx; {policy}, keeping upstream failures from the client")
            }
            Ok(()) => format!(
                "verdict: PASS: every request got a 2xx but {} fault-injection aborts (FI), \
                 {} circuit-breaker overflows (UO), {} 401s to bad tokens and {} 403s on denied \
                 requests, which the configured policy intends; {policy}, keeping upstream \
                 failures from the client",
                flags.fault, flags.overflow, denials.unauthenticated, denials.forbidden
            ),
        }
    }

    fn statuses(&self) -> StatusCounts {
        let mut all = StatusCounts::default();
        for label in &self.labels {
            all.add(&label.statuses);
        }
        all
    }
}

#[cfg(test)]
mod tests;

//! What the demo's traffic generator saw: status counts, latency and version split per
//! destination, the tables printed every second and at the end, and the run's verdict.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use anyhow::Context;
use http::StatusCode;
use telemetry::LatencyHistogram;

/// Responses by status class, plus requests that got no response at all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatusCounts {
    /// 2xx answers: the only ones the demo counts as success.
    pub success: u64,
    /// 3xx answers.
    pub redirect: u64,
    /// 4xx answers.
    pub client_error: u64,
    /// 5xx answers, and any status outside 2xx–4xx.
    pub server_error: u64,
    /// Connect failures, broken connections and timeouts.
    pub transport_error: u64,
}

impl StatusCounts {
    /// Every request sent.
    pub fn total(&self) -> u64 {
        self.success + self.redirect + self.client_error + self.server_error + self.transport_error
    }

    /// Requests that got no 2xx: a 3xx, a 4xx, a 5xx or no answer at all. The travel portals
    /// only ask for what the travel services have, so anything but a 2xx means the waypoint
    /// routed or forwarded wrongly (a waypoint answering 404 to everything must not pass).
    pub fn failures(&self) -> u64 {
        self.total() - self.success
    }

    /// `2 3xx, 1 transport error`: the failures by kind, for the verdict's message.
    fn failure_kinds(&self) -> String {
        [
            (self.redirect, "3xx"),
            (self.client_error, "4xx"),
            (self.server_error, "5xx"),
            (self.transport_error, "transport errors"),
        ]
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, kind)| format!("{n} {kind}"))
        .collect::<Vec<_>>()
        .join(", ")
    }

    fn record(&mut self, outcome: &Outcome) {
        let counter = match outcome {
            Outcome::Status(status) if status.is_success() => &mut self.success,
            Outcome::Status(status) if status.is_redirection() => &mut self.redirect,
            Outcome::Status(status) if status.is_client_error() => &mut self.client_error,
            Outcome::Status(_) => &mut self.server_error,
            Outcome::Transport(_) => &mut self.transport_error,
        };
        *counter += 1;
    }

    fn add(&mut self, other: &StatusCounts) {
        self.success += other.success;
        self.redirect += other.redirect;
        self.client_error += other.client_error;
        self.server_error += other.server_error;
        self.transport_error += other.transport_error;
    }
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
    Status(StatusCode),
    /// No response: why, for the summary's "last error" line.
    Transport(String),
}

/// Everything observed for one summary label.
#[derive(Debug, Clone)]
pub struct LabelReport {
    /// The flows' destination, e.g. `travels.travel-agency`.
    pub label: String,
    /// Responses by status class.
    pub statuses: StatusCounts,
    /// Responses per `x-demo-version` value; responses without the header are not counted.
    pub versions: BTreeMap<String, u64>,
    /// Time from sending the request to the end of the response body.
    pub latency: LatencyHistogram,
    /// The most recent transport error, so that an `err` count comes with a reason.
    pub last_error: Option<String>,
}

impl LabelReport {
    pub(super) fn new(label: String) -> Self {
        Self {
            label,
            statuses: StatusCounts::default(),
            versions: BTreeMap::new(),
            latency: LatencyHistogram::new(),
            last_error: None,
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

    pub(super) fn record(&mut self, sample: &Sample) {
        self.statuses.record(&sample.outcome);
        self.latency.record(sample.latency);
        if let Some(version) = &sample.version {
            *self.versions.entry(version.clone()).or_default() += 1;
        }
        if let Outcome::Transport(error) = &sample.outcome {
            self.last_error = Some(error.clone());
        }
    }

    pub(super) fn reset(&mut self) {
        self.statuses = StatusCounts::default();
        self.versions.clear();
        self.latency.reset();
        self.last_error = None;
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
    /// Some requests got no 2xx.
    #[error("{failed} of {total} requests got no 2xx answer ({kinds})")]
    NotAll2xx {
        /// Requests without a 2xx.
        failed: u64,
        /// Requests sent.
        total: u64,
        /// The failures by kind, e.g. `3 4xx, 1 transport errors`.
        kinds: String,
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

    /// Requests that got no 2xx, over all labels.
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

    /// The demo's verdict: it passes only if it sent requests and every one got a 2xx.
    pub fn verdict(&self) -> Result<(), Failure> {
        let mut all = StatusCounts::default();
        for label in &self.labels {
            all.add(&label.statuses);
        }
        if all.total() == 0 {
            return Err(Failure::NoTraffic);
        }
        if all.failures() > 0 {
            return Err(Failure::NotAll2xx {
                failed: all.failures(),
                total: all.total(),
                kinds: all.failure_kinds(),
            });
        }
        Ok(())
    }
}

/// One line of a summary table.
struct Row<'a> {
    label: &'a str,
    rate: f64,
    statuses: &'a StatusCounts,
    latency: &'a LabelReport,
    versions: String,
}

fn write_table<'a>(
    out: &mut (dyn Write + Send),
    heading: &str,
    rows: impl Iterator<Item = Row<'a>> + Clone,
) -> std::io::Result<()> {
    let width = rows
        .clone()
        .map(|r| r.label.len())
        .max()
        .unwrap_or(0)
        .max("destination".len());
    writeln!(out, "{heading}")?;
    writeln!(
        out,
        "  {:<width$}  {:>7}  {:>7} {:>5} {:>5} {:>5} {:>5}  {:>8} {:>8}  versions",
        "destination", "req/s", "2xx", "3xx", "4xx", "5xx", "err", "p50 ms", "p99 ms"
    )?;
    for row in rows {
        let s = row.statuses;
        writeln!(
            out,
            "  {:<width$}  {:>7.1}  {:>7} {:>5} {:>5} {:>5} {:>5}  {:>8.2} {:>8.2}  {}",
            row.label,
            row.rate,
            s.success,
            s.redirect,
            s.client_error,
            s.server_error,
            s.transport_error,
            millis(row.latency.p50()),
            millis(row.latency.p99()),
            row.versions,
        )?;
    }
    out.flush()
}

/// The table of one second: `window` is what that second saw, `cumulative` everything so far;
/// rates and latency are the second's, status counts the run's.
pub(super) fn write_second(
    out: &mut (dyn Write + Send),
    heading: &str,
    window: &[LabelReport],
    cumulative: &[LabelReport],
    seconds: Duration,
) -> std::io::Result<()> {
    let seconds = seconds.as_secs_f64().max(f64::EPSILON);
    let rows = window.iter().zip(cumulative).map(|(last, all)| Row {
        label: &last.label,
        rate: last.total() as f64 / seconds,
        statuses: &all.statuses,
        latency: last,
        versions: last.version_split(),
    });
    write_table(out, heading, rows)
}

pub(super) fn write_final(out: &mut (dyn Write + Send), report: &Report) -> anyhow::Result<()> {
    let seconds = report.elapsed.as_secs_f64().max(f64::EPSILON);
    let heading = format!(
        "total after {seconds:.1}s: {} requests, {} without a 2xx",
        report.total(),
        report.failures()
    );
    let rows = report.labels.iter().map(|label| Row {
        label: &label.label,
        rate: label.total() as f64 / seconds,
        statuses: &label.statuses,
        latency: label,
        versions: label.version_split(),
    });
    write_table(out, &heading, rows).context("cannot write the traffic summary")?;
    for label in &report.labels {
        if let Some(error) = &label.last_error {
            writeln!(out, "  last error for {}: {error}", label.label)?;
        }
    }
    Ok(())
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_split_rounds_to_percent() {
        let mut report = LabelReport::new("x".into());
        assert_eq!(report.version_split(), "-");
        report.versions.insert("v1".into(), 9);
        report.versions.insert("v2".into(), 1);
        assert_eq!(report.version_split(), "v1 90% v2 10%");
    }

    /// A report with one label per entry, each answered with the given outcomes.
    fn report(labels: &[&[Outcome]]) -> Report {
        let labels = labels
            .iter()
            .enumerate()
            .map(|(i, outcomes)| {
                let mut label = LabelReport::new(format!("label-{i}"));
                for outcome in *outcomes {
                    label.statuses.record(outcome);
                }
                label
            })
            .collect();
        Report::new(labels, Duration::from_secs(1))
    }

    fn status(code: u16) -> Outcome {
        Outcome::Status(StatusCode::from_u16(code).expect("a valid status"))
    }

    #[test]
    fn only_all_2xx_passes() {
        let broken = || Outcome::Transport("connection reset".into());
        let cases: [(&str, Report, Result<(), Failure>); 6] = [
            ("nothing sent", report(&[]), Err(Failure::NoTraffic)),
            (
                "a label with no traffic",
                report(&[&[]]),
                Err(Failure::NoTraffic),
            ),
            (
                "all 2xx",
                report(&[&[status(200), status(204)], &[status(201)]]),
                Ok(()),
            ),
            (
                "a waypoint answering 404 to everything",
                report(&[&[status(404), status(404)]]),
                Err(Failure::NotAll2xx {
                    failed: 2,
                    total: 2,
                    kinds: "2 4xx".into(),
                }),
            ),
            (
                "one redirect among successes",
                report(&[&[status(200)], &[status(200), status(301)]]),
                Err(Failure::NotAll2xx {
                    failed: 1,
                    total: 3,
                    kinds: "1 3xx".into(),
                }),
            ),
            (
                "5xx and broken connections",
                report(&[&[status(503), broken()], &[status(200), broken()]]),
                Err(Failure::NotAll2xx {
                    failed: 3,
                    total: 4,
                    kinds: "1 5xx, 2 transport errors".into(),
                }),
            ),
        ];
        for (what, report, expected) in cases {
            assert_eq!(report.verdict(), expected, "{what}");
        }
    }
}

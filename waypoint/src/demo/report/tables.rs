//! The summary tables: one per second while traffic runs, and a cumulative one at the end
//! followed by the verdict line.

use std::io::Write;
use std::time::Duration;

use anyhow::Context;

use super::{LabelReport, Report};

/// One line of a summary table.
struct Row<'a> {
    rate: f64,
    /// Status, flag and retry counts.
    counts: &'a LabelReport,
    /// Latency and versions.
    recent: &'a LabelReport,
}

fn write_table<'a>(
    out: &mut (dyn Write + Send),
    heading: &str,
    rows: impl Iterator<Item = Row<'a>> + Clone,
) -> std::io::Result<()> {
    let width = rows
        .clone()
        .map(|r| r.counts.label.len())
        .max()
        .unwrap_or(0)
        .max("destination".len());
    writeln!(out, "{heading}")?;
    writeln!(
        out,
        "  {:<width$}  {:>7}  {:>7} {:>5} {:>5} {:>5} {:>5}  {:>4} {:>4} {:>4} {:>4} {:>4} {:>7}  {:>8} {:>8}  versions",
        "destination", "req/s", "2xx", "3xx", "4xx", "5xx", "err", "UO", "UT", "FI", "401", "403",
        "retries", "p50 ms", "p99 ms"
    )?;
    for row in rows {
        let (s, f, d) = (&row.counts.statuses, &row.counts.flags, &row.counts.denials);
        let retries = row
            .counts
            .retries()
            .map_or_else(|| "-".to_owned(), |n| n.to_string());
        writeln!(
            out,
            "  {:<width$}  {:>7.1}  {:>7} {:>5} {:>5} {:>5} {:>5}  {:>4} {:>4} {:>4} {:>4} {:>4} {:>7}  {:>8.2} {:>8.2}  {}",
            row.counts.label,
            row.rate,
            s.success,
            s.redirect,
            s.client_error,
            s.server_error,
            s.transport_error,
            f.overflow,
            f.timeout,
            f.fault,
            d.unauthenticated,
            d.forbidden,
            retries,
            millis(row.recent.p50()),
            millis(row.recent.p99()),
            row.recent.version_split(),
        )?;
    }
    Ok(())
}

/// `discounts-v1-0 9, discounts-v1-1 0`, the pods' request counts.
fn pod_counts(report: &LabelReport) -> String {
    report
        .pods
        .iter()
        .map(|(pod, n)| format!("{pod} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The table of one second: `window` is what that second saw, `cumulative` everything so far;
/// rates, latency and the pods' counts are the second's, status, flag and retry counts the
/// run's. Under the table, each service with several pods gets a line with each pod's requests
/// of the second, marking pods that got none while their siblings got traffic.
pub(in crate::demo) fn write_second(
    out: &mut (dyn Write + Send),
    heading: &str,
    window: &[LabelReport],
    cumulative: &[LabelReport],
    seconds: Duration,
) -> std::io::Result<()> {
    let seconds = seconds.as_secs_f64().max(f64::EPSILON);
    let rows = window.iter().zip(cumulative).map(|(last, all)| Row {
        rate: last.total() as f64 / seconds,
        counts: all,
        recent: last,
    });
    write_table(out, heading, rows)?;
    for (last, all) in window.iter().zip(cumulative) {
        if last.pods.len() < 2 {
            continue;
        }
        let ejected = match all.ejected() {
            [] => String::new(),
            pods => format!(
                "; no traffic to {} (ejected by outlier detection)",
                pods.join(", ")
            ),
        };
        writeln!(
            out,
            "  {} pods, requests this second: {}{ejected}; ejections so far {}",
            last.label,
            pod_counts(last),
            all.ejections
        )?;
    }
    out.flush()
}

/// The cumulative table, each multi-pod service's requests per pod and ejections, flags other
/// than UO/UT/FI, the last transport error per label, and the verdict line.
pub(in crate::demo) fn write_final(
    out: &mut (dyn Write + Send),
    report: &Report,
) -> anyhow::Result<()> {
    let seconds = report.elapsed.as_secs_f64().max(f64::EPSILON);
    let statuses = report.statuses();
    let heading = format!(
        "total after {seconds:.1}s: {} requests, {} without a 2xx ({} intended by the policy: FI, UO, 401, 403)",
        report.total(),
        report.failures(),
        statuses.intended
    );
    let rows = report.labels.iter().map(|label| Row {
        rate: label.total() as f64 / seconds,
        counts: label,
        recent: label,
    });
    write_table(out, &heading, rows).context("cannot write the traffic summary")?;
    for label in &report.labels {
        if label.pods.len() > 1 {
            writeln!(
                out,
                "  {} pods, requests: {}; ejections: {}",
                label.label,
                pod_counts(label),
                label.ejections
            )?;
        }
        if !label.flags.other.is_empty() {
            let other: Vec<String> = label
                .flags
                .other
                .iter()
                .map(|(flag, n)| format!("{flag} {n}"))
                .collect();
            writeln!(
                out,
                "  other flags for {}: {}",
                label.label,
                other.join(", ")
            )?;
        }
        if label.statuses.unenforced > 0 {
            writeln!(
                out,
                "  {} 2xx from {} to requests its security policies should have refused",
                label.statuses.unenforced, label.label
            )?;
        }
        if let Some(error) = &label.last_error {
            writeln!(out, "  last error for {}: {error}", label.label)?;
        }
    }
    writeln!(out, "{}", report.verdict_line())?;
    out.flush()?;
    Ok(())
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

//! `waypoint check DIR`: validates a folder exactly as `run` would load it and prints one row
//! per resource, then every problem with its file, document, object and field.

use crate::live::{build_from_dir, build_from_dir_for_class, ConfigError};
use crate::snapshot::{GatewayRef, Report, Snapshot, State};
use routing::Severity;
use std::fmt::Write as _;
use std::path::Path;

/// Checks `dir`; returns the printed report and whether it found no error.
pub fn check(dir: &Path, gateway: Option<&GatewayRef>) -> Result<(String, bool), ConfigError> {
    let (snapshot, report) = build_from_dir(dir, gateway, 0)?;
    let mut out = render(&report);
    if let Some(snapshot) = &snapshot {
        out.push_str(&policies_in_force(snapshot));
    }
    Ok((out, report.error_count() == 0))
}

/// Per service, the VirtualServices and DestinationRules naming it: the one of each kind in
/// force and why the others are not. Empty when no such policy names a service.
pub fn policies_in_force(snapshot: &Snapshot) -> String {
    let mut out = String::new();
    for s in snapshot
        .services
        .iter()
        .filter(|s| !s.virtual_services.is_empty() || !s.destination_rules.is_empty())
    {
        if out.is_empty() {
            out.push_str("\nIstio policies per service:\n");
        }
        let _ = writeln!(out, "  {}:", s.key);
        let kinds = [
            ("VirtualService", &s.virtual_services),
            ("DestinationRule", &s.destination_rules),
        ];
        for (kind, policies) in kinds {
            for p in policies {
                let mark = if p.in_force {
                    "in force"
                } else {
                    "not in force"
                };
                let _ = writeln!(out, "    {kind} {} {mark}: {}", p.resource, p.reason);
            }
        }
    }
    out
}

/// The Gateway API status of the Gateways of `gateway_class` in `dir` and of the routes naming
/// them, as a JSON list of Kubernetes objects (what a controller would write to the API).
pub fn status_json(dir: &Path, gateway_class: &str) -> Result<String, ConfigError> {
    let (_, report) = build_from_dir_for_class(dir, None, 0, gateway_class)?;
    let json = report.gateway_status.to_k8s_json();
    Ok(serde_json::to_string_pretty(&json).unwrap_or_default())
}

/// The `check` table: one row per object, then warnings, timings and errors.
pub fn render(report: &Report) -> String {
    let mut out = String::new();
    let rows: Vec<[String; 3]> = report
        .statuses
        .iter()
        .map(|s| {
            let state = match &s.state {
                State::Accepted => "Accepted".to_string(),
                State::Ignored(why) => format!("Ignored: {why}"),
                State::Error => format!(
                    "Error ({})",
                    s.issues
                        .iter()
                        .filter(|i| i.severity == Severity::Error)
                        .count()
                ),
            };
            [
                format!("{}#{}", s.origin.file.display(), s.origin.document),
                s.object.to_string(),
                state,
            ]
        })
        .collect();
    let w0 = rows.iter().map(|r| r[0].len()).max().unwrap_or(0).max(8);
    let w1 = rows.iter().map(|r| r[1].len()).max().unwrap_or(0).max(8);
    let _ = writeln!(out, "{:w0$}  {:w1$}  STATUS", "FILE#DOC", "RESOURCE");
    for r in &rows {
        let _ = writeln!(out, "{:w0$}  {:w1$}  {}", r[0], r[1], r[2]);
    }
    let errors = report.error_lines();
    let warnings = report.warning_lines();
    if !warnings.is_empty() {
        let _ = writeln!(out, "\nwarnings:");
        for w in &warnings {
            let _ = writeln!(out, "  {w}");
        }
    }
    let _ = writeln!(
        out,
        "\nread and parsed in {:.0} ms, built (validated, attached, routes compiled) in {:.0} ms",
        report.load_ms, report.compile_ms
    );
    if errors.is_empty() {
        let _ = writeln!(out, "\nOK: {} resources, no errors", rows.len());
    } else {
        let _ = writeln!(out, "\nerrors:");
        for e in &errors {
            let _ = writeln!(out, "  {e}");
        }
        let _ = writeln!(out, "\n{} error(s)", errors.len());
    }
    out
}

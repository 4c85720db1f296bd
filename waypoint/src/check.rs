//! `waypoint check DIR`: validates a folder exactly as `run` would load it and prints one row
//! per resource, then every problem with its file, document, object and field.

use crate::live::{build_from_dir_for_class, ConfigError};
use crate::snapshot::{
    GatewayRef, PolicySummary, Report, Snapshot, State, CLUSTER_DOMAIN, GATEWAY_CLASS,
};
use routing::Severity;
use std::fmt::Write as _;
use std::path::Path;

/// Checks `dir` in `trust_domain` (`--trust-domain`, when the MeshConfig sets none); returns
/// the printed report and whether it found no error. A security policy loaded fail closed
/// does not stop `run`, but fails the check: it is an error to fix.
pub fn check(
    dir: &Path,
    gateway: Option<&GatewayRef>,
    trust_domain: &str,
) -> Result<(String, bool), ConfigError> {
    let (snapshot, report) =
        build_from_dir_for_class(dir, gateway, 0, GATEWAY_CLASS, trust_domain)?;
    let mut out = render(&report);
    if let Some(snapshot) = &snapshot {
        out.push_str(&policies_in_force(snapshot));
        out.push_str(&security_in_force(snapshot, &report));
    }
    let ok = report.error_count() == 0 && report.fail_closed_lines().is_empty();
    Ok((out, ok))
}

/// Per served service, the security policies in force (the waypoint's own first), the
/// PeerAuthentications of the plain listener and the ext_authz providers. Empty when the
/// folder has no security resource.
pub fn security_in_force(snapshot: &Snapshot, report: &Report) -> String {
    let sum = snapshot.security.summary(report);
    let mut out = String::new();
    if sum.waypoint.is_empty()
        && sum.services.values().all(Vec::is_empty)
        && sum.peer_authentications.is_empty()
        && sum.ext_authz_providers.is_empty()
    {
        return out;
    }
    let aliases = match sum.trust_domain_aliases.as_slice() {
        [] => String::new(),
        a => format!(", aliases {}", a.join(", ")),
    };
    let _ = writeln!(
        out,
        "\nSecurity policies per service (trust domain {}{aliases}):",
        sum.trust_domain
    );
    let _ = writeln!(out, "  waypoint {} (every request):", snapshot.gateway);
    write_policies(&mut out, &sum.waypoint);
    for (service, policies) in &sum.services {
        if policies.len() == sum.waypoint.len() {
            let _ = writeln!(out, "  {service}: the waypoint's only");
        } else {
            let _ = writeln!(out, "  {service}:");
            write_policies(&mut out, policies);
        }
    }
    if !sum.peer_authentications.is_empty() {
        let _ = writeln!(out, "  plain listener, most specific first:");
        write_policies(&mut out, &sum.peer_authentications);
    }
    for p in &sum.ext_authz_providers {
        let _ = writeln!(out, "  ext_authz provider {p}");
    }
    out
}

fn write_policies(out: &mut String, policies: &[PolicySummary]) {
    if policies.is_empty() {
        let _ = writeln!(out, "    none");
    }
    for p in policies {
        let effect = if p.effect.is_empty() {
            String::new()
        } else {
            format!(" {}", p.effect)
        };
        let failed = if p.state == Some(State::FailClosed) {
            " FAIL CLOSED (see the errors above)"
        } else {
            ""
        };
        let _ = writeln!(out, "    {}{effect}{failed}", p.policy);
    }
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
    let (_, report) = build_from_dir_for_class(dir, None, 0, gateway_class, CLUSTER_DOMAIN)?;
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
                State::Error => format!("Error ({})", error_count(&s.issues)),
                State::FailClosed => {
                    format!("FailClosed ({} error(s))", error_count(&s.issues))
                }
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
    let fail_closed = report.fail_closed_lines();
    if !fail_closed.is_empty() {
        let _ = writeln!(
            out,
            "\nsecurity policies in force fail closed (the rest of the folder loads; fix these):"
        );
        for e in &fail_closed {
            let _ = writeln!(out, "  {e}");
        }
    }
    if errors.is_empty() && fail_closed.is_empty() {
        let _ = writeln!(out, "\nOK: {} resources, no errors", rows.len());
    } else if errors.is_empty() {
        let _ = writeln!(
            out,
            "\n{} security policy error(s), loaded fail closed",
            fail_closed.len()
        );
    } else {
        let _ = writeln!(out, "\nerrors:");
        for e in &errors {
            let _ = writeln!(out, "  {e}");
        }
        let _ = writeln!(out, "\n{} error(s)", errors.len());
    }
    out
}

fn error_count(issues: &[crate::snapshot::StatusIssue]) -> usize {
    issues
        .iter()
        .filter(|i| i.severity == Severity::Error)
        .count()
}

//! A DestinationRule compiled into what one cluster gets — Istio's unit of policy, which is a
//! service port, or a subset of it — and the checks that reject values istiod's validation would.
//!
//! Istio merges the rule for one port and subset component by component (load balancer,
//! connection pool, outlier detection): a port's `portLevelSettings` entry replaces the rule's
//! top-level components *wholesale* (a component it leaves out falls back to the default, not to
//! the top level); a subset's policy then overrides the components it sets, and its own
//! `portLevelSettings` replace them wholesale again (istiod `MergeSubsetTrafficPolicy`).

use serde::Serialize;
use std::time::Duration;

use crate::destination_rule::{
    ConnectionPoolSettings, DestinationRuleSpec, LoadBalancerSettings, OutlierDetection,
    PortTrafficPolicy, TrafficPolicy,
};
use crate::lb::LbPolicy;
use crate::outlier::OutlierPolicy;
use crate::policy::PolicyIssue;
use crate::pool::PoolLimits;

/// A validated DestinationRule, from which each cluster's policy is selected.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DestinationPolicy {
    spec: DestinationRuleSpec,
}

/// What one cluster (a service port, or a subset of it) gets from the rule in force, or
/// Istio's defaults when there is none.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ClusterPolicy {
    /// How an endpoint is chosen.
    pub lb: LbPolicy,
    /// Circuit-breaker limits and connection options.
    pub pool: PoolLimits,
    /// Passive health checking; `None` is off (Istio's default).
    pub outlier: Option<OutlierPolicy>,
}

/// What validating a rule found: errors (values Istio rejects; the rule is not used) and
/// warnings (fields read but not acted on at a waypoint), each against its field path.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Findings {
    /// Values that cannot be honoured.
    pub errors: Vec<PolicyIssue>,
    /// Fields that do not apply here, or apply differently.
    pub warnings: Vec<PolicyIssue>,
}

impl Findings {
    /// Reports an error against `field`.
    pub fn error(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.errors.push(PolicyIssue::new(field, message));
    }

    /// Reports a warning against `field`.
    pub fn warn(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.warnings.push(PolicyIssue::new(field, message));
    }
}

/// The three components a cluster's policy is made of, as written.
#[derive(Clone, Copy, Default)]
struct Components<'a> {
    lb: Option<&'a LoadBalancerSettings>,
    pool: Option<&'a ConnectionPoolSettings>,
    outlier: Option<&'a OutlierDetection>,
}

impl<'a> Components<'a> {
    fn of(policy: &'a TrafficPolicy) -> Self {
        Components {
            lb: policy.load_balancer.as_ref(),
            pool: policy.connection_pool.as_ref(),
            outlier: policy.outlier_detection.as_ref(),
        }
    }

    fn of_port(policy: &'a PortTrafficPolicy) -> Self {
        Components {
            lb: policy.load_balancer.as_ref(),
            pool: policy.connection_pool.as_ref(),
            outlier: policy.outlier_detection.as_ref(),
        }
    }

    /// `policy` for `port`: its port-level entry replaces every component when there is one.
    /// Returns whether there was one.
    fn for_port(policy: &'a TrafficPolicy, port: u16) -> (Self, bool) {
        match policy
            .port_level_settings
            .iter()
            .find(|p| p.port.is_some_and(|s| s.number == u32::from(port)))
        {
            Some(p) => (Components::of_port(p), true),
            None => (Components::of(policy), false),
        }
    }

    /// `self` overridden by `over`: each component `over` sets, or all when `wholesale`.
    fn overridden_by(self, over: Components<'a>, wholesale: bool) -> Self {
        Components {
            lb: if wholesale || over.lb.is_some() {
                over.lb
            } else {
                self.lb
            },
            pool: if wholesale || over.pool.is_some() {
                over.pool
            } else {
                self.pool
            },
            outlier: if wholesale || over.outlier.is_some() {
                over.outlier
            } else {
                self.outlier
            },
        }
    }

    /// Compiles the components; `field` prefixes the issues.
    fn compile(self, field: &str, issues: &mut Findings) -> ClusterPolicy {
        ClusterPolicy {
            lb: self
                .lb
                .map(|l| LbPolicy::compile(l, &format!("{field}.loadBalancer"), issues))
                .unwrap_or_default(),
            pool: self
                .pool
                .map(|p| PoolLimits::compile(p, &format!("{field}.connectionPool"), issues))
                .unwrap_or_default(),
            outlier: self
                .outlier
                .map(|o| OutlierPolicy::compile(o, &format!("{field}.outlierDetection"), issues)),
        }
    }
}

impl DestinationPolicy {
    /// Validates `spec`, reporting every value Istio would reject (against its field path in
    /// the resource, `spec.trafficPolicy...`) and every field that cannot apply at a waypoint.
    pub fn compile(spec: &DestinationRuleSpec, issues: &mut Findings) -> Self {
        if spec.host.trim().is_empty() {
            issues.error("spec.host", "required: the service to apply to");
        }
        if let Some(p) = &spec.traffic_policy {
            check_policy(p, "spec.trafficPolicy", issues);
        }
        let mut names: Vec<&str> = Vec::new();
        for (i, s) in spec.subsets.iter().enumerate() {
            let field = format!("spec.subsets[{i}]");
            if s.name.is_empty() {
                issues.error(format!("{field}.name"), "required");
            } else if names.contains(&s.name.as_str()) {
                issues.error(
                    format!("{field}.name"),
                    format!("subset '{}' is defined twice; rename one", s.name),
                );
            }
            names.push(&s.name);
            if let Some(p) = &s.traffic_policy {
                check_policy(p, &format!("{field}.trafficPolicy"), issues);
            }
        }
        DestinationPolicy { spec: spec.clone() }
    }

    /// The rule as written.
    pub fn spec(&self) -> &DestinationRuleSpec {
        &self.spec
    }

    /// The policy of `port`'s cluster, or of its `subset`'s (a subset the rule does not define
    /// gets the port's policy: callers check subset names themselves).
    pub fn for_cluster(&self, port: u16, subset: Option<&str>) -> ClusterPolicy {
        let (top, _) = self
            .spec
            .traffic_policy
            .as_ref()
            .map(|p| Components::for_port(p, port))
            .unwrap_or_default();
        let merged = match subset
            .and_then(|name| self.spec.subsets.iter().find(|s| s.name == name))
            .and_then(|s| s.traffic_policy.as_ref())
        {
            Some(sub) => {
                let (over, wholesale) = Components::for_port(sub, port);
                top.overridden_by(over, wholesale)
            }
            None => top,
        };
        // Every value was validated (and reported) by `compile`; recompiling the selected
        // components only re-derives the same values.
        merged.compile("", &mut Findings::default())
    }
}

/// Checks one `trafficPolicy` (the rule's or a subset's) and its `portLevelSettings`.
fn check_policy(p: &TrafficPolicy, field: &str, issues: &mut Findings) {
    Components::of(p).compile(field, issues);
    not_applied(p.tls.is_some(), &format!("{field}.tls"), TLS_NOTE, issues);
    not_applied(
        p.tunnel.is_some(),
        &format!("{field}.tunnel"),
        OTHER_NOTE,
        issues,
    );
    let proxy_protocol = p.proxy_protocol.is_some();
    not_applied(
        proxy_protocol,
        &format!("{field}.proxyProtocol"),
        OTHER_NOTE,
        issues,
    );
    let mut ports: Vec<u32> = Vec::new();
    for (i, pl) in p.port_level_settings.iter().enumerate() {
        let f = format!("{field}.portLevelSettings[{i}]");
        match pl.port.map(|s| s.number) {
            None | Some(0) => issues.error(
                format!("{f}.port.number"),
                "required: the service port this entry applies to",
            ),
            Some(n) if ports.contains(&n) => issues.error(
                format!("{f}.port.number"),
                format!("port {n} has two entries; merge them"),
            ),
            Some(n) => ports.push(n),
        }
        Components::of_port(pl).compile(&f, issues);
        not_applied(pl.tls.is_some(), &format!("{f}.tls"), TLS_NOTE, issues);
    }
}

const TLS_NOTE: &str = "not applied: a waypoint reaches ambient endpoints over HBONE (mTLS)";
const OTHER_NOTE: &str = "not supported by this waypoint yet; ignored";

/// Reports a field the waypoint reads but does not act on, as a warning.
fn not_applied(set: bool, field: &str, note: &str, issues: &mut Findings) {
    if set {
        issues.warn(field, note);
    }
}

/// Parses an optional Istio duration field; a bad value is reported and left out.
pub(crate) fn duration_field(
    value: Option<&str>,
    field: &str,
    issues: &mut Findings,
) -> Option<Duration> {
    let value = value?;
    match crate::istio::parse_istio_duration(value) {
        Ok(d) => Some(d),
        Err(e) => {
            issues.error(field, e);
            None
        }
    }
}

/// An optional count that must not be negative; 0 (or unset) is `None`, which for every
/// connection-pool field is Istio's "use the default".
pub(crate) fn count_field(value: Option<i32>, field: &str, issues: &mut Findings) -> Option<u32> {
    match value {
        Some(v) if v < 0 => {
            issues.error(
                field,
                format!("{v} is negative; use a positive count, or leave it out for no limit"),
            );
            None
        }
        Some(v) => u32::try_from(v).ok().filter(|&v| v > 0),
        None => None,
    }
}

#[cfg(test)]
mod tests;

//! DestinationRules: which one governs each service (as istiod chooses for a waypoint), and
//! every service port's clusters — its own and one per subset, with the merged policy, the
//! members (subsets by pod labels) and the process-wide state — built for every port, with
//! Istio's defaults where no rule applies.

use super::{of_kind, Builder, EMPTY_LABELS};
use crate::config::{Document, Resource};
use crate::endpoint::cluster::{Cluster, ClusterState};
use crate::snapshot::{PolicyInForce, ServiceInfo, ServicePort, State, StatusIssue};
use resilience::destination_rule::DestinationRuleSpec;
use resilience::{stable_hash, Balancer, DestinationPolicy, Findings, PolicyIssue};
use routing::Severity;
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

/// A DestinationRule that compiled, with what ranks it against others for one service.
struct Rule<'d> {
    doc: &'d Document,
    spec: &'d DestinationRuleSpec,
    policy: DestinationPolicy,
    /// Its host, fully qualified and lower case.
    host: String,
    /// Subsets that select at least one endpoint somewhere.
    subsets_used: Vec<bool>,
    applied: bool,
    /// Warnings found when it compiled, reported with its status.
    issues: Vec<StatusIssue>,
    /// Why it is not in force for services it names.
    lost: Vec<String>,
}

impl<'a> Builder<'a> {
    /// Attaches each service's DestinationRule and builds every port's clusters; reports each
    /// rule (`waypoint_namespace` is where the rules' `exportTo` is checked against).
    pub(super) fn destination_rules(
        &mut self,
        docs: &[&'a Document],
        services: &mut [ServiceInfo],
        waypoint_namespace: &str,
    ) {
        let pods = pod_labels(docs);
        let mut rules = Vec::new();
        for (d, dr) in of_kind(docs, |r| match r {
            Resource::DestinationRule(dr) => Some(&dr.spec),
            _ => None,
        }) {
            if let Some(rule) = self.compile_rule(d, dr, waypoint_namespace) {
                rules.push(rule);
            }
        }
        for svc in services.iter_mut() {
            let chosen = in_force(&mut rules, svc, waypoint_namespace);
            let rule = chosen.map(|i| &mut rules[i]);
            build_clusters(svc, rule, &pods);
        }
        for rule in rules {
            let mut issues = rule.issues;
            for (i, used) in rule.subsets_used.iter().enumerate() {
                if rule.applied && !used {
                    issues.push(warning(
                        format!("spec.subsets[{i}].labels"),
                        "selects no pod of the service: routes to this subset get 503 \
                         (no healthy upstream)",
                    ));
                }
            }
            let state = match (rule.applied, rule.lost.first()) {
                (true, _) => State::Accepted,
                (false, Some(why)) => State::Ignored(why.clone()),
                (false, None) => {
                    State::Ignored(format!("host '{}' names no known service", rule.spec.host))
                }
            };
            self.status(rule.doc, state, issues);
        }
    }

    /// Validates one rule: an invalid one is reported and left out (Istio's validation would
    /// refuse it); a `workloadSelector` one is reported as not applying to waypoints.
    fn compile_rule<'d>(
        &mut self,
        d: &'d Document,
        spec: &'d DestinationRuleSpec,
        waypoint_namespace: &str,
    ) -> Option<Rule<'d>> {
        let mut findings = Findings::default();
        let policy = DestinationPolicy::compile(spec, &mut findings);
        let mut issues: Vec<StatusIssue> = findings.errors.into_iter().map(error).collect();
        issues.extend(
            findings
                .warnings
                .into_iter()
                .map(|i| warning(i.field, i.message)),
        );
        if issues.iter().any(|i| i.severity == Severity::Error) {
            self.status(d, State::Error, issues);
            return None;
        }
        if spec.workload_selector.is_some() {
            let why = "workloadSelector rules configure sidecars, not waypoints; ignored";
            self.status(d, State::Ignored(why.into()), issues);
            return None;
        }
        let ns = d.object.namespace.as_str();
        if !exported_to(&spec.export_to, ns, waypoint_namespace) {
            let why =
                format!("exportTo does not include the waypoint's namespace {waypoint_namespace}");
            self.status(d, State::Ignored(why), issues);
            return None;
        }
        Some(Rule {
            doc: d,
            spec,
            policy,
            host: qualify(&spec.host, ns),
            subsets_used: vec![false; spec.subsets.len()],
            applied: false,
            issues,
            lost: Vec::new(),
        })
    }
}

/// istiod's `exportTo`: empty or `*` is everyone, `.` the rule's own namespace, else the list.
fn exported_to(export_to: &[String], own: &str, to: &str) -> bool {
    export_to.is_empty()
        || export_to
            .iter()
            .any(|e| e == "*" || (e == "." && own == to) || e == to)
}

/// A rule's host as a fully qualified name: a short name is a Service of the rule's namespace.
fn qualify(host: &str, ns: &str) -> String {
    let host = host.trim().trim_end_matches('.').to_ascii_lowercase();
    if host.contains('.') || host == "*" {
        host
    } else {
        format!("{host}.{ns}.svc.{}", crate::snapshot::CLUSTER_DOMAIN)
    }
}

/// How specifically `host` names one of `names`: 0 for an exact name, else larger for a
/// shorter wildcard; `None` when it names none of them.
fn specificity(host: &str, names: &[String]) -> Option<usize> {
    if names.iter().any(|n| n == host) {
        return Some(0);
    }
    let suffix = host.strip_prefix('*')?;
    names
        .iter()
        .any(|n| n.ends_with(suffix) && n.len() > suffix.len())
        .then(|| usize::MAX - suffix.len())
}

/// How a rule ranks for one service, best first: a rule in the waypoint's namespace, then the
/// service's, then any other (istiod's lookup order for a proxy); the most specific host; the
/// oldest; then by namespace and name.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Rank<'d> {
    namespace: u8,
    specificity: usize,
    undated: bool,
    created: Option<k8s_openapi::jiff::Timestamp>,
    key: (&'d str, &'d str),
}

impl<'d> Rule<'d> {
    fn rank(&self, svc: &ServiceInfo, waypoint_ns: &str) -> Option<Rank<'d>> {
        let specificity = specificity(&self.host, &svc.hostnames)?;
        let object = &self.doc.object;
        let namespace = if object.namespace == waypoint_ns {
            0
        } else if object.namespace == svc.key.namespace {
            1
        } else {
            2
        };
        let created = match &self.doc.resource {
            Resource::DestinationRule(dr) => dr.metadata.creation_timestamp.as_ref().map(|t| t.0),
            _ => None,
        };
        Some(Rank {
            namespace,
            specificity,
            undated: created.is_none(),
            created,
            key: (object.namespace.as_str(), object.name.as_str()),
        })
    }

    fn name(&self) -> String {
        format!("{}/{}", self.doc.object.namespace, self.doc.object.name)
    }
}

/// The rule in force for `svc` among `rules` (see [`Rank`]), recording on the service, and on
/// each rule that loses, why the others are not in force.
fn in_force(rules: &mut [Rule<'_>], svc: &mut ServiceInfo, waypoint_ns: &str) -> Option<usize> {
    let mut ranked: Vec<(Rank<'_>, usize)> = rules
        .iter()
        .enumerate()
        .filter_map(|(i, r)| Some((r.rank(svc, waypoint_ns)?, i)))
        .collect();
    ranked.sort();
    let order: Vec<usize> = ranked.into_iter().map(|(_, i)| i).collect();
    let (&winner, others) = order.split_first()?;
    let why = format!(
        "{} is in force for service {}: Istio applies one rule per service (the waypoint's \
         namespace first, then the service's; the most specific host; the oldest)",
        rules[winner].name(),
        svc.key
    );
    svc.destination_rules = std::iter::once(PolicyInForce {
        resource: rules[winner].name(),
        in_force: true,
        reason: format!("host '{}' names the service", rules[winner].spec.host),
    })
    .chain(others.iter().map(|&i| PolicyInForce {
        resource: rules[i].name(),
        in_force: false,
        reason: why.clone(),
    }))
    .collect();
    for &i in others {
        rules[i].lost.push(why.clone());
    }
    rules[winner].applied = true;
    Some(winner)
}

/// Every port's clusters: its own, and one per subset of the rule in force.
fn build_clusters(svc: &mut ServiceInfo, mut rule: Option<&mut Rule<'_>>, pods: &PodLabels<'_>) {
    let ns = svc.key.namespace.clone();
    for port in &mut svc.ports {
        let policy_of = |subset: Option<&str>, rule: Option<&Rule<'_>>| {
            rule.map(|r| r.policy.for_cluster(port.port, subset))
                .unwrap_or_default()
        };
        let all: Vec<usize> = (0..port.endpoints.len()).collect();
        let own = policy_of(None, rule.as_deref());
        let mut clusters = vec![cluster(&svc.key, port, None, own, all)];
        if let Some(r) = rule.as_deref_mut() {
            for (i, subset) in r.spec.subsets.iter().enumerate() {
                let members: Vec<usize> = (0..port.endpoints.len())
                    .filter(|&e| {
                        let labels = pods.of(&ns, &port.endpoints[e]);
                        subset.labels.iter().all(|(k, v)| labels.get(k) == Some(v))
                    })
                    .collect();
                r.subsets_used[i] |= !members.is_empty();
                let policy = r.policy.for_cluster(port.port, Some(&subset.name));
                clusters.push(cluster(&svc.key, port, Some(&subset.name), policy, members));
            }
        }
        port.traffic.destination_rule = rule.as_deref().map(Rule::name);
        port.traffic.clusters = clusters;
    }
}

fn cluster(
    service: &routing::ServiceKey,
    port: &ServicePort,
    subset: Option<&str>,
    policy: resilience::ClusterPolicy,
    members: Vec<usize>,
) -> Cluster {
    let addrs: Vec<_> = members.iter().map(|&m| port.endpoints[m].addr).collect();
    let keys: Vec<u64> = addrs
        .iter()
        .map(|a| stable_hash(a.to_string().as_bytes()))
        .collect();
    let state = ClusterState::shared(service, port.port, subset);
    Cluster {
        subset: subset.map(str::to_owned),
        balancer: Balancer::new(&policy.lb.algorithm, &keys),
        endpoints: state.members(&addrs),
        state,
        policy,
        members,
    }
}

/// Endpoint labels a subset selects on: a pod's, found by its name (EndpointSlice targetRef,
/// selected pods) or else by its IP in the service's namespace; a ServiceEntry endpoint's own.
#[derive(Default)]
struct PodLabels<'d> {
    by_name: HashMap<(&'d str, &'d str), &'d BTreeMap<String, String>>,
    by_ip: HashMap<(&'d str, IpAddr), &'d BTreeMap<String, String>>,
}

fn pod_labels<'d>(docs: &[&'d Document]) -> PodLabels<'d> {
    let mut out = PodLabels::default();
    for d in docs {
        let ns = d.object.namespace.as_str();
        match &d.resource {
            Resource::Pod(p) => {
                let labels = p.metadata.labels.as_ref().unwrap_or(EMPTY_LABELS);
                out.by_name.insert((ns, d.object.name.as_str()), labels);
                if let Some(ip) = super::pod_ip(p) {
                    out.by_ip.insert((ns, ip), labels);
                }
            }
            Resource::ServiceEntry(se) => {
                for e in &se.spec.endpoints {
                    if let Ok(ip) = e.address.parse::<IpAddr>() {
                        out.by_ip.entry((ns, ip)).or_insert(&e.labels);
                    }
                }
            }
            _ => {}
        }
    }
    out
}

impl PodLabels<'_> {
    fn of(&self, ns: &str, endpoint: &crate::snapshot::Endpoint) -> &BTreeMap<String, String> {
        let by_name = endpoint
            .pod
            .as_deref()
            .and_then(|p| self.by_name.get(&(ns, p)));
        by_name
            .or_else(|| self.by_ip.get(&(ns, endpoint.addr.ip())))
            .copied()
            .unwrap_or(EMPTY_LABELS)
    }
}

fn error(i: PolicyIssue) -> StatusIssue {
    super::issue_err(i.field, i.message)
}

fn warning(field: impl Into<String>, message: impl Into<String>) -> StatusIssue {
    StatusIssue {
        severity: Severity::Warning,
        reason: None,
        field: field.into(),
        message: message.into(),
    }
}

#[cfg(test)]
mod tests;

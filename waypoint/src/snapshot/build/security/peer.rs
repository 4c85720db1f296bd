//! PeerAuthentications for the plain listener, in Istio's inheritance order: one whose
//! selector matches the waypoint's own pod labels in the Gateway's namespace, then the
//! Gateway's namespace-wide one, then the root namespace's mesh-wide one. At each level the
//! oldest wins (then the name), as istiod picks.

use super::super::{of_kind, Builder};
use super::targets::selects_gateway_pods;
use super::{policy_ref, spec_of, status_issue};
use crate::config::{Document, Resource};
use crate::snapshot::{GatewayRef, State, StatusIssue};
use authz::peer::PeerAuthentication;
use authz::spec::Attachment;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use routing::Severity;
use std::collections::BTreeMap;
use std::sync::Arc;

/// How specific a PeerAuthentication is for this waypoint; `None` when it is for others.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Level {
    Workload,
    Namespace,
    Mesh,
}

struct Candidate<'d> {
    doc: &'d Document,
    /// `metadata.creationTimestamp`: the oldest wins at a level.
    created: Option<Time>,
    compiled: PeerAuthentication,
    level: Result<Level, String>,
    issues: Vec<StatusIssue>,
}

impl<'a> Builder<'a> {
    /// Compiles every PeerAuthentication, reports each, and returns those in force for the
    /// waypoint, most specific first.
    pub(super) fn peer_authentications(
        &mut self,
        docs: &[&'a Document],
        gateway: &GatewayRef,
        root_namespace: &str,
    ) -> Vec<Arc<PeerAuthentication>> {
        let objects = of_kind(docs, |r| match r {
            Resource::PeerAuthentication(p) => Some(&**p),
            _ => None,
        });
        let mut candidates: Vec<Candidate<'a>> = objects
            .into_iter()
            .map(|(doc, object)| {
                let created = object.metadata.creation_timestamp.clone();
                candidate(
                    doc,
                    spec_of(&object.spec),
                    created,
                    (gateway, root_namespace),
                )
            })
            .collect();
        // Unset timestamps last: a file's objects have none unless written.
        candidates.sort_by(|a, b| {
            (
                a.level.as_ref().ok(),
                a.created.is_none(),
                &a.created,
                &a.doc.object.name,
            )
                .cmp(&(
                    b.level.as_ref().ok(),
                    b.created.is_none(),
                    &b.created,
                    &b.doc.object.name,
                ))
        });
        let mut in_force: Vec<Arc<PeerAuthentication>> = Vec::new();
        let mut winner: BTreeMap<Level, String> = BTreeMap::new();
        for c in candidates {
            let Candidate {
                doc,
                compiled,
                level,
                mut issues,
                ..
            } = c;
            issues.extend(compiled.issues.iter().map(status_issue));
            let failed = issues.iter().any(|i| i.severity == Severity::Error);
            let state = match level {
                Err(why) => State::Ignored(why),
                Ok(level) => match winner.get(&level) {
                    Some(first) => State::Ignored(format!(
                        "{first} is older (or first by name) at the same level and is in force instead"
                    )),
                    None => {
                        winner.insert(level, doc.object.to_string());
                        in_force.push(Arc::new(compiled));
                        State::Accepted
                    }
                },
            };
            let state = if failed { State::FailClosed } else { state };
            self.status(doc, state, issues);
        }
        in_force
    }
}

fn candidate<'d>(
    doc: &'d Document,
    spec: &serde_json::Value,
    created: Option<Time>,
    (gateway, root_namespace): (&GatewayRef, &str),
) -> Candidate<'d> {
    let compiled = PeerAuthentication::compile(policy_ref(doc), spec);
    let mut issues = Vec::new();
    let namespace = doc.object.namespace.as_str();
    let level = match Attachment::of(spec) {
        Err(e) => {
            issues.push(StatusIssue {
                severity: Severity::Error,
                reason: None,
                field: "spec.selector".into(),
                message: format!("{e}; the policy applies nowhere until fixed"),
            });
            Err("its selector cannot be read".to_string())
        }
        Ok(a) => {
            let labels = a.selector.map(|s| s.match_labels).unwrap_or_default();
            level(namespace, &labels, gateway, root_namespace)
        }
    };
    Candidate {
        doc,
        created,
        compiled,
        level,
        issues,
    }
}

/// Where a PeerAuthentication in `namespace` selecting `labels` (empty: no selector) stands
/// for this waypoint, or why it does not apply to it.
fn level(
    namespace: &str,
    labels: &BTreeMap<String, String>,
    gateway: &GatewayRef,
    root_namespace: &str,
) -> Result<Level, String> {
    let own = namespace == gateway.namespace;
    if !labels.is_empty() {
        return if own && selects_gateway_pods(labels, gateway) {
            Ok(Level::Workload)
        } else {
            Err(format!(
                "selects other workloads than waypoint {gateway}'s pods: their ztunnel enforces it"
            ))
        };
    }
    if own {
        Ok(Level::Namespace)
    } else if namespace == root_namespace {
        Ok(Level::Mesh)
    } else {
        Err(format!(
            "namespace-wide in {namespace}, not the waypoint's namespace ({}): ztunnel enforces it for that namespace's workloads",
            gateway.namespace
        ))
    }
}

//! Istio's waypoint binding: which services and pods this waypoint takes traffic for.

use super::gateway_selection::ServedGateway;
use super::services::pod_ip;
use super::{of_kind, Builder, EMPTY_LABELS};
use crate::config::{Document, Resource};
use crate::snapshot::{
    Binding, WorkloadIdentity, WorkloadInfo, DATAPLANE_MODE, USE_WAYPOINT, USE_WAYPOINT_NAMESPACE,
    WAYPOINT_FOR,
};
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

impl<'a> Builder<'a> {
    /// Istio's binding: the object's own `istio.io/use-waypoint` label wins over its
    /// namespace's; the value `none` opts out; the waypoint's namespace defaults to the object's.
    pub(super) fn binding(
        &self,
        labels: &BTreeMap<String, String>,
        namespace: &str,
        served: &ServedGateway,
    ) -> Binding {
        let gateway = &served.gateway;
        let ns_labels = self
            .namespaces
            .get(namespace)
            .copied()
            .unwrap_or(EMPTY_LABELS);
        let (source, src_labels) = if labels.contains_key(USE_WAYPOINT) {
            ("the object's", labels)
        } else if ns_labels.contains_key(USE_WAYPOINT) {
            ("its namespace's", ns_labels)
        } else {
            return Binding::NotBound(format!(
                "no {USE_WAYPOINT} label on it or its namespace (set {USE_WAYPOINT}={} to use this waypoint)",
                gateway.name
            ));
        };
        let name = src_labels
            .get(USE_WAYPOINT)
            .map(String::as_str)
            .unwrap_or_default();
        if name == "none" {
            return Binding::NotBound(format!("{source} label {USE_WAYPOINT}=none opts it out"));
        }
        let wp_ns = src_labels
            .get(USE_WAYPOINT_NAMESPACE)
            .map(String::as_str)
            .unwrap_or(namespace);
        if name != gateway.name || wp_ns != gateway.namespace {
            return Binding::NotBound(format!("{source} labels name waypoint {wp_ns}/{name}"));
        }
        if !served
            .allowed
            .allows(namespace, ns_labels, &gateway.namespace)
        {
            return Binding::NotBound(format!(
                "namespace {namespace} is not allowed by the Gateway's listener allowedRoutes"
            ));
        }
        Binding::Bound
    }

    /// Every pod with an IP, its identity, whether it is in the ambient mesh, and whether
    /// this waypoint takes traffic addressed to it (only a waypoint for workloads does).
    pub(super) fn workloads(
        &self,
        docs: &[&'a Document],
        served: &ServedGateway,
    ) -> HashMap<IpAddr, WorkloadInfo> {
        let pods = of_kind(docs, |r| match r {
            Resource::Pod(p) => Some(&**p),
            _ => None,
        });
        let waypoint_for = &served.waypoint_for;
        let mut out = HashMap::new();
        for (d, p) in pods {
            let Some(ip) = pod_ip(p) else {
                continue;
            };
            let ns = d.object.namespace.as_str();
            let labels = p.metadata.labels.as_ref().unwrap_or(EMPTY_LABELS);
            let binding = if waypoint_for.takes_workloads() {
                self.binding(labels, ns, served)
            } else {
                Binding::NotBound(format!(
                    "waypoint {} takes {} traffic ({WAYPOINT_FOR}); pod addresses need workload or all",
                    served.gateway,
                    waypoint_for.as_str()
                ))
            };
            let service_account = p
                .spec
                .as_ref()
                .and_then(|s| s.service_account_name.clone())
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "default".into());
            let info = WorkloadInfo {
                namespace: ns.to_string(),
                name: d.object.name.clone(),
                ip,
                identity: WorkloadIdentity {
                    namespace: ns.to_string(),
                    service_account,
                },
                ambient: self.in_ambient_mesh(labels, ns),
                binding,
            };
            out.insert(ip, info);
        }
        out
    }

    /// A pod's own `istio.io/dataplane-mode` label wins over its namespace's.
    fn in_ambient_mesh(&self, labels: &BTreeMap<String, String>, ns: &str) -> bool {
        let ns_labels = self.namespaces.get(ns).copied().unwrap_or(EMPTY_LABELS);
        match labels.get(DATAPLANE_MODE).map(String::as_str) {
            Some("none") => false,
            Some("ambient") => true,
            _ => ns_labels.get(DATAPLANE_MODE).map(String::as_str) == Some("ambient"),
        }
    }
}

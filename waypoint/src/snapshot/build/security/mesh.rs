//! The MeshConfig, read where istiod reads it: ConfigMap `istio-system/istio`, `data.mesh`.
//! Other ConfigMaps are accepted and not acted on.

use super::super::{issue_err, of_kind, Builder};
use super::Providers;
use crate::config::{Document, MeshConfig, Resource, MESH_CONFIG_MAP};
use crate::snapshot::{State, StatusIssue};
use authz::ext_authz::ExtAuthzProvider;
use routing::Severity;
use std::sync::Arc;

impl<'a> Builder<'a> {
    /// The MeshConfig in force (the default when the ConfigMap is absent or unreadable) and
    /// its ext_authz providers. A MeshConfig that is not one is an error of the folder; a
    /// provider that does not compile is missing (CUSTOM policies naming it deny) and its
    /// ConfigMap is loaded fail closed.
    pub(super) fn mesh_config(&mut self, docs: &[&'a Document]) -> (MeshConfig, Providers) {
        let mut mesh = MeshConfig::default();
        let mut providers = Providers::new();
        let maps = of_kind(docs, |r| match r {
            Resource::ConfigMap(cm) => Some(&**cm),
            _ => None,
        });
        for (doc, cm) in maps {
            let name = (doc.object.namespace.as_str(), doc.object.name.as_str());
            if name != MESH_CONFIG_MAP {
                self.status(doc, State::Accepted, Vec::new());
                continue;
            }
            match MeshConfig::from_config_map(cm) {
                Ok(m) => {
                    let (found, issues) = ext_authz_providers(&m);
                    let state = if issues.iter().any(|i| i.severity == Severity::Error) {
                        State::FailClosed
                    } else {
                        State::Accepted
                    };
                    self.status(doc, state, issues);
                    (mesh, providers) = (m, found);
                }
                Err((field, message)) => {
                    let message =
                        format!("{message}; the default MeshConfig is not used instead: fix it");
                    self.status(doc, State::Error, vec![issue_err(field, message)]);
                }
            }
        }
        (mesh, providers)
    }
}

/// Every `envoyExtAuthzHttp`/`envoyExtAuthzGrpc` provider by name; the others (telemetry
/// providers) are left to their readers.
fn ext_authz_providers(mesh: &MeshConfig) -> (Providers, Vec<StatusIssue>) {
    let mut providers = Providers::new();
    let mut issues = Vec::new();
    for (i, entry) in mesh.extension_providers.iter().enumerate() {
        let field = format!("data.mesh.extensionProviders[{i}]");
        match ExtAuthzProvider::parse(entry) {
            Ok(Some(p)) if providers.contains_key(&p.name) => issues.push(StatusIssue {
                severity: Severity::Warning,
                reason: None,
                field: format!("{field}.name"),
                message: format!(
                    "a provider named '{}' is declared earlier; this one is not used: rename it",
                    p.name
                ),
            }),
            Ok(Some(p)) => {
                providers.insert(p.name.clone(), Arc::new(p));
            }
            Ok(None) => {}
            Err(why) => issues.push(issue_err(
                field,
                format!(
                    "{why}; provider '{}' is missing, so CUSTOM policies naming it deny the requests they match",
                    entry.get("name").and_then(|n| n.as_str()).unwrap_or("")
                ),
            )),
        }
    }
    (providers, issues)
}

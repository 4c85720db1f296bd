//! TCPRoute → [`CompiledTcpRoute`]: weighted backends for a Service port that carries TCP.
//! TCP has nothing to match on, so a route has one rule.

use gateway_api::experimental::tcproutes::TcpRoute;

use crate::backend::{compile_tcp_backend_ref, pick, BackendLookup, WeightedBackend};
use crate::compile::RouteId;
use crate::issue::{Issue, IssueReason};

/// A TCPRoute after validation: the weighted backends of its single rule.
#[derive(Debug, Clone)]
pub struct CompiledTcpRoute {
    /// The route's namespace and name.
    pub id: RouteId,
    /// The first rule's backendRefs in spec order, invalid ones included so they keep their
    /// share; empty when the route has no rule.
    pub backends: Vec<WeightedBackend>,
}

impl CompiledTcpRoute {
    /// Weighted choice, as for HTTP rules: `None` when no backend has weight (the connection
    /// is refused).
    pub fn pick_backend(&self, random: u32) -> Option<&WeightedBackend> {
        pick(&self.backends, random)
    }
}

/// Compiles a TCPRoute; never panics. Issues with Severity::Error mean the route cannot be
/// honoured exactly (invalid backends keep their share, and those connections are refused).
pub fn compile_tcp_route(
    route: &TcpRoute,
    lookup: &dyn BackendLookup,
) -> (CompiledTcpRoute, Vec<Issue>) {
    let id = RouteId::from_metadata(
        route.metadata.namespace.as_deref(),
        route.metadata.name.as_deref(),
    );
    let mut issues = Vec::new();
    let rules = &route.spec.rules;
    if rules.is_empty() {
        issues.push(Issue::error(
            IssueReason::Invalid,
            "spec.rules",
            "a TCPRoute needs one rule with backendRefs",
        ));
    }
    if rules.len() > 1 {
        issues.push(Issue::error(
            IssueReason::Unsupported,
            "spec.rules",
            format!(
                "{} rules given; TCP has nothing to match on, so only one rule is allowed (merge the backendRefs)",
                rules.len()
            ),
        ));
    }
    let backends = rules
        .first()
        .map(|rule| {
            rule.backend_refs
                .iter()
                .enumerate()
                .map(|(j, b)| {
                    compile_tcp_backend_ref(
                        b,
                        &format!("spec.rules[0].backendRefs[{j}]"),
                        &id.namespace,
                        lookup,
                        &mut issues,
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    if route.spec.use_default_gateways.is_some() {
        issues.push(Issue::warning(
            IssueReason::Unsupported,
            "spec.useDefaultGateways",
            "useDefaultGateways is ignored for Service parentRefs",
        ));
    }
    (CompiledTcpRoute { id, backends }, issues)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BackendTarget, ServiceKey};

    struct Known;
    impl BackendLookup for Known {
        fn check_service(&self, service: &ServiceKey, port: u16) -> Result<(), String> {
            if service.name.starts_with("db") && port == 5432 {
                Ok(())
            } else {
                Err(format!("service {service} not found"))
            }
        }

        fn reference_permitted(&self, _from_namespace: &str, _to: &ServiceKey) -> bool {
            false
        }
    }

    fn route(yaml: &str) -> TcpRoute {
        serde_yaml_ng::from_str(yaml).expect("route yaml")
    }

    #[test]
    fn weighted_backends_and_their_problems() {
        let r = route(
            "apiVersion: gateway.networking.k8s.io/v1alpha2\nkind: TCPRoute\nmetadata: {name: db, namespace: shop}\nspec:\n  parentRefs: [{group: \"\", kind: Service, name: db, port: 5432}]\n  rules:\n  - backendRefs:\n    - {name: db-a, port: 5432, weight: 3}\n    - {name: db-b, port: 5432, weight: 1}\n    - {name: nope, port: 5432, weight: 0}\n",
        );
        let (compiled, issues) = compile_tcp_route(&r, &Known);
        assert_eq!(compiled.id.to_string(), "shop/db");
        assert_eq!(compiled.backends.len(), 3);
        assert!(matches!(
            compiled.backends[2].target,
            BackendTarget::Invalid { .. }
        ));
        assert_eq!(issues.len(), 1);
        assert_eq!(issues[0].field, "spec.rules[0].backendRefs[2]");
        let mut a = 0;
        for r in 0..1000u32 {
            let random = r.wrapping_mul(4_294_967);
            if let Some(BackendTarget::Service { service, .. }) =
                compiled.pick_backend(random).map(|b| &b.target)
            {
                a += usize::from(service.name == "db-a");
            }
        }
        assert!((700..=800).contains(&a), "db-a got {a} of 1000");
        let (parents, parent_issues) = crate::tcp_parent_services(&r);
        assert!(parent_issues.is_empty());
        assert_eq!(parents[0].port, Some(5432));
    }

    #[test]
    fn more_than_one_rule_is_an_error() {
        let r = route(
            "apiVersion: gateway.networking.k8s.io/v1alpha2\nkind: TCPRoute\nmetadata: {name: db, namespace: shop}\nspec:\n  rules:\n  - backendRefs: [{name: db-a, port: 5432}]\n  - backendRefs: [{name: db-b, port: 5432}]\n",
        );
        let (_, issues) = compile_tcp_route(&r, &Known);
        assert!(
            issues
                .iter()
                .any(|i| i.field == "spec.rules" && i.reason == IssueReason::Unsupported),
            "{issues:?}"
        );
    }
}

//! Which namespaces a listener admits routes from, and a Gateway ListenerSets from: Gateway
//! API's `from: Same | All | Selector` over Kubernetes label selectors.

use std::collections::BTreeMap;

use gateway_api::experimental::gateways::{
    Gateway, GatewayAllowedListenersNamespacesFrom, GatewayListeners,
    GatewayListenersAllowedRoutesNamespacesFrom, GatewayListenersAllowedRoutesNamespacesSelector,
};

/// The label Kubernetes puts on every Namespace (since 1.22); selectors commonly use it.
const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// A Gateway admits ListenerSets only as its spec.allowedListeners says (none by default).
pub(super) fn admits_listener_set(
    g: &Gateway,
    ns: &str,
    labels: &BTreeMap<String, String>,
) -> bool {
    let gateway_ns = g.metadata.namespace.as_deref().unwrap_or("default");
    let namespaces = g
        .spec
        .allowed_listeners
        .as_ref()
        .and_then(|a| a.namespaces.as_ref());
    match namespaces.and_then(|n| n.from.as_ref()) {
        None | Some(GatewayAllowedListenersNamespacesFrom::None) => false,
        Some(GatewayAllowedListenersNamespacesFrom::Same) => ns == gateway_ns,
        Some(GatewayAllowedListenersNamespacesFrom::All) => true,
        Some(GatewayAllowedListenersNamespacesFrom::Selector) => {
            match namespaces.and_then(|n| n.selector.as_ref()) {
                Some(sel) => {
                    let sel: GatewayListenersAllowedRoutesNamespacesSelector =
                        match serde_json::to_value(sel).and_then(serde_json::from_value) {
                            Ok(s) => s,
                            Err(_) => return false,
                        };
                    selector_matches(&sel, ns, labels)
                }
                None => false,
            }
        }
    }
}

/// Whether listener `l` of a Gateway in `gateway_ns` admits routes from namespace `ns`.
pub(super) fn admits_namespace(
    l: &GatewayListeners,
    ns: &str,
    labels: &BTreeMap<String, String>,
    gateway_ns: &str,
) -> bool {
    let namespaces = l
        .allowed_routes
        .as_ref()
        .and_then(|a| a.namespaces.as_ref());
    match namespaces.and_then(|n| n.from.as_ref()) {
        None | Some(GatewayListenersAllowedRoutesNamespacesFrom::Same) => ns == gateway_ns,
        Some(GatewayListenersAllowedRoutesNamespacesFrom::All) => true,
        Some(GatewayListenersAllowedRoutesNamespacesFrom::Selector) => {
            match namespaces.and_then(|n| n.selector.as_ref()) {
                Some(sel) => selector_matches(sel, ns, labels),
                // The CRD requires a selector with Selector; without one nothing is admitted.
                None => false,
            }
        }
    }
}

/// A Kubernetes label selector against a namespace's labels (plus the name label Kubernetes
/// adds to every namespace).
fn selector_matches(
    sel: &GatewayListenersAllowedRoutesNamespacesSelector,
    ns: &str,
    labels: &BTreeMap<String, String>,
) -> bool {
    let mut labels = labels.clone();
    labels
        .entry(NAMESPACE_NAME_LABEL.to_string())
        .or_insert_with(|| ns.to_string());
    let exprs: Vec<SelectorRequirement<'_>> = sel
        .match_expressions
        .iter()
        .flatten()
        .map(|e| SelectorRequirement {
            key: &e.key,
            operator: &e.operator,
            values: e.values.as_deref().unwrap_or_default(),
        })
        .collect();
    labels_match(sel.match_labels.as_ref(), &exprs, &labels)
}

/// One `matchExpressions` entry of a Kubernetes label selector.
pub struct SelectorRequirement<'a> {
    /// The label key.
    pub key: &'a str,
    /// In, NotIn, Exists or DoesNotExist.
    pub operator: &'a str,
    /// The values for In and NotIn.
    pub values: &'a [String],
}

/// Whether `labels` satisfy a Kubernetes label selector: every `matchLabels` pair and every
/// expression (In, NotIn, Exists, DoesNotExist).
pub fn labels_match(
    match_labels: Option<&BTreeMap<String, String>>,
    exprs: &[SelectorRequirement<'_>],
    labels: &BTreeMap<String, String>,
) -> bool {
    let labels_ok = match_labels
        .into_iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let exprs_ok = exprs.iter().all(|e| match e.operator {
        "In" => labels.get(e.key).is_some_and(|v| e.values.contains(v)),
        "NotIn" => labels.get(e.key).is_none_or(|v| !e.values.contains(v)),
        "Exists" => labels.contains_key(e.key),
        "DoesNotExist" => !labels.contains_key(e.key),
        // An operator we cannot read admits nothing rather than everything.
        _ => false,
    });
    labels_ok && exprs_ok
}

use super::*;
use serde_json::json;

fn list() -> StatusList {
    let cond = |t: &str, s: &str, r: &str| json!({"type": t, "status": s, "reason": r, "message": "", "observedGeneration": 1});
    let ok_listener = json!({
        "name": "http",
        "supportedKinds": [{"group": GATEWAY_GROUP, "kind": "HTTPRoute"}],
        "attachedRoutes": 1,
        "conditions": [cond("Accepted", "True", "Accepted"), cond("ResolvedRefs", "True", "ResolvedRefs"), cond("Programmed", "True", "Programmed")],
    });
    StatusList::parse(&json!({"items": [
        {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
         "metadata": {"namespace": "infra", "name": "gw", "generation": 1},
         "status": {"addresses": [], "conditions": [cond("Accepted", "True", "Accepted")], "listeners": [ok_listener]}},
        {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
         "metadata": {"namespace": "infra", "name": "r", "generation": 1},
         "status": {"parents": [{"parentRef": {"group": GATEWAY_GROUP, "kind": "Gateway", "name": "gw"},
             "controllerName": "waypoint.io/gateway-controller",
             "conditions": [cond("Accepted", "True", "Accepted"), cond("ResolvedRefs", "False", "BackendNotFound")]}]}},
        {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
         "metadata": {"namespace": "infra", "name": "stale", "generation": 2},
         "status": {"parents": [{"parentRef": {"name": "gw", "namespace": "infra"},
             "controllerName": "x", "conditions": [cond("Accepted", "True", "Accepted")]}]}},
    ]}).to_string())
    .expect("parses")
}

fn check(yaml: &str) -> Value {
    let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(yaml).expect("yaml");
    serde_json::to_value(v).expect("json")
}

fn eval(yaml: &str) -> Verdict {
    evaluate(&check(yaml), &list(), &|r| r == "infra/gw")
}

#[test]
fn routes_accepted() {
    assert_eq!(
        eval("{check: routesAccepted, parent: {kind: Gateway, ref: infra/gw}, routes: [infra/r]}"),
        Verdict::Pass
    );
    // The runner-assigned address counts; without it the Gateway has none.
    let v = evaluate(
        &check("{check: routesAccepted, parent: {kind: Gateway, ref: infra/gw}, routes: []}"),
        &list(),
        &|_| false,
    );
    assert!(matches!(v, Verdict::Fail(_)), "{v:?}");
    assert!(matches!(eval("{check: routesAccepted, parent: {kind: Gateway, ref: infra/gw}, routes: [infra/missing]}"), Verdict::Fail(_)));
}

#[test]
fn route_condition_checks_status_reason_and_generation() {
    assert_eq!(eval("{check: routeCondition, route: infra/r, parent: {kind: Gateway, ref: infra/gw}, type: ResolvedRefs, status: 'False', reason: BackendNotFound}"), Verdict::Pass);
    assert!(matches!(eval("{check: routeCondition, route: infra/r, parent: {kind: Gateway, ref: infra/gw}, type: ResolvedRefs, status: 'False', reason: Other}"), Verdict::Fail(_)));
    assert!(matches!(eval("{check: routeCondition, route: infra/r, parent: {kind: Gateway, ref: infra/gw}, type: ResolvedRefs, status: 'True'}"), Verdict::Fail(_)));
    // observedGeneration 1 on an object at generation 2 is stale.
    assert!(matches!(eval("{check: routeCondition, route: infra/stale, parent: {kind: Gateway, ref: infra/gw}, type: Accepted, status: 'True'}"), Verdict::Fail(_)));
}

#[test]
fn listener_status_and_gateway_checks() {
    assert_eq!(eval("{check: listenerStatus, parent: {kind: Gateway, ref: infra/gw}, listeners: [{name: http, supportedKinds: [HTTPRoute], attachedRoutes: 1, conditions: [{type: Accepted, status: 'True'}]}]}"), Verdict::Pass);
    assert!(matches!(eval("{check: listenerStatus, parent: {kind: Gateway, ref: infra/gw}, listeners: [{name: http, attachedRoutes: 2}]}"), Verdict::Fail(_)));
    assert_eq!(
        eval("{check: gatewayCondition, gateway: infra/gw, type: Accepted, status: 'True'}"),
        Verdict::Pass
    );
    assert!(matches!(
        eval("{check: gatewayZeroAttachedRoutes, gateway: infra/gw}"),
        Verdict::Fail(_)
    ));
}

#[test]
fn checks_needing_an_api_server_are_skipped() {
    assert!(matches!(
        eval("{check: observedGenerationBump, object: {kind: HTTPRoute, ref: infra/r}}"),
        Verdict::Skip(_)
    ));
    assert!(matches!(
        eval("{check: statusSequence, steps: [{change: 'patch x', expect: []}]}"),
        Verdict::Skip(_)
    ));
}

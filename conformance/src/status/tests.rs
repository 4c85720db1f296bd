use super::*;
use serde_json::json;
use std::collections::BTreeMap;

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

fn applied() -> Applied {
    Applied {
        addressed: ["infra/gw".to_owned()].into(),
        generations: BTreeMap::new(),
    }
}

fn eval(yaml: &str) -> Verdict {
    evaluate(&check(yaml), &list(), &applied())
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
        &Applied::default(),
    );
    assert!(matches!(v, Verdict::Fail(_)), "{v:?}");
    assert!(matches!(eval("{check: routesAccepted, parent: {kind: Gateway, ref: infra/gw}, routes: [infra/missing]}"), Verdict::Fail(_)));
}

#[test]
fn route_condition_checks_status_reason_and_generation() {
    assert_eq!(eval("{check: routeCondition, route: infra/r, parent: {kind: Gateway, ref: infra/gw}, type: ResolvedRefs, status: 'False', reason: BackendNotFound}"), Verdict::Pass);
    assert!(matches!(eval("{check: routeCondition, route: infra/r, parent: {kind: Gateway, ref: infra/gw}, type: ResolvedRefs, status: 'False', reason: Other}"), Verdict::Fail(_)));
    assert!(matches!(eval("{check: routeCondition, route: infra/r, parent: {kind: Gateway, ref: infra/gw}, type: ResolvedRefs, status: 'True'}"), Verdict::Fail(_)));
    // observedGeneration 1 on an object the manifest writes at generation 2 is stale; what
    // the status output claims the generation is does not matter.
    let stale = "{check: routeCondition, route: infra/stale, parent: {kind: Gateway, ref: infra/gw}, type: Accepted, status: 'True'}";
    assert_eq!(eval(stale), Verdict::Pass);
    let mut at_2 = applied();
    at_2.generations
        .insert(("HTTPRoute".into(), "infra/stale".into()), 2);
    assert!(matches!(
        evaluate(&check(stale), &list(), &at_2),
        Verdict::Fail(_)
    ));
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

/// The status list with one edit to the Gateway `infra/gw` object.
fn list_with_gateway(edit: impl Fn(&mut Value)) -> StatusList {
    let mut items: Vec<Value> = list().items;
    edit(&mut items[0]);
    StatusList { items }
}

#[test]
fn every_check_can_fail() {
    let gw_accepted =
        "{check: gatewayCondition, gateway: infra/gw, type: Accepted, status: 'True'}";
    let routes_accepted =
        "{check: routesAccepted, parent: {kind: Gateway, ref: infra/gw}, routes: [infra/r]}";
    let no_observed_generation = list_with_gateway(|gw| {
        if let Some(c) = gw["status"]["conditions"][0].as_object_mut() {
            c.remove("observedGeneration");
        }
    });
    let no_listeners = list_with_gateway(|gw| gw["status"]["listeners"] = json!([]));
    let at_generation_2 = Applied::new(
        ["infra/gw".to_owned()].into(),
        &[serde_yaml_ng::from_str(
            "{kind: Gateway, metadata: {namespace: infra, name: gw, generation: 2}}",
        )
        .expect("yaml")],
    );
    // (what is wrong, check, status, applied, expected failure text)
    let rows: [(&str, &str, StatusList, Applied, &str); 6] = [
        ("observedGeneration missing", gw_accepted, no_observed_generation, applied(), "has no observedGeneration"),
        ("manifest at generation 2, observed 1", gw_accepted, list(), at_generation_2, "observedGeneration 1, object generation 2"),
        ("no listeners in status", routes_accepted, no_listeners, applied(), "reports no listeners"),
        ("unknown check kind", "{check: gatewayTeleported, gateway: infra/gw}", list(), applied(), "unknown status check"),
        ("wrong route condition status", "{check: routeCondition, route: infra/r, parent: {kind: Gateway, ref: infra/gw}, type: Accepted, status: 'False'}", list(), applied(), "Accepted=True"),
        ("wrong route condition reason", "{check: routeCondition, route: infra/r, parent: {kind: Gateway, ref: infra/gw}, type: ResolvedRefs, status: 'False', reason: RefNotPermitted}", list(), applied(), "expected \"RefNotPermitted\""),
    ];
    for (what, yaml, status, applied, want) in rows {
        match evaluate(&check(yaml), &status, &applied) {
            Verdict::Fail(why) => assert!(why.contains(want), "{what}: {why}"),
            other => panic!("{what}: {other:?}, expected a failure"),
        }
    }
    // The same checks pass on the unedited status, so each row fails for its one defect.
    assert_eq!(eval(gw_accepted), Verdict::Pass);
    assert_eq!(eval(routes_accepted), Verdict::Pass);
}

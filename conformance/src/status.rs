//! statusChecks (section 6), evaluated against the status the waypoint's config loader
//! reports (`waypoint check DIR --gateway-class waypoint --status`): a Kubernetes-style list
//! `{"items": [{apiVersion, kind, metadata: {namespace, name, generation}, status}]}` whose
//! `status` has the Gateway API shape.

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

pub const GATEWAY_GROUP: &str = "gateway.networking.k8s.io";

/// What one check concluded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Fail(String),
    Skip(String),
}

/// The objects `waypoint check --status` reported.
#[derive(Debug, Clone, Default)]
pub struct StatusList {
    items: Vec<Value>,
}

impl StatusList {
    pub fn parse(json: &str) -> Result<StatusList, String> {
        let v: Value = serde_json::from_str(json)
            .map_err(|e| format!("`waypoint check --status` did not print JSON: {e}"))?;
        let items = v
            .get("items")
            .and_then(Value::as_array)
            .cloned()
            .ok_or("`waypoint check --status` JSON has no `items` list")?;
        Ok(StatusList { items })
    }

    /// The object of `kind` (any route kind when `kind` is None) named `ns/name`.
    fn find(&self, kind: Option<&str>, reference: &str) -> Option<&Value> {
        let (ns, name) = split_ref(reference);
        self.items.iter().find(|o| {
            let k = o.get("kind").and_then(Value::as_str).unwrap_or("");
            let kind_ok = match kind {
                Some(want) => k == want,
                None => k.ends_with("Route"),
            };
            kind_ok
                && str_at(o, &["metadata", "name"]) == Some(name)
                && str_at(o, &["metadata", "namespace"]).unwrap_or("default") == ns
        })
    }
}

fn split_ref(reference: &str) -> (&str, &str) {
    reference.split_once('/').unwrap_or(("default", reference))
}

fn str_at<'v>(v: &'v Value, path: &[&str]) -> Option<&'v str> {
    path.iter().try_fold(v, |v, k| v.get(*k))?.as_str()
}

fn array<'v>(v: &'v Value, path: &[&str]) -> &'v [Value] {
    path.iter()
        .try_fold(v, |v, k| v.get(*k))
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// What the runner knows that the status output must agree with: the Gateways it gave an
/// address, and the generation each object it applied is at.
#[derive(Debug, Clone, Default)]
pub struct Applied {
    /// `ns/name` of every Gateway the runner serves on an address of its own.
    pub addressed: BTreeSet<String>,
    /// (kind, `ns/name`) → `metadata.generation` as the manifest wrote it.
    pub generations: BTreeMap<(String, String), i64>,
}

impl Applied {
    /// The Gateways in `addressed` and the generations the manifests `docs` write.
    pub fn new(addressed: BTreeSet<String>, docs: &[serde_yaml_ng::Value]) -> Applied {
        let generations = docs
            .iter()
            .filter_map(|doc| {
                let gen = doc.get("metadata")?.get("generation")?.as_i64()?;
                let (ns, name) = crate::manifests::key(doc);
                let kind = crate::manifests::kind(doc).to_owned();
                Some(((kind, format!("{ns}/{name}")), gen))
            })
            .collect();
        Applied {
            addressed,
            generations,
        }
    }

    /// The generation a reported object must be observed at: the manifest's
    /// `metadata.generation` when it writes one, else 1, since the runner applies each
    /// object once (it has no API server to bump generations).
    fn generation(&self, obj: &Value) -> i64 {
        let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
        let ns = str_at(obj, &["metadata", "namespace"]).unwrap_or("default");
        let name = str_at(obj, &["metadata", "name"]).unwrap_or("");
        self.generations
            .get(&(kind.to_owned(), format!("{ns}/{name}")))
            .copied()
            .unwrap_or(1)
    }
}

/// An expected condition: type, status, optional reason.
struct Want<'a> {
    kind: &'a str,
    status: &'a str,
    reason: Option<&'a str>,
}

impl<'a> Want<'a> {
    fn from(check: &'a Value) -> Want<'a> {
        Want {
            kind: check.get("type").and_then(Value::as_str).unwrap_or(""),
            status: check
                .get("status")
                .and_then(Value::as_str)
                .unwrap_or("True"),
            reason: check.get("reason").and_then(Value::as_str),
        }
    }

    /// Present in `conditions` with the right status and reason, and (as upstream insists)
    /// observedGeneration equal to the object's generation; a condition without one fails.
    fn check(&self, conditions: &[Value], gen: i64, what: &str) -> Result<(), String> {
        let Some(c) = conditions
            .iter()
            .find(|c| c.get("type").and_then(Value::as_str) == Some(self.kind))
        else {
            return Err(format!("{what} has no {} condition", self.kind));
        };
        let status = c.get("status").and_then(Value::as_str).unwrap_or("");
        let reason = c.get("reason").and_then(Value::as_str).unwrap_or("");
        if status != self.status {
            return Err(format!(
                "{what} {}={status} (reason {reason}), expected {}",
                self.kind, self.status
            ));
        }
        if let Some(want) = self.reason {
            if reason != want {
                return Err(format!(
                    "{what} {} reason {reason:?}, expected {want:?}",
                    self.kind
                ));
            }
        }
        match c.get("observedGeneration").and_then(Value::as_i64) {
            Some(seen) if seen == gen => Ok(()),
            Some(seen) => Err(format!(
                "{what} {} observedGeneration {seen}, object generation {gen}",
                self.kind
            )),
            None => Err(format!(
                "{what} {} has no observedGeneration (object generation {gen})",
                self.kind
            )),
        }
    }
}

/// `parentRef` of a route status entry matches the expected parent (group and kind default
/// to the Gateway API group and Gateway; namespace may be omitted when it is the route's).
fn parent_matches(actual: &Value, kind: &str, reference: &str, route_ns: &str) -> bool {
    let (ns, name) = split_ref(reference);
    let group = actual
        .get("group")
        .and_then(Value::as_str)
        .unwrap_or(GATEWAY_GROUP);
    let k = actual
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or("Gateway");
    let n = actual.get("name").and_then(Value::as_str).unwrap_or("");
    let actual_ns = actual
        .get("namespace")
        .and_then(Value::as_str)
        .unwrap_or(route_ns);
    group == GATEWAY_GROUP && k == kind && n == name && actual_ns == ns
}

fn parent_of(check: &Value, key: &str) -> (String, String) {
    let p = check.get(key);
    (
        p.and_then(|p| p.get("kind"))
            .and_then(Value::as_str)
            .unwrap_or("Gateway")
            .to_owned(),
        p.and_then(|p| p.get("ref"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned(),
    )
}

/// The status.parents entry of `route` for the parent.
fn route_parent_entry<'v>(
    status: &'v StatusList,
    route: &str,
    kind: &str,
    parent: &str,
) -> Result<(&'v Value, &'v Value), String> {
    let obj = status
        .find(None, route)
        .ok_or_else(|| format!("route {route} not in the status output"))?;
    let route_ns = split_ref(route).0;
    let entry = array(obj, &["status", "parents"])
        .iter()
        .find(|p| {
            p.get("parentRef")
                .is_some_and(|r| parent_matches(r, kind, parent, route_ns))
        })
        .ok_or_else(|| format!("route {route} has no status.parents entry for {kind} {parent}"))?;
    Ok((obj, entry))
}

/// Evaluates one statusChecks entry against what the runner `applied` (the runner, not the
/// loader, assigns addresses; the manifests say which generation each object is at).
pub fn evaluate(check: &Value, status: &StatusList, applied: &Applied) -> Verdict {
    match evaluate_inner(check, status, applied) {
        Ok(v) => v,
        Err(why) => Verdict::Fail(why),
    }
}

fn evaluate_inner(
    check: &Value,
    status: &StatusList,
    applied: &Applied,
) -> Result<Verdict, String> {
    let name = check.get("check").and_then(Value::as_str).unwrap_or("");
    let s = |key: &str| check.get(key).and_then(Value::as_str).unwrap_or("");
    match name {
        "routesAccepted" => {
            let (kind, parent) = parent_of(check, "parent");
            let obj = status
                .find(Some(&kind), &parent)
                .ok_or_else(|| format!("{kind} {parent} not in the status output"))?;
            let gen = applied.generation(obj);
            if kind == "Gateway"
                && array(obj, &["status", "addresses"]).is_empty()
                && !applied.addressed.contains(&parent)
            {
                return Err(format!("Gateway {parent} has no address"));
            }
            let listeners = array(obj, &["status", "listeners"]);
            // "Every listener is ready" must not hold vacuously: a parent that reports no
            // listener has none the routes could be accepted on.
            if listeners.is_empty() {
                return Err(format!("{kind} {parent} reports no listeners in status"));
            }
            for l in listeners {
                let lname = l.get("name").and_then(Value::as_str).unwrap_or("?");
                for t in ["ResolvedRefs", "Accepted", "Programmed"] {
                    Want { kind: t, status: "True", reason: None }.check(
                        array(l, &["conditions"]),
                        gen,
                        &format!("{kind} {parent} listener {lname}"),
                    )?;
                }
            }
            for route in check.get("routes").and_then(Value::as_array).into_iter().flatten() {
                let route = route.as_str().unwrap_or("");
                let (robj, entry) = route_parent_entry(status, route, &kind, &parent)?;
                if entry.get("controllerName").and_then(Value::as_str).unwrap_or("").is_empty() {
                    return Err(format!("route {route} parent entry has no controllerName"));
                }
                Want { kind: "Accepted", status: "True", reason: Some("Accepted") }.check(
                    array(entry, &["conditions"]),
                    applied.generation(robj),
                    &format!("route {route} for {kind} {parent}"),
                )?;
            }
            Ok(Verdict::Pass)
        }
        "routeCondition" => {
            let (kind, parent) = parent_of(check, "parent");
            let route = s("route");
            let (robj, entry) = route_parent_entry(status, route, &kind, &parent)?;
            Want::from(check).check(
                array(entry, &["conditions"]),
                applied.generation(robj),
                &format!("route {route} for {kind} {parent}"),
            )?;
            Ok(Verdict::Pass)
        }
        "routeNoAcceptedParents" => {
            let route = s("route");
            let obj = status
                .find(None, route)
                .ok_or_else(|| format!("route {route} not in the status output"))?;
            let parents = array(obj, &["status", "parents"]);
            match parents {
                [] => Ok(Verdict::Pass),
                [one] => {
                    Want { kind: "Accepted", status: "False", reason: None }.check(
                        array(one, &["conditions"]),
                        applied.generation(obj),
                        &format!("route {route}"),
                    )?;
                    Ok(Verdict::Pass)
                }
                _ => Err(format!("route {route} has {} parent entries, expected at most one", parents.len())),
            }
        }
        "routeParents" => {
            let route = s("route");
            for p in check.get("parents").and_then(Value::as_array).into_iter().flatten() {
                let r = p.get("parentRef").cloned().unwrap_or_default();
                let kind = r.get("kind").and_then(Value::as_str).unwrap_or("Gateway");
                let ns = r.get("namespace").and_then(Value::as_str).unwrap_or(split_ref(route).0);
                let pname = r.get("name").and_then(Value::as_str).unwrap_or("");
                let parent = format!("{ns}/{pname}");
                let (robj, entry) = route_parent_entry(status, route, kind, &parent)?;
                for c in p.get("conditions").and_then(Value::as_array).into_iter().flatten() {
                    Want::from(c).check(
                        array(entry, &["conditions"]),
                        applied.generation(robj),
                        &format!("route {route} for {kind} {parent}"),
                    )?;
                }
            }
            Ok(Verdict::Pass)
        }
        "gatewayZeroAttachedRoutes" => {
            let gw = s("gateway");
            let obj = status
                .find(Some("Gateway"), gw)
                .ok_or_else(|| format!("Gateway {gw} not in the status output"))?;
            match array(obj, &["status", "listeners"]) {
                [] => Ok(Verdict::Pass),
                [l] if l.get("attachedRoutes").and_then(Value::as_i64) == Some(0) => Ok(Verdict::Pass),
                ls => Err(format!("Gateway {gw} listeners {} have attached routes", Value::from(ls.to_vec()))),
            }
        }
        "gatewayCondition" => {
            let gw = s("gateway");
            let obj = status
                .find(Some("Gateway"), gw)
                .ok_or_else(|| format!("Gateway {gw} not in the status output"))?;
            Want::from(check).check(
                array(obj, &["status", "conditions"]),
                applied.generation(obj),
                &format!("Gateway {gw}"),
            )?;
            Ok(Verdict::Pass)
        }
        "gatewayAttachedListenerSets" => {
            let gw = s("gateway");
            let obj = status
                .find(Some("Gateway"), gw)
                .ok_or_else(|| format!("Gateway {gw} not in the status output"))?;
            let want = check.get("count").and_then(Value::as_i64).unwrap_or(0);
            let got = obj
                .get("status")
                .and_then(|s| s.get("attachedListenerSets"))
                .and_then(Value::as_i64)
                .unwrap_or(0);
            if got == want {
                Ok(Verdict::Pass)
            } else {
                Err(format!("Gateway {gw} attachedListenerSets {got}, expected {want}"))
            }
        }
        "listenerConditions" => {
            let (kind, parent) = parent_of(check, "parent");
            let listener = s("listener");
            let obj = status
                .find(Some(&kind), &parent)
                .ok_or_else(|| format!("{kind} {parent} not in the status output"))?;
            let l = array(obj, &["status", "listeners"])
                .iter()
                .find(|l| l.get("name").and_then(Value::as_str) == Some(listener))
                .ok_or_else(|| format!("{kind} {parent} has no listener {listener} in status"))?;
            for c in check.get("conditions").and_then(Value::as_array).into_iter().flatten() {
                Want::from(c).check(
                    array(l, &["conditions"]),
                    applied.generation(obj),
                    &format!("{kind} {parent} listener {listener}"),
                )?;
            }
            Ok(Verdict::Pass)
        }
        "listenerStatus" => {
            let (kind, parent) = parent_of(check, "parent");
            let obj = status
                .find(Some(&kind), &parent)
                .ok_or_else(|| format!("{kind} {parent} not in the status output"))?;
            let actual = array(obj, &["status", "listeners"]);
            let wanted = check.get("listeners").and_then(Value::as_array).map_or(&[][..], Vec::as_slice);
            let mut actual_names: Vec<&str> = actual.iter().filter_map(|l| l.get("name")?.as_str()).collect();
            let mut wanted_names: Vec<&str> = wanted.iter().filter_map(|l| l.get("name")?.as_str()).collect();
            actual_names.sort_unstable();
            wanted_names.sort_unstable();
            if actual_names != wanted_names {
                return Err(format!("{kind} {parent} listeners {actual_names:?}, expected {wanted_names:?}"));
            }
            for w in wanted {
                let lname = w.get("name").and_then(Value::as_str).unwrap_or("");
                let Some(l) = actual.iter().find(|l| l.get("name").and_then(Value::as_str) == Some(lname)) else {
                    continue;
                };
                let what = format!("{kind} {parent} listener {lname}");
                for k in w.get("supportedKinds").and_then(Value::as_array).into_iter().flatten() {
                    let k = k.as_str().unwrap_or("");
                    let ok = array(l, &["supportedKinds"]).iter().any(|sk| {
                        sk.get("kind").and_then(Value::as_str) == Some(k)
                            && sk.get("group").and_then(Value::as_str).unwrap_or(GATEWAY_GROUP) == GATEWAY_GROUP
                    });
                    if !ok {
                        return Err(format!("{what} supportedKinds lacks {k}"));
                    }
                }
                if let Some(want) = w.get("attachedRoutes").and_then(Value::as_i64) {
                    let got = l.get("attachedRoutes").and_then(Value::as_i64).unwrap_or(-1);
                    if got != want {
                        return Err(format!("{what} attachedRoutes {got}, expected {want}"));
                    }
                }
                for c in w.get("conditions").and_then(Value::as_array).into_iter().flatten() {
                    Want::from(c).check(array(l, &["conditions"]), applied.generation(obj), &what)?;
                }
            }
            Ok(Verdict::Pass)
        }
        "policyCondition" => {
            let (pkind, policy) = parent_of(check, "policy");
            let (akind, ancestor) = parent_of(check, "ancestor");
            let obj = status
                .find(Some(&pkind), &policy)
                .ok_or_else(|| format!("{pkind} {policy} not in the status output"))?;
            let policy_ns = split_ref(&policy).0;
            let entry = array(obj, &["status", "ancestors"])
                .iter()
                .find(|a| {
                    a.get("ancestorRef")
                        .is_some_and(|r| parent_matches(r, &akind, &ancestor, policy_ns))
                })
                .ok_or_else(|| format!("{pkind} {policy} has no ancestor entry for {akind} {ancestor}"))?;
            Want::from(check).check(
                array(entry, &["conditions"]),
                applied.generation(obj),
                &format!("{pkind} {policy} for {akind} {ancestor}"),
            )?;
            Ok(Verdict::Pass)
        }
        "observedGenerationBump" => Ok(Verdict::Skip(
            "observedGenerationBump needs an API server to patch the object and bump its generation".into(),
        )),
        "statusSequence" => {
            let steps = check.get("steps").and_then(Value::as_array).map_or(&[][..], Vec::as_slice);
            if let Some(change) = steps.iter().find_map(|s| s.get("change")) {
                return Ok(Verdict::Skip(format!(
                    "statusSequence applies a change the runner cannot make on a folder: {}",
                    change.as_str().unwrap_or("?")
                )));
            }
            for step in steps {
                for c in step.get("expect").and_then(Value::as_array).into_iter().flatten() {
                    match evaluate_inner(c, status, applied)? {
                        Verdict::Pass => {}
                        other => return Ok(other),
                    }
                }
            }
            Ok(Verdict::Pass)
        }
        // A check the runner does not know cannot be shown to hold: that is a failure of the
        // runner or the file, never a quiet skip.
        other => Err(format!("unknown status check {other:?}")),
    }
}

#[cfg(test)]
mod tests;

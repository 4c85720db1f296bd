//! ListenerSets: accepted (or not) by their Gateway's `allowedListeners`, oldest first, each
//! listener checked against the Gateway's and older ListenerSets' (the earlier one wins).

use std::collections::BTreeMap;

use super::listener::{listener_state, mark_conflicted};
use super::selector::admits_listener_set;
use super::{
    Condition, ConditionType, GatewayInput, GatewayState, ListenerSetInput, ListenerSetState,
    ListenerState,
};

/// A listener already holding a port: (port, hostname, protocol).
type Claim = (i32, Option<String>, String);

/// Accepts (or not) each ListenerSet of one of `gateways` and checks its listeners against the
/// Gateway's and older ListenerSets' (the earlier listener wins a conflict).
pub(super) fn listener_set_states(
    gateways: &[GatewayInput<'_>],
    states: &mut [GatewayState],
    listener_sets: &[ListenerSetInput],
    namespace_labels: &dyn Fn(&str) -> Option<BTreeMap<String, String>>,
) -> Vec<ListenerSetState> {
    // Listeners already claimed per Gateway, its own first.
    let mut claimed: Vec<Vec<Claim>> = gateways
        .iter()
        .map(|g| claims(&g.spec.spec.listeners))
        .collect();
    let mut out: Vec<ListenerSetState> = Vec::new();
    for ls in oldest_first(listener_sets) {
        let Some(g) = gateways.iter().position(|g| g.gateway == ls.gateway) else {
            continue;
        };
        let mut listeners: Vec<ListenerState> = ls
            .listeners
            .iter()
            .map(|l| listener_state(l, &ls.listeners))
            .collect();
        let labels = namespace_labels(&ls.key.namespace).unwrap_or_default();
        if !admits_listener_set(gateways[g].spec, &ls.key.namespace, &labels) {
            out.push(not_allowed(ls, listeners));
            continue;
        }
        mark_conflicts(ls, &mut listeners, &claimed[g]);
        claimed[g].extend(claims(&ls.listeners));
        states[g].attached_listener_sets += 1;
        out.push(accepted(ls, listeners));
    }
    out
}

/// Older ListenerSets first (creationTimestamp, then namespace/name): the order Gateway API
/// settles listener conflicts in.
fn oldest_first(listener_sets: &[ListenerSetInput]) -> Vec<&ListenerSetInput> {
    let mut order: Vec<&ListenerSetInput> = listener_sets.iter().collect();
    order.sort_by(|a, b| {
        (a.created_at_nanos.is_none(), a.created_at_nanos, &a.key).cmp(&(
            b.created_at_nanos.is_none(),
            b.created_at_nanos,
            &b.key,
        ))
    });
    order
}

fn claims(listeners: &[gateway_api::experimental::gateways::GatewayListeners]) -> Vec<Claim> {
    listeners
        .iter()
        .map(|l| (l.port, l.hostname.clone(), l.protocol.clone()))
        .collect()
}

/// A listener whose port an earlier one holds with another protocol (ProtocolConflict) or
/// the same hostname (HostnameConflict) is not served.
fn mark_conflicts(ls: &ListenerSetInput, listeners: &mut [ListenerState], claimed: &[Claim]) {
    for (l, spec) in listeners.iter_mut().zip(&ls.listeners) {
        let same_port = claimed.iter().filter(|(port, ..)| *port == spec.port);
        let mut reason = None;
        for (_, hostname, protocol) in same_port {
            if *protocol != spec.protocol {
                reason = Some("ProtocolConflict");
                break;
            }
            if *hostname == spec.hostname {
                reason = Some("HostnameConflict");
            }
        }
        if let Some(reason) = reason {
            mark_conflicted(l, spec.port, reason);
        }
    }
}

/// A ListenerSet its Gateway does not allow: none of its listeners is served.
fn not_allowed(ls: &ListenerSetInput, mut listeners: Vec<ListenerState>) -> ListenerSetState {
    for l in &mut listeners {
        l.served = false;
    }
    let why = format!(
        "Gateway {} does not allow ListenerSets from namespace {} (spec.allowedListeners)",
        ls.gateway, ls.key.namespace
    );
    ListenerSetState {
        key: ls.key.clone(),
        generation: ls.generation,
        gateway: ls.gateway.clone(),
        conditions: vec![
            Condition::new(ConditionType::Accepted, false, "NotAllowed", why),
            Condition::new(
                ConditionType::Programmed,
                false,
                "NotAllowed",
                "not accepted",
            ),
        ],
        listeners,
        accepted: false,
    }
}

/// An accepted ListenerSet, programmed when one of its listeners can be served.
fn accepted(ls: &ListenerSetInput, listeners: Vec<ListenerState>) -> ListenerSetState {
    let programmed = if listeners.iter().any(|l| l.served) {
        Condition::new(ConditionType::Programmed, true, "Programmed", "programmed")
    } else {
        Condition::new(
            ConditionType::Programmed,
            false,
            "Invalid",
            "no listener can be served",
        )
    };
    ListenerSetState {
        key: ls.key.clone(),
        generation: ls.generation,
        gateway: ls.gateway.clone(),
        conditions: vec![
            Condition::new(
                ConditionType::Accepted,
                true,
                "Accepted",
                "accepted by its Gateway",
            ),
            programmed,
        ],
        listeners,
        accepted: true,
    }
}

//! The status of one Gateway (or ListenerSet) listener before routes attach: the route kinds
//! it takes, whether its protocol is served, and whether it clashes with another.

use gateway_api::experimental::gateways::GatewayListeners;

use super::GATEWAY_GROUP;
use super::{Condition, ConditionType, GatewayInput, GatewayState, ListenerState, RouteKind};

/// The Gateway's own conditions and each listener's, before any route attaches.
pub(super) fn gateway_state(g: &GatewayInput<'_>) -> GatewayState {
    let listeners: Vec<ListenerState> = g
        .spec
        .spec
        .listeners
        .iter()
        .map(|l| listener_state(l, &g.spec.spec.listeners))
        .collect();
    let programmed = listeners.iter().any(|l| l.served);
    let conditions = vec![
        Condition::new(
            ConditionType::Accepted,
            true,
            "Accepted",
            "the Gateway is accepted",
        ),
        if programmed {
            Condition::new(
                ConditionType::Programmed,
                true,
                "Programmed",
                "the Gateway is programmed",
            )
        } else {
            Condition::new(
                ConditionType::Programmed,
                false,
                "Invalid",
                "no listener of the Gateway can be served",
            )
        },
    ];
    GatewayState {
        gateway: g.gateway.clone(),
        generation: g.generation,
        conditions,
        listeners,
        attached_listener_sets: 0,
    }
}

/// One listener's conditions (Accepted, ResolvedRefs, Programmed, Conflicted, in that order)
/// among `all` the listeners of its Gateway or ListenerSet.
pub(super) fn listener_state(l: &GatewayListeners, all: &[GatewayListeners]) -> ListenerState {
    let (supported_kinds, kinds_resolved) = supported_kinds(l);
    let (accepted, mut programmed, certificates) = protocol_conditions(l);
    let resolved = certificates.unwrap_or(kinds_resolved);
    let conflicted = match clash(l, all) {
        Some(reason) => {
            programmed = Condition::new(
                ConditionType::Programmed,
                false,
                "Invalid",
                "the listener conflicts with another",
            );
            Condition::new(
                ConditionType::Conflicted,
                true,
                reason,
                format!(
                    "another listener on port {} has the same hostname or another protocol",
                    l.port
                ),
            )
        }
        None => Condition::new(
            ConditionType::Conflicted,
            false,
            "NoConflicts",
            "no conflicts",
        ),
    };
    let served = accepted.is_true() && programmed.is_true() && l.protocol == "HTTP";
    ListenerState {
        name: l.name.clone(),
        port: u16::try_from(l.port).unwrap_or(0),
        protocol: l.protocol.clone(),
        hostname: l.hostname.clone(),
        supported_kinds,
        conditions: vec![accepted, resolved, programmed, conflicted],
        routes: Vec::new(),
        served,
    }
}

/// The route kinds a listener protocol carries.
fn kinds_for(protocol: &str) -> &'static [RouteKind] {
    match protocol {
        "HTTP" | "HTTPS" => &[RouteKind::Http, RouteKind::Grpc],
        "TLS" => &[RouteKind::Tls],
        "TCP" => &[RouteKind::Tcp],
        "UDP" => &[RouteKind::Udp],
        _ => &[],
    }
}

/// The kinds the listener takes (its protocol's, or those of `allowedRoutes.kinds` the
/// protocol carries) and the ResolvedRefs condition naming the last kind it cannot take.
fn supported_kinds(l: &GatewayListeners) -> (Vec<RouteKind>, Condition) {
    let protocol_kinds = kinds_for(&l.protocol);
    let mut resolved = Condition::new(
        ConditionType::ResolvedRefs,
        true,
        "ResolvedRefs",
        "refs resolved",
    );
    let Some(kinds) = l.allowed_routes.as_ref().and_then(|a| a.kinds.as_ref()) else {
        return (protocol_kinds.to_vec(), resolved);
    };
    let mut ok = Vec::new();
    for k in kinds {
        let group = k.group.as_deref().unwrap_or(GATEWAY_GROUP);
        let known = RouteKind::parse(&k.kind).filter(|k| protocol_kinds.contains(k));
        if let Some(kind) = known.filter(|_| group == GATEWAY_GROUP) {
            ok.push(kind);
        } else {
            resolved = Condition::new(
                ConditionType::ResolvedRefs,
                false,
                "InvalidRouteKinds",
                format!(
                    "route kind {group}/{} cannot attach to a {} listener",
                    k.kind, l.protocol
                ),
            );
        }
    }
    (ok, resolved)
}

/// Accepted and Programmed as the listener's protocol allows, and for HTTPS the ResolvedRefs
/// condition its certificates get (it wins over the kinds').
fn protocol_conditions(l: &GatewayListeners) -> (Condition, Condition, Option<Condition>) {
    let accepted = Condition::new(
        ConditionType::Accepted,
        true,
        "Accepted",
        "listener accepted",
    );
    let programmed = Condition::new(
        ConditionType::Programmed,
        true,
        "Programmed",
        "listener programmed",
    );
    match l.protocol.as_str() {
        "HTTP" => (accepted, programmed, None),
        "HTTPS" => {
            // Frontend TLS is not served yet; the certificate refs are still checked so the
            // status says what is wrong with them first.
            let refs = l
                .tls
                .as_ref()
                .and_then(|t| t.certificate_refs.as_ref())
                .map_or(0, Vec::len);
            let why = if refs == 0 {
                "an HTTPS listener needs tls.certificateRefs"
            } else {
                "certificate Secrets are not read by this proxy yet"
            };
            let resolved = Condition::new(
                ConditionType::ResolvedRefs,
                false,
                "InvalidCertificateRef",
                why,
            );
            let programmed = Condition::new(
                ConditionType::Programmed,
                false,
                "Invalid",
                "HTTPS listeners are not served yet; use protocol HTTP",
            );
            (accepted, programmed, Some(resolved))
        }
        other => (
            Condition::new(
                ConditionType::Accepted,
                false,
                "UnsupportedProtocol",
                format!("protocol {other} is not supported; use HTTP"),
            ),
            Condition::new(
                ConditionType::Programmed,
                false,
                "Invalid",
                format!("protocol {other} is not served"),
            ),
            None,
        ),
    }
}

/// Two listeners on one port with the same hostname cannot both get the traffic, nor two
/// protocols one port: the Conflicted reason, if any.
fn clash(l: &GatewayListeners, all: &[GatewayListeners]) -> Option<&'static str> {
    let others = all
        .iter()
        .filter(|o| !std::ptr::eq(*o, l) && o.port == l.port);
    let mut clash = None;
    for o in others {
        if o.protocol != l.protocol {
            return Some("ProtocolConflict");
        }
        if o.hostname == l.hostname {
            clash = Some("HostnameConflict");
        }
    }
    clash
}

/// An earlier listener (the Gateway's own, or an older ListenerSet's) holds this one's port
/// with the same hostname (HostnameConflict) or another protocol (ProtocolConflict).
pub(super) fn mark_conflicted(l: &mut ListenerState, port: i32, reason: &str) {
    l.served = false;
    let why =
        format!("an earlier listener on port {port} has the same hostname or another protocol");
    for c in &mut l.conditions {
        *c = match c.kind {
            ConditionType::Conflicted => Condition::new(c.kind, true, reason, why.clone()),
            ConditionType::Accepted => Condition::new(c.kind, false, reason, why.clone()),
            ConditionType::Programmed => Condition::new(c.kind, false, "Invalid", why.clone()),
            ConditionType::ResolvedRefs => continue,
        };
    }
}

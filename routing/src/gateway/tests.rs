use super::*;
use gateway_api::experimental::listenersets::ListenerSet;

fn gateway(yaml: &str) -> Gateway {
    serde_yaml_ng::from_str(yaml).expect("gateway yaml")
}

const GW: &str = "apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: infra}
spec:
  gatewayClassName: waypoint
  listeners:
  - {name: http, port: 80, protocol: HTTP}
  - {name: foo, port: 80, protocol: HTTP, hostname: foo.example.com}
  - {name: any-ns, port: 8080, protocol: HTTP, allowedRoutes: {namespaces: {from: All}}}
  - name: labelled
    port: 8081
    protocol: HTTP
    allowedRoutes: {namespaces: {from: Selector, selector: {matchLabels: {team: web}}}}
  - name: tls
    port: 443
    protocol: HTTPS
    tls: {certificateRefs: [{name: missing}]}
  - {name: tcp, port: 9000, protocol: TCP}
";

fn key(ns: &str, name: &str) -> ServiceKey {
    ServiceKey {
        namespace: ns.into(),
        name: name.into(),
    }
}

fn parent(section: Option<&str>, port: Option<u16>) -> ParentGateway {
    ParentGateway {
        index: 0,
        kind: ParentKind::Gateway,
        gateway: key("infra", "gw"),
        section_name: section.map(str::to_owned),
        port,
    }
}

fn resolved() -> Condition {
    Condition::new(ConditionType::ResolvedRefs, true, "ResolvedRefs", "")
}

/// Attaches one HTTPRoute in `ns` with `hostnames` and `parent`; returns its Accepted reason
/// and the listeners it landed on.
fn attach_route(ns: &str, hostnames: &[&str], parent: ParentGateway) -> (String, Vec<String>) {
    let g = gateway(GW);
    let hostnames: Vec<String> = hostnames.iter().map(|h| h.to_string()).collect();
    let parents = [parent];
    let routes = [RouteInput {
        kind: RouteKind::Http,
        namespace: ns,
        hostnames: &hostnames,
        parents: &parents,
        resolved_refs: resolved(),
    }];
    let labels =
        |ns: &str| (ns == "web").then(|| BTreeMap::from([("team".to_string(), "web".to_string())]));
    let Attachment {
        gateways: states,
        routes: statuses,
        ..
    } = attach(
        &[GatewayInput {
            gateway: key("infra", "gw"),
            spec: &g,
            generation: 1,
        }],
        &[],
        &routes,
        &labels,
    );
    let on: Vec<String> = states[0]
        .listeners
        .iter()
        .filter(|l| !l.routes.is_empty())
        .map(|l| l.name.clone())
        .collect();
    (statuses[0][0].conditions[0].reason.clone(), on)
}

#[test]
fn attachment_reasons() {
    /// Route namespace, hostnames, parentRef, expected Accepted reason, listeners attached to.
    type Case = (
        &'static str,
        &'static [&'static str],
        ParentGateway,
        &'static str,
        &'static [&'static str],
    );
    let cases: Vec<Case> = vec![
        (
            "infra",
            &[],
            parent(None, None),
            "Accepted",
            &["http", "foo", "any-ns", "tls"],
        ),
        (
            "infra",
            &[],
            parent(Some("http"), None),
            "Accepted",
            &["http"],
        ),
        (
            "infra",
            &[],
            parent(None, Some(8080)),
            "Accepted",
            &["any-ns"],
        ),
        (
            "infra",
            &[],
            parent(Some("nope"), None),
            "NoMatchingParent",
            &[],
        ),
        (
            "infra",
            &[],
            parent(Some("http"), Some(8080)),
            "NoMatchingParent",
            &[],
        ),
        (
            "infra",
            &[],
            parent(None, Some(81)),
            "NoMatchingParent",
            &[],
        ),
        (
            "other",
            &[],
            parent(Some("http"), None),
            "NotAllowedByListeners",
            &[],
        ),
        ("other", &[], parent(None, None), "Accepted", &["any-ns"]),
        (
            "web",
            &[],
            parent(Some("labelled"), None),
            "Accepted",
            &["labelled"],
        ),
        (
            "other",
            &[],
            parent(Some("labelled"), None),
            "NotAllowedByListeners",
            &[],
        ),
        (
            "infra",
            &[],
            parent(Some("tcp"), None),
            "NotAllowedByListeners",
            &[],
        ),
        (
            "infra",
            &["bar.example.com"],
            parent(Some("foo"), None),
            "NoMatchingListenerHostname",
            &[],
        ),
        (
            "infra",
            &["*.example.com"],
            parent(Some("foo"), None),
            "Accepted",
            &["foo"],
        ),
    ];
    for (ns, hosts, p, reason, on) in cases {
        let desc = format!("{ns} {hosts:?} {p:?}");
        let (got_reason, got_on) = attach_route(ns, hosts, p);
        assert_eq!(got_reason, reason, "{desc}");
        assert_eq!(got_on, on, "{desc}");
    }
}

#[test]
fn listener_conditions() {
    let g = gateway(GW);
    let states = attach(
        &[GatewayInput {
            gateway: key("infra", "gw"),
            spec: &g,
            generation: 1,
        }],
        &[],
        &[],
        &|_| None,
    )
    .gateways;
    let cond = |listener: &str, kind: &str| {
        let l = states[0]
            .listeners
            .iter()
            .find(|l| l.name == listener)
            .expect("listener");
        let c = l
            .conditions
            .iter()
            .find(|c| c.kind.as_str() == kind)
            .expect("cond");
        (c.status, c.reason.clone())
    };
    assert_eq!(cond("http", "Accepted"), ("True", "Accepted".into()));
    assert_eq!(cond("http", "Programmed"), ("True", "Programmed".into()));
    assert_eq!(
        cond("tls", "ResolvedRefs"),
        ("False", "InvalidCertificateRef".into())
    );
    assert_eq!(cond("tls", "Programmed").0, "False");
    assert_eq!(
        cond("tcp", "Accepted"),
        ("False", "UnsupportedProtocol".into())
    );
    assert!(states[0].conditions.iter().all(|c| c.is_true()));
}

#[test]
fn listener_sets_extend_their_gateway() {
    let g = gateway(
        "apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: infra}
spec:
  gatewayClassName: waypoint
  allowedListeners: {namespaces: {from: Same}}
  listeners:
  - {name: main, port: 80, protocol: HTTP, hostname: gw.example.com}
",
    );
    let ls = |ns: &str, name: &str, yaml: &str| {
        let set: ListenerSet = serde_yaml_ng::from_str(&format!(
            "apiVersion: gateway.networking.k8s.io/v1
kind: ListenerSet
metadata: {{name: {name}, namespace: {ns}}}
spec:
  parentRef: {{name: gw, namespace: infra}}
  listeners: {yaml}
"
        ))
        .expect("listenerset yaml");
        ListenerSetInput::new(&set, ns, name, 1).expect("listeners convert")
    };
    let sets = [
        ls(
            "infra",
            "a",
            "[{name: extra, port: 80, protocol: HTTP, hostname: a.example.com}, \
              {name: clash, port: 80, protocol: HTTP, hostname: gw.example.com}, \
              {name: tcp, port: 80, protocol: TCP}]",
        ),
        ls("elsewhere", "b", "[{name: x, port: 80, protocol: HTTP}]"),
    ];
    let to = |kind: ParentKind, name: &str, section: Option<&str>| ParentGateway {
        index: 0,
        kind,
        gateway: key("infra", name),
        section_name: section.map(str::to_owned),
        port: None,
    };
    let via_set = [to(ParentKind::ListenerSet, "a", None)];
    let via_gateway_to_set_listener = [to(ParentKind::Gateway, "gw", Some("extra"))];
    let routes = [
        RouteInput {
            kind: RouteKind::Http,
            namespace: "infra",
            hostnames: &[],
            parents: &via_set,
            resolved_refs: resolved(),
        },
        RouteInput {
            kind: RouteKind::Http,
            namespace: "infra",
            hostnames: &[],
            parents: &via_gateway_to_set_listener,
            resolved_refs: resolved(),
        },
    ];
    let out = attach(
        &[GatewayInput {
            gateway: key("infra", "gw"),
            spec: &g,
            generation: 1,
        }],
        &sets,
        &routes,
        &|_| None,
    );
    assert_eq!(out.gateways[0].attached_listener_sets, 1);
    let set = |name: &str| {
        out.listener_sets
            .iter()
            .find(|s| s.key.name == name)
            .expect("listener set status")
    };
    let a = set("a");
    assert!(a.accepted);
    let cond = |l: &ListenerState, kind: &str| {
        let c = l
            .conditions
            .iter()
            .find(|c| c.kind.as_str() == kind)
            .expect("cond");
        (c.status, c.reason.clone())
    };
    assert_eq!(
        cond(&a.listeners[0], "Accepted"),
        ("True", "Accepted".into())
    );
    // The Gateway's own listener holds gw.example.com on port 80 first.
    assert_eq!(
        cond(&a.listeners[1], "Conflicted"),
        ("True", "HostnameConflict".into())
    );
    assert_eq!(
        cond(&a.listeners[2], "Conflicted"),
        ("True", "ProtocolConflict".into())
    );
    // Only Same-namespace ListenerSets are allowed.
    assert!(!set("b").accepted);
    // Routes attach through the ListenerSet to its served listeners only; a Gateway
    // parentRef never reaches a ListenerSet's listener.
    assert_eq!(out.routes[0][0].conditions[0].reason, "Accepted");
    assert_eq!(a.listeners[0].routes.len(), 1);
    assert!(a.listeners[1].routes.len() <= 1);
    assert_eq!(out.routes[1][0].conditions[0].reason, "NoMatchingParent");
}

use super::super::reply::refusal_response;
use super::super::tests::{request, snapshot};
use super::*;
use crate::hbone::context::TunnelContext;
use crate::snapshot::Destination;
use authz::{Identity, LocalReply};
use routing::ServiceKey;
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};

fn web() -> ServiceKey {
    ServiceKey {
        namespace: "shop".into(),
        name: "web".into(),
    }
}

fn tunnel(authority: &str, peer: &str) -> Arc<TunnelContext> {
    Arc::new(TunnelContext {
        source: Identity::new("cluster.local", "client-ns", "client-sa"),
        peer_addr: peer.parse().expect("peer"),
        client_addr: Some("10.9.9.9:1234".parse().expect("client")),
        authority: authority.to_string(),
        baggage: None,
        traceparent: None,
        destination: Destination::Service {
            service: web(),
            port: 80,
        },
        xfcc: OnceLock::new(),
    })
}

/// In a tunnel the principal is the peer's, `source.ip` the HBONE connection's peer (not the
/// `forwarded` client), the destination the CONNECT target; on the plain listener there is no
/// principal, the TCP peer is the source and the local address with the service port the
/// destination.
#[test]
fn connection_attrs_of_tunnels_and_the_plain_listener() {
    let hbone = Downstream {
        tunnel: Some(tunnel("10.96.0.5:80", "127.0.0.7:40000")),
        client_ip: Some("10.9.9.9".parse().expect("ip")),
        ..Downstream::default()
    };
    let attrs = connection_attrs(&hbone, Some("127.0.0.1:15008".parse().expect("local")), 80);
    assert_eq!(
        attrs.source_principal.as_deref(),
        Some("cluster.local/ns/client-ns/sa/client-sa")
    );
    assert_eq!(
        attrs.source_ip,
        Some("127.0.0.7".parse::<IpAddr>().expect("ip"))
    );
    assert_eq!(attrs.destination_ip, Some("10.96.0.5".parse().expect("ip")));
    assert_eq!(attrs.destination_port, 80);

    let plain = Downstream {
        client_ip: Some("127.0.0.9".parse().expect("ip")),
        ..Downstream::default()
    };
    let local = Some("127.0.0.1:18080".parse().expect("local"));
    let attrs = connection_attrs(&plain, local, 80);
    assert_eq!(attrs.source_principal, None);
    assert_eq!(attrs.source_ip, Some("127.0.0.9".parse().expect("ip")));
    assert_eq!(attrs.destination_ip, Some("127.0.0.1".parse().expect("ip")));
    assert_eq!(attrs.destination_port, 80);
    // Nothing routed (no service port known): the listener's own port.
    assert_eq!(connection_attrs(&plain, local, 0).destination_port, 18080);
}

/// The security step's edits reach the request itself, so the backend and mirrors see them.
#[test]
fn edits_change_the_request() {
    let mut req = request(
        "web.shop",
        "/",
        &[("authorization", "Bearer x"), ("x-a", "1")],
    );
    apply_edits(
        &mut req,
        &[
            HeaderEdit::Remove("authorization".into()),
            HeaderEdit::Set("x-a".into(), "2".into()),
            HeaderEdit::Set("x-jwt-payload".into(), "e30".into()),
            HeaderEdit::Set("bad header".into(), "skipped".into()),
        ],
    );
    assert!(req.headers.get("authorization").is_none());
    assert_eq!(
        req.headers.get("x-a").map(|v| v.as_bytes()),
        Some(&b"2"[..])
    );
    assert_eq!(
        req.headers.get("x-jwt-payload").map(|v| v.as_bytes()),
        Some(&b"e30"[..])
    );
}

/// A denial is answered as Envoy answers it: the body byte for byte, `text/plain`, the step's
/// headers, no response flag (RBAC, JWT); a gRPC client gets a 200 with `grpc-status`.
#[test]
fn security_refusals_are_answered_as_envoy() {
    let reply = LocalReply {
        status: 401,
        body: "Jwt is expired".into(),
        headers: vec![(
            "www-authenticate".into(),
            "Bearer realm=\"http://web.shop/\", error=\"invalid_token\"".into(),
        )],
    };
    let answer = refusal_response(&Refusal::security(&reply, None, false)).expect("answer");
    assert_eq!(answer.status, 401);
    assert_eq!(answer.flag, None);
    assert_eq!(answer.body.as_deref(), Some(&b"Jwt is expired"[..]));
    let header = |name: &str| {
        answer
            .headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.to_str().unwrap_or_default().to_string())
    };
    assert_eq!(header("content-type").as_deref(), Some("text/plain"));
    assert!(header("www-authenticate").is_some_and(|v| v.contains("invalid_token")));

    let grpc = Refusal::security(&reply, None, true);
    let answer = refusal_response(&grpc).expect("answer");
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body, None);
    assert!(answer
        .headers
        .iter()
        .any(|(n, v)| n == "grpc-status" && v == "16"));
    assert_eq!(
        Refusal::security(
            &LocalReply {
                status: 403,
                ..reply
            },
            None,
            true
        )
        .grpc_status,
        Some(7)
    );
}

/// A destination without any policy is not checked at all: no attributes are built.
#[tokio::test]
async fn no_policy_costs_nothing() {
    let snapshot = snapshot("");
    let mut req = request("web.shop", "/", &[]);
    let mut routed = Routed {
        destination: Some(web()),
        ..Routed::default()
    };
    let checked = authorize(
        &mut req,
        &snapshot,
        || panic!("attributes built for a destination without policies"),
        &mut routed,
        &mut Auth::default(),
        &Clients::new(),
    )
    .await;
    assert!(checked.is_none());
}

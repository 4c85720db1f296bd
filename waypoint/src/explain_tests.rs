use super::*;
use crate::security::{check_request, CheckInput, Traffic};
use crate::snapshot::SecurityPolicies;
use authz::policy::{AuthorizationPolicy, PolicySet};
use authz::{PolicyRef, TrustDomains};
use routing::ServiceKey;
use std::time::SystemTime;

/// The proxy tests' snapshot with `policies` (name, spec) in force for `shop/web`, compiled as the
/// snapshot builder compiles them.
fn snapshot_with(policies: &[(&str, serde_json::Value)]) -> Snapshot {
    let mut snapshot = crate::proxy::tests::snapshot("");
    let compiled = policies
        .iter()
        .map(|(name, spec)| {
            let source = PolicyRef {
                kind: "AuthorizationPolicy".into(),
                namespace: "shop".into(),
                name: name.to_string(),
            };
            Arc::new(AuthorizationPolicy::compile(
                source,
                spec,
                false,
                &TrustDomains::default(),
            ))
        })
        .collect();
    snapshot.security.by_service.insert(
        web(),
        Arc::new(SecurityPolicies {
            authz: Arc::new(PolicySet::new(compiled)),
            ..SecurityPolicies::default()
        }),
    );
    snapshot
}

fn web() -> ServiceKey {
    ServiceKey {
        namespace: "shop".into(),
        name: "web".into(),
    }
}

fn request(from: &str, path: &str) -> Request {
    Request {
        to: "web.shop".into(),
        from: Some(from.into()),
        source_ip: Some("127.0.0.9".parse().expect("ip")),
        method: "GET".into(),
        path: path.into(),
        ..Request::default()
    }
}

/// The verdict `check_request` gives the same request directly, as the proxy would build it.
async fn direct_verdict(snapshot: &Snapshot, from: &str, path: &str) -> Option<u16> {
    let (mut req, downstream) = build_request(snapshot, &request(from, path)).expect("request");
    proxy::normalize_path(&mut req).expect("path");
    let conn = proxy::connection_attrs(&downstream, None, 80);
    let input = CheckInput {
        snapshot,
        policies: snapshot.security.policies_for(Some(&web())),
        conn: &conn,
        traffic: Traffic::Http(&req),
    };
    let clients = Clients {
        ext_authz: None,
        ..Clients::new()
    };
    match check_request(&input, &clients, SystemTime::now())
        .await
        .outcome
    {
        Outcome::Allow(_) => None,
        Outcome::Deny(d) => Some(d.reply.status),
    }
}

/// explain's verdict line is what `check_request` decides for the same request, with the
/// policy and rule that decided named before it.
#[tokio::test]
async fn explain_verdict_is_check_requests() {
    let snapshot = snapshot_with(&[
        (
            "deny-admin",
            serde_json::json!({"action": "DENY", "rules": [{"to": [{"operation": {"paths": ["/admin*"]}}]}]}),
        ),
        (
            "allow-frontend",
            serde_json::json!({"rules": [{"from": [{"source": {"principals": ["cluster.local/ns/frontend/sa/*"]}}]}]}),
        ),
    ]);
    let clients = Clients {
        ext_authz: None,
        ..Clients::new()
    };
    let frontend = "spiffe://cluster.local/ns/frontend/sa/web";
    let other = "spiffe://cluster.local/ns/other/sa/evil";
    for (from, path) in [
        (frontend, "/hello"),
        (frontend, "/admin/x"),
        (frontend, "/a/../admin"),
        (other, "/hello"),
    ] {
        let explained = explain_with(&snapshot, &request(from, path), &clients)
            .await
            .expect("explained");
        let verdict = explained
            .text
            .lines()
            .last()
            .unwrap_or_default()
            .to_string();
        match direct_verdict(&snapshot, from, path).await {
            None => {
                assert!(
                    verdict.starts_with("verdict: allowed → shop/web:80"),
                    "{}",
                    explained.text
                );
                assert_eq!(explained.exit, EXIT_ALLOWED);
            }
            Some(status) => {
                assert_eq!(
                    verdict,
                    format!("verdict: {status} RBAC: access denied"),
                    "{}",
                    explained.text
                );
                assert_eq!(explained.exit, EXIT_DENIED);
                assert!(
                    explained
                        .text
                        .contains("reason: rbac_access_denied_matched_policy["),
                    "{}",
                    explained.text
                );
            }
        }
    }
}

/// Bad flags are bad input (exit 2) with the flag named, not a verdict.
#[tokio::test]
async fn bad_input_names_the_flag() {
    let snapshot = snapshot_with(&[]);
    let clients = Clients::new();
    let mut bad_from = request("not-a-spiffe-id", "/");
    let err = explain_with(&snapshot, &bad_from, &clients)
        .await
        .expect_err("bad --from");
    assert!(err.to_string().starts_with("--from"), "{err}");
    bad_from.from = None;
    bad_from.to = "nosuch.shop".into();
    let explained = explain_with(&snapshot, &bad_from, &clients)
        .await
        .expect("plaintext");
    assert_eq!(explained.exit, EXIT_DENIED, "{}", explained.text);
    assert!(
        explained
            .text
            .ends_with("verdict: 404 no service is known as 'nosuch.shop'\n"),
        "{}",
        explained.text
    );
    assert_eq!(
        ExplainError::Input("--to: x".into())
            .into_explanation()
            .exit,
        EXIT_BAD_INPUT
    );
}

//! Actions, their order, empty specs, dry-run, fail-closed compiles and the verdict's words.

use super::*;

#[test]
fn no_policy_allows_and_allow_policies_must_match() {
    assert!(allowed(vec![], &req()));
    let only_post = allow_rule(to(json!({"methods": ["POST"]})));
    assert!(!allowed(vec![only_post.clone()], &req()));
    let get = allow_rule(to(json!({"methods": ["GET"]})));
    assert!(allowed(vec![only_post, get], &req()));
}

#[test]
fn empty_spec_missing_rules_and_empty_rule() {
    // `{}` is ALLOW with no rules: it matches nothing, so everything is denied.
    assert!(!allowed(vec![json!({})], &req()));
    assert!(!allowed(vec![json!({"action": "ALLOW"})], &req()));
    assert!(!allowed(vec![serde_json::Value::Null], &req()));
    assert!(compile_named("p", serde_json::Value::Null)
        .issues
        .is_empty());
    // `rules: [{}]` matches everything.
    assert!(allowed(vec![json!({"rules": [{}]})], &req()));
    let set = set_of(vec![json!({"rules": [{}]})]);
    let v = req().with(|a| set.explain(a));
    assert_eq!(
        v.trace,
        vec!["ALLOW foo/p0: rule 0 matched: it has no conditions → allowed"]
    );
    let d = v.decided_by.expect("decided");
    assert_eq!(
        d.detail,
        "rules[0] has no conditions: it matches every request"
    );
    // DENY without rules matches nothing; DENY `rules: [{}]` everything.
    assert!(allowed(vec![json!({"action": "DENY"})], &req()));
    assert!(!allowed(
        vec![json!({"action": "DENY", "rules": [{}]})],
        &req()
    ));
}

#[test]
fn deny_wins_over_allow_and_audit_changes_nothing() {
    let allow_all = json!({"rules": [{}]});
    let deny_get = deny_rule(to(json!({"methods": ["GET"]})));
    assert!(!allowed(vec![allow_all.clone(), deny_get.clone()], &req()));
    let audit_all = json!({"action": "AUDIT", "rules": [{}]});
    assert!(allowed(vec![audit_all.clone()], &req()));
    let set = set_of(vec![audit_all, allow_all]);
    let v = req().with(|a| set.evaluate(a));
    assert!(v.allowed);
    assert_eq!(v.shadow.len(), 1, "{:?}", v.shadow);
    assert!(
        v.shadow[0].starts_with("AUDIT foo/p0: audited (rules[0] has no conditions"),
        "{:?}",
        v.shadow
    );
}

#[test]
fn dry_run_is_shadow_only() {
    let trust = TrustDomains::default();
    let deny_all = compile_with("d", json!({"action": "DENY", "rules": [{}]}), true, &trust);
    let allow_none = compile_with(
        "a",
        json!({"action": "ALLOW", "rules": [to(json!({"paths": ["/x"]}))]}),
        true,
        &trust,
    );
    let set = PolicySet::new(vec![deny_all, allow_none]);
    let v = req().with(|a| set.evaluate(a));
    assert!(v.allowed);
    assert_eq!(v.decided_by, None);
    assert!(
        v.shadow.iter().any(|s| s.contains("would deny")),
        "{:?}",
        v.shadow
    );
    assert!(
        v.shadow
            .iter()
            .any(|s| s.contains("no dry-run ALLOW policy matched")),
        "{:?}",
        v.shadow
    );
    assert_eq!(dry_run_annotation(Some("true")), (true, None));
    assert_eq!(dry_run_annotation(Some("False")), (false, None));
    assert!(dry_run_annotation(Some("yes")).1.is_some());
}

#[test]
fn custom_matches_are_delegated_in_order() {
    let custom = json!({"action": "CUSTOM", "provider": {"name": "ext"}, "rules": [to(json!({"paths": ["/admin/*"]}))]});
    let set = set_of(vec![custom.clone()]);
    let mut r = req();
    assert_eq!(r.with(|a| set.custom(a)), None);
    r.path = "/admin/users";
    let m = r.with(|a| set.custom(a)).expect("custom match");
    assert_eq!(m.provider, "ext");
    assert_eq!(m.policy.name, "p0");
    // CUSTOM does not count as ALLOW: the request is allowed by DENY/ALLOW evaluation.
    assert!(r.with(|a| set.evaluate(a)).allowed);
    // CUSTOM with no rules matches nothing.
    let none = set_of(vec![
        json!({"action": "CUSTOM", "provider": {"name": "ext"}}),
    ]);
    assert_eq!(r.with(|a| none.custom(a)), None);
    // Dry-run CUSTOM is never called.
    let trust = TrustDomains::default();
    let dry = PolicySet::new(vec![compile_with("c", custom, true, &trust)]);
    assert_eq!(r.with(|a| dry.custom(a)), None);
}

#[test]
fn custom_that_cannot_reach_a_provider_denies_what_it_matches() {
    let mut r = req();
    r.path = "/admin/x";
    let no_provider = json!({"action": "CUSTOM", "rules": [to(json!({"paths": ["/admin/*"]}))]});
    assert!(!allowed(vec![no_provider.clone()], &r));
    assert!(allowed(vec![no_provider], &req()));
    let two = vec![
        json!({"action": "CUSTOM", "provider": {"name": "a"}, "rules": [to(json!({"paths": ["/admin/*"]}))]}),
        json!({"action": "CUSTOM", "provider": {"name": "b"}, "rules": [to(json!({"paths": ["/other"]}))]}),
    ];
    let set = set_of(two.clone());
    assert_eq!(r.with(|a| set.custom(a)), None);
    assert!(!allowed(two, &r));
}

#[test]
fn unreadable_specs_fail_closed_as_a_whole() {
    let bad_allow =
        json!({"action": "ALLOW", "rules": [{"from": [{"source": {"principals": "not-a-list"}}]}]});
    let p = compile_named("bad", bad_allow.clone());
    assert!(!p.issues.is_empty());
    assert_eq!(p.issues[0].field, "spec.rules[0].from[0].source.principals");
    assert!(!allowed(vec![bad_allow], &req()));
    let bad_deny = json!({"action": "DENY", "rules": "oops"});
    let p = compile_named("bad", bad_deny.clone());
    assert_eq!(p.issues[0].field, "spec.rules");
    assert!(!allowed(
        vec![bad_deny.clone(), json!({"rules": [{}]})],
        &req()
    ));
    let set = set_of(vec![bad_deny]);
    let v = req().with(|a| set.evaluate(a));
    assert_eq!(v.decided_by.as_ref().and_then(|d| d.rule), None);
    let unknown_field =
        json!({"action": "DENY", "rules": [{"to": [{"operation": {"path": ["/x"]}}]}]});
    assert!(!allowed(vec![unknown_field], &req()));
    // A wrong type in one rule makes the whole ALLOW policy allow nothing, even by its other
    // rules.
    let two_rules = json!({"rules": [{}, {"from": [{"source": {"ipBlocks": "10.0.0.1"}}]}]});
    assert!(!allowed(vec![two_rules], &req()));
    let p = compile_named(
        "p",
        json!({"rules": [{"to": [{"operation": {"methds": ["GET"]}}]}]}),
    );
    assert_eq!(p.issues[0].field, "spec.rules[0].to[0].operation.methds");
    assert_eq!(p.rule_count(), 0);
    let typo_action = json!({"action": "REJECT", "rules": [to(json!({"paths": ["/nothing"]}))]});
    assert!(!allowed(vec![typo_action], &req()));
    let allow_with_provider = json!({"action": "ALLOW", "provider": {"name": "x"}, "rules": [{}]});
    assert!(!allowed(vec![allow_with_provider], &req()));
}

#[test]
fn rules_that_cannot_be_evaluated_fail_closed() {
    let bad_when = json!({"when": [{"key": "request.unknown", "values": ["x"]}]});
    let bad_cidr = from(json!({"ipBlocks": ["10.0.0.0/33"]}));
    let experimental = when("experimental.envoy.filters.a.b[c]", &["x"]);
    for rule in [
        bad_when,
        bad_cidr,
        experimental,
        when("request.headers[x-a]", &[""]),
    ] {
        assert!(!matches(rule.clone(), &req()), "ALLOW {rule}");
        assert!(
            !allowed(vec![deny_rule(rule.clone())], &req()),
            "DENY {rule}"
        );
        let p = compile_named("p", allow_rule(rule.clone()));
        assert!(
            p.issues
                .iter()
                .any(|i| i.field.starts_with("spec.rules[0]")),
            "{:?}",
            p.issues
        );
    }
    // Other rules of the policy still apply.
    let two = json!({"rules": [when("nope", &["x"]), to(json!({"methods": ["GET"]}))]});
    assert!(allowed(vec![two], &req()));
    // Structural emptiness istiod's validation rejects.
    for rule in [
        json!({"from": []}),
        json!({"from": [{"source": {}}]}),
        from(json!({"principals": []})),
        json!({"to": [{}]}),
        json!({"when": [{"key": "source.ip"}]}),
    ] {
        assert!(!matches(rule.clone(), &req()), "{rule}");
        assert!(!allowed(vec![deny_rule(rule.clone())], &req()), "{rule}");
    }
}

#[test]
fn tcp_drops_http_fields_from_deny_and_skips_allow_rules_with_them() {
    let mut r = req();
    r.tcp = true;
    let paths = to(json!({"paths": ["/admin"]}));
    assert!(!matches(paths.clone(), &r));
    assert!(!allowed(vec![deny_rule(paths)], &r));
    let port_and_method = to(json!({"ports": ["8080"], "methods": ["GET"]}));
    assert!(!matches(port_and_method.clone(), &r));
    let other_port = to(json!({"ports": ["9090"], "methods": ["GET"]}));
    assert!(allowed(vec![deny_rule(other_port)], &r));
    assert!(!allowed(vec![deny_rule(port_and_method)], &r));
    assert!(matches(
        from(json!({"principals": ["cluster.local/ns/foo/sa/sleep"]})),
        &r
    ));
    assert!(!matches(from(json!({"requestPrincipals": ["*"]})), &r));
    assert!(!allowed(
        vec![deny_rule(when("request.headers[x]", &["y"]))],
        &r
    ));
    // remote.ip on TCP is the connection's source.
    assert!(matches(
        from(json!({"remoteIpBlocks": ["10.0.0.0/24"]})),
        &r
    ));
    // CUSTOM drops HTTP fields too.
    let custom = json!({"action": "CUSTOM", "provider": {"name": "e"}, "rules": [to(json!({"paths": ["/x"]}))]});
    let set = set_of(vec![custom]);
    assert!(r.with(|a| set.custom(a)).is_some());
}

#[test]
fn verdict_names_the_policy_rule_and_field() {
    let set = set_of(vec![
        deny_rule(to(json!({"paths": ["/admin/*"]}))),
        json!({"rules": [to(json!({"methods": ["POST"]})), from(json!({"namespaces": ["foo"]}))]}),
    ]);
    let mut r = req();
    r.path = "/admin/users";
    let v = r.with(|a| set.explain(a));
    assert!(!v.allowed);
    let d = v.decided_by.expect("decided");
    assert_eq!(d.policy.name, "p0");
    assert_eq!(d.action, PolicyAction::Deny);
    assert_eq!(d.rule, Some(0));
    assert_eq!(
        d.detail,
        "rules[0].to[0].operation.paths \"/admin/*\" matched \"/admin/users\""
    );
    assert_eq!(v.trace.len(), 1, "{:?}", v.trace);
    assert!(
        v.trace[0].starts_with("DENY foo/p0: rule 0 matched"),
        "{:?}",
        v.trace
    );

    let v = req().with(|a| set.explain(a));
    assert!(v.allowed);
    let d = v.decided_by.expect("decided");
    assert_eq!((d.policy.name.as_str(), d.rule), ("p1", Some(1)));
    assert_eq!(
        d.detail,
        "rules[1].from[0].source.namespaces \"foo\" matched \"cluster.local/ns/foo/sa/sleep\""
    );
    assert!(v.trace[0].contains("rule 0 did not match: rules[0].to[0].operation.paths [\"/admin/*\"] did not match \"/get\""), "{:?}", v.trace);
    assert!(
        v.trace[1].contains("rule 0 did not match: rules[0].to[0].operation.methods"),
        "{:?}",
        v.trace
    );
    // The hot path builds no trace.
    assert!(req().with(|a| set.evaluate(a)).trace.is_empty());

    let none = set_of(vec![allow_rule(to(json!({"paths": ["/x"]})))]);
    let v = req().with(|a| none.evaluate(a));
    let d = v.decided_by.expect("decided");
    assert_eq!((d.action, d.rule), (PolicyAction::Allow, None));
}

//! Compiling rules: every issue names its field and leaves the rule in force fail closed.

use super::super::tests::{
    body, claims, compile_one, judge, mint, rsa_key, with_bearer, ISS, RSA_JWKS, RSA_KID,
};
use crate::jwt::{Authenticator, Jwks};
use crate::PolicyRef;
use jsonwebtoken::Algorithm;
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;

#[test]
fn rule_issues_name_the_field_and_fail_closed() {
    let rsa = rsa_key();
    let token = mint(Algorithm::RS256, Some(RSA_KID), &rsa.encoding, claims());
    let cases = [
        (
            json!({"issuer": ISS, "jwks": "{not json"}),
            "spec.jwtRules[0].jwks",
            "Jwks doesn't have any valid public key",
        ),
        (
            json!({"issuer": "not-a-url"}),
            "spec.jwtRules[0].jwksUri",
            "Jwt issuer is not configured",
        ),
        (
            json!({"issuer": ISS, "jwksUri": "ftp://x/keys"}),
            "spec.jwtRules[0].jwksUri",
            "Jwks doesn't have any valid public key",
        ),
        (
            json!({"issuer": ISS, "jwks": RSA_JWKS, "audiences": 3}),
            "spec.jwtRules[0]",
            "Jwks doesn't have any valid public key",
        ),
        (
            json!({"issuer": ISS, "jwks": RSA_JWKS, "jwksUri": "https://x/k"}),
            "spec.jwtRules[0].jwksUri",
            "authenticated",
        ),
        (
            json!({"jwks": RSA_JWKS}),
            "spec.jwtRules[0].issuer",
            "authenticated",
        ),
        (
            json!({"issuer": ISS, "jwks": RSA_JWKS, "timeout": "soon"}),
            "spec.jwtRules[0].timeout",
            "authenticated",
        ),
        (
            json!({"issuer": ISS, "jwks": RSA_JWKS, "fromHeaders": [{"name": ""}]}),
            "spec.jwtRules[0].fromHeaders[0].name",
            "anonymous",
        ),
        (
            json!({"issuer": ISS, "jwks": RSA_JWKS, "outputClaimToHeaders": [{"header": "bad header", "claim": "sub"}]}),
            "spec.jwtRules[0].outputClaimToHeaders[0].header",
            "authenticated",
        ),
    ];
    for (rule, field, want) in cases {
        let (authn, issues) = compile_one(rule.clone());
        assert_eq!(
            issues.first().map(|(_, i)| i.field.as_str()),
            Some(field),
            "{rule}"
        );
        assert_eq!(with_bearer(&authn, &token), want, "{rule}");
    }
    let spec = json!({"jwtRules": {"issuer": ISS}});
    let (authn, issues) = Authenticator::compile(&[(PolicyRef::default(), &spec)]);
    assert_eq!(issues[0].1.field, "spec.jwtRules");
    assert!(authn.is_empty());
}

#[test]
fn without_keys_the_issuer_is_discovered() {
    let (authn, issues) = compile_one(json!({"issuer": "https://accounts.example.com/"}));
    assert!(issues.is_empty(), "{issues:?}");
    assert_eq!(
        authn.jwks_uris(),
        vec!["https://accounts.example.com/.well-known/openid-configuration".to_string()]
    );
}

#[test]
fn an_empty_issuer_with_a_jwks_uri_accepts_any_issuer() {
    let rsa = rsa_key();
    let uri = "https://keys.example.com/jwks";
    let (authn, issues) = compile_one(json!({"jwksUri": uri}));
    assert!(issues.is_empty(), "{issues:?}");
    let mut keys = HashMap::new();
    keys.insert(
        uri.to_string(),
        Arc::new(Jwks::parse(RSA_JWKS).expect("jwks")),
    );
    let token = mint(Algorithm::RS256, Some(RSA_KID), &rsa.encoding, claims());
    let out = judge(
        &authn,
        &[("authorization", &format!("Bearer {token}"))],
        "/",
        &keys,
    );
    assert_eq!(body(&out.outcome), "authenticated");
}

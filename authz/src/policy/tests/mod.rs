//! Table tests: Istio's AuthorizationPolicy semantics, one request at a time.

mod actions;
mod fields;
mod normalize;

use super::*;
use crate::attrs::{ConnectionAttrs, HttpAttrs, RequestAuth};
use serde_json::json;
use std::sync::Arc;

/// A request as the waypoint would describe it.
struct Req {
    principal: Option<&'static str>,
    source_ip: &'static str,
    destination_ip: &'static str,
    port: u16,
    sni: Option<&'static str>,
    host: &'static str,
    method: &'static str,
    path: &'static str,
    headers: Vec<(&'static str, &'static str)>,
    xff: Option<&'static str>,
    auth: Option<RequestAuth>,
    tcp: bool,
}

fn req() -> Req {
    Req {
        principal: Some("cluster.local/ns/foo/sa/sleep"),
        source_ip: "10.0.0.1",
        destination_ip: "10.1.0.1",
        port: 8080,
        sni: None,
        host: "httpbin.foo.svc.cluster.local",
        method: "GET",
        path: "/get",
        headers: Vec::new(),
        xff: None,
        auth: None,
        tcp: false,
    }
}

fn jwt(iss: &str, sub: &str, claims: serde_json::Value) -> RequestAuth {
    let claims = claims.as_object().cloned().unwrap_or_default();
    RequestAuth {
        principal: format!("{iss}/{sub}"),
        issuer: iss.to_string(),
        subject: sub.to_string(),
        audiences: match claims.get("aud") {
            Some(serde_json::Value::String(s)) => vec![s.clone()],
            Some(serde_json::Value::Array(a)) => a
                .iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect(),
            _ => Vec::new(),
        },
        presenter: claims.get("azp").and_then(|v| v.as_str()).map(String::from),
        claims,
    }
}

impl Req {
    /// Runs `f` on the request's attributes.
    fn with<T>(&self, f: impl FnOnce(&RequestAttrs<'_>) -> T) -> T {
        let source_ip = self.source_ip.parse().ok();
        let conn = ConnectionAttrs {
            source_principal: self.principal.map(String::from),
            source_ip,
            destination_ip: self.destination_ip.parse().ok(),
            destination_port: self.port,
            sni: self.sni.map(String::from),
        };
        let mut headers = http::HeaderMap::new();
        for (k, v) in &self.headers {
            headers.append(
                http::HeaderName::from_bytes(k.as_bytes()).expect("header name"),
                http::HeaderValue::from_str(v).expect("header value"),
            );
        }
        let http = (!self.tcp).then(|| HttpAttrs {
            host: self.host,
            method: self.method,
            path: self.path,
            headers: &headers,
            remote_ip: remote_ip(self.xff, source_ip),
            auth: self.auth.as_ref(),
        });
        f(&RequestAttrs { conn: &conn, http })
    }
}

fn compile_named(name: &str, spec: serde_json::Value) -> Arc<AuthorizationPolicy> {
    compile_with(name, spec, false, &TrustDomains::default())
}

fn compile_with(
    name: &str,
    spec: serde_json::Value,
    dry_run: bool,
    trust: &TrustDomains,
) -> Arc<AuthorizationPolicy> {
    let source = PolicyRef {
        kind: "AuthorizationPolicy".to_string(),
        namespace: "foo".to_string(),
        name: name.to_string(),
    };
    Arc::new(AuthorizationPolicy::compile(source, &spec, dry_run, trust))
}

fn set_of(specs: Vec<serde_json::Value>) -> PolicySet {
    PolicySet::new(
        specs
            .into_iter()
            .enumerate()
            .map(|(i, s)| compile_named(&format!("p{i}"), s))
            .collect(),
    )
}

/// Whether the request is allowed by the given specs (CUSTOM aside).
fn allowed(specs: Vec<serde_json::Value>, r: &Req) -> bool {
    let set = set_of(specs);
    let fast = r.with(|a| set.evaluate(a));
    let explained = r.with(|a| set.explain(a));
    // `explain` is the same walk as the hot path, with a trace.
    assert_eq!(fast.allowed, explained.allowed);
    assert_eq!(fast.decided_by, explained.decided_by);
    fast.allowed
}

/// An ALLOW policy with one rule made of `rule`.
fn allow_rule(rule: serde_json::Value) -> serde_json::Value {
    json!({"action": "ALLOW", "rules": [rule]})
}

/// A DENY policy with one rule made of `rule`.
fn deny_rule(rule: serde_json::Value) -> serde_json::Value {
    json!({"action": "DENY", "rules": [rule]})
}

/// Whether an ALLOW rule `rule` matches `r`.
fn matches(rule: serde_json::Value, r: &Req) -> bool {
    allowed(vec![allow_rule(rule)], r)
}

fn from(source: serde_json::Value) -> serde_json::Value {
    json!({"from": [{"source": source}]})
}

fn to(operation: serde_json::Value) -> serde_json::Value {
    json!({"to": [{"operation": operation}]})
}

fn when(key: &str, values: &[&str]) -> serde_json::Value {
    json!({"when": [{"key": key, "values": values}]})
}

fn when_not(key: &str, values: &[&str]) -> serde_json::Value {
    json!({"when": [{"key": key, "notValues": values}]})
}

//! GRPCRoute, compiled as the HTTPRoute it is equivalent to on the wire.
//!
//! A gRPC call is an HTTP/2 POST to `/{service}/{method}`, so a GRPCRoute method match is a path
//! match and everything else (hostnames, header matches, filters, backendRefs, weights,
//! parentRefs) has the same shape and meaning as in HTTPRoute. Translating once keeps one
//! matcher, one precedence order and one filter implementation for both kinds.

use gateway_api::experimental::grpcroutes::GrpcRoute;
use gateway_api::experimental::httproutes::HttpRoute;
use serde_json::{json, Value};

use crate::issue::{Issue, IssueReason};

/// The HTTPRoute equivalent of `route`; Err when a method match cannot be expressed (the
/// route is then not served).
pub fn grpc_to_http(route: &GrpcRoute) -> Result<HttpRoute, Issue> {
    let mut value = serde_json::to_value(route).map_err(|e| {
        Issue::error(
            IssueReason::Invalid,
            "spec",
            format!("cannot read route: {e}"),
        )
    })?;
    if let Some(rules) = value
        .pointer_mut("/spec/rules")
        .and_then(Value::as_array_mut)
    {
        for (r, rule) in rules.iter_mut().enumerate() {
            let Some(matches) = rule.get_mut("matches").and_then(Value::as_array_mut) else {
                continue;
            };
            for (m, matched) in matches.iter_mut().enumerate() {
                let Some(obj) = matched.as_object_mut() else {
                    continue;
                };
                if let Some(method) = obj.remove("method") {
                    let field = format!("spec.rules[{r}].matches[{m}].method");
                    obj.insert("path".into(), method_path(&method, &field)?);
                }
            }
        }
    }
    if let Some(obj) = value.as_object_mut() {
        obj.insert("kind".into(), json!("HTTPRoute"));
    }
    serde_json::from_value(value).map_err(|e| {
        Issue::error(
            IssueReason::Invalid,
            "spec",
            format!("route has no HTTPRoute equivalent: {e}"),
        )
    })
}

/// A GRPCMethodMatch as an HTTPPathMatch.
fn method_path(method: &Value, field: &str) -> Result<Value, Issue> {
    let text = |key: &str| {
        method
            .get(key)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    let service = text("service");
    let name = text("method");
    let regex = method.get("type").and_then(Value::as_str) == Some("RegularExpression");
    if service.is_none() && name.is_none() {
        return Err(Issue::error(
            IssueReason::Invalid,
            field,
            "a method match needs service, method or both",
        ));
    }
    for (key, value) in [("service", service), ("method", name)] {
        if !regex && value.is_some_and(|v| v.contains('/')) {
            return Err(Issue::error(
                IssueReason::Invalid,
                format!("{field}.{key}"),
                format!("{key} must not contain '/'"),
            ));
        }
    }
    // gRPC names never contain '/', so "[^/]+" stands for "any" on either side.
    let part = |v: Option<&str>| match v {
        Some(v) if regex => v.to_string(),
        Some(v) => regex::escape(v),
        None => "[^/]+".to_string(),
    };
    Ok(match (regex, service, name) {
        (false, Some(s), Some(m)) => json!({"type": "Exact", "value": format!("/{s}/{m}")}),
        _ => json!({
            "type": "RegularExpression",
            "value": format!("/{}/{}", part(service), part(name)),
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path_of(yaml_match: &str) -> Result<Value, Issue> {
        let route: GrpcRoute = serde_yaml_ng::from_str(&format!(
            "apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {{name: g, namespace: ns}}
spec:
  parentRefs: [{{name: gw}}]
  rules:
  - matches: [{yaml_match}]
    backendRefs: [{{name: svc, port: 50051}}]
"
        ))
        .expect("grpc route yaml");
        let http = grpc_to_http(&route)?;
        let m = http.spec.rules.expect("rules")[0]
            .matches
            .clone()
            .expect("matches")[0]
            .clone();
        Ok(serde_json::to_value(m.path).expect("json"))
    }

    #[test]
    fn method_matches_become_paths() {
        let cases = [
            (
                "{method: {service: pkg.Echo, method: Say}}",
                json!({"type": "Exact", "value": "/pkg.Echo/Say"}),
            ),
            (
                "{method: {service: pkg.Echo}}",
                json!({"type": "RegularExpression", "value": "/pkg\\.Echo/[^/]+"}),
            ),
            (
                "{method: {method: Say}}",
                json!({"type": "RegularExpression", "value": "/[^/]+/Say"}),
            ),
            (
                "{method: {type: RegularExpression, service: 'pkg\\..*', method: 'S.*'}}",
                json!({"type": "RegularExpression", "value": "/pkg\\..*/S.*"}),
            ),
        ];
        for (m, want) in cases {
            assert_eq!(path_of(m).expect(m), want, "{m}");
        }
    }

    #[test]
    fn bad_method_matches_are_refused() {
        for m in ["{method: {}}", "{method: {service: 'a/b', method: c}}"] {
            let issue = path_of(m).expect_err(m);
            assert!(
                issue.field.starts_with("spec.rules[0].matches[0].method"),
                "{m}: {issue}"
            );
        }
    }

    #[test]
    fn headers_and_backends_carry_over() {
        let route: GrpcRoute = serde_yaml_ng::from_str(
            "apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: g, namespace: ns}
spec:
  hostnames: [grpc.example.com]
  parentRefs: [{name: gw}]
  rules:
  - matches: [{headers: [{name: x-v, value: '2'}]}]
    filters: [{type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: a, value: b}]}}]
    backendRefs: [{name: v2, port: 50051, weight: 3}]
",
        )
        .expect("yaml");
        let http = grpc_to_http(&route).expect("converts");
        assert_eq!(http.spec.hostnames, Some(vec!["grpc.example.com".into()]));
        let rule = &http.spec.rules.expect("rules")[0];
        let headers = rule.matches.as_ref().expect("m")[0].headers.clone();
        assert_eq!(headers.expect("headers")[0].name, "x-v");
        assert_eq!(rule.backend_refs.as_ref().expect("b")[0].weight, Some(3));
        assert!(rule.filters.is_some());
    }
}

//! `spec.jwtRules` of RequestAuthentications compiled into providers, one per rule, as istiod
//! turns each rule into one provider of Envoy's `jwt_authn` filter.

use super::keys::Jwks;
use crate::spec::PolicyIssue;
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;

/// Istio's default for a rule's `timeout` (the JWKS fetch).
pub(crate) const DEFAULT_FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// Where OpenID discovery finds an issuer's `jwks_uri` (used when a rule sets neither
/// `jwksUri` nor `jwks`, as istiod does).
pub const OPENID_DISCOVERY_SUFFIX: &str = "/.well-known/openid-configuration";

fn is_http_url(uri: &str) -> bool {
    uri.starts_with("http://") || uri.starts_with("https://")
}

/// Claims Istio always splits on spaces (`spaceDelimitedClaims` adds to them).
const DEFAULT_SPACE_DELIMITED: [&str; 2] = ["scope", "permission"];

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RuleSpec {
    #[serde(default)]
    issuer: String,
    #[serde(default)]
    audiences: Vec<String>,
    #[serde(default)]
    jwks_uri: String,
    #[serde(default)]
    jwks: String,
    #[serde(default)]
    from_headers: Vec<HeaderSpec>,
    #[serde(default)]
    from_params: Vec<String>,
    #[serde(default)]
    from_cookies: Vec<String>,
    #[serde(default)]
    output_payload_to_header: String,
    #[serde(default)]
    forward_original_token: bool,
    #[serde(default)]
    output_claim_to_headers: Vec<ClaimToHeaderSpec>,
    #[serde(default)]
    space_delimited_claims: Vec<String>,
    #[serde(default)]
    timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct HeaderSpec {
    #[serde(default)]
    name: String,
    #[serde(default)]
    prefix: String,
}

#[derive(Debug, Default, Deserialize)]
struct ClaimToHeaderSpec {
    #[serde(default)]
    header: String,
    #[serde(default)]
    claim: String,
}

/// Where a provider looks for its token.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Location {
    /// A header (lower-cased name) whose value holds the token after `prefix`.
    Header { name: String, prefix: String },
    /// A query parameter.
    Param(String),
    /// A cookie.
    Cookie(String),
}

/// Where a provider's keys come from.
#[derive(Clone, Debug)]
pub(crate) enum KeySource {
    /// The rule's inline `jwks`.
    Inline(Arc<Jwks>),
    /// An inline `jwks` that does not parse: the rule's tokens are refused.
    Unusable,
    /// `jwksUri`, fetched by the waypoint.
    Remote(String),
}

/// One compiled `jwtRules[i]`.
#[derive(Clone, Debug)]
pub(crate) struct Provider {
    pub issuer: String,
    pub audiences: Vec<String>,
    pub keys: KeySource,
    pub locations: Vec<Location>,
    pub forward: bool,
    pub payload_header: Option<String>,
    /// `(header, claim)`.
    pub claim_headers: Vec<(String, String)>,
    pub space_delimited: Vec<String>,
    pub timeout: Duration,
}

/// Compiles `spec.jwtRules` of one policy, pushing what is wrong to `issues`.
pub(crate) fn compile_rules(
    spec: &serde_json::Value,
    issues: &mut Vec<PolicyIssue>,
) -> Vec<Provider> {
    let rules = match spec.get("jwtRules") {
        None | Some(serde_json::Value::Null) => return Vec::new(),
        Some(serde_json::Value::Array(rules)) => rules,
        Some(_) => {
            issues.push(PolicyIssue::error(
                "spec.jwtRules",
                "must be a list of JWT rules; no token is verified by this policy until it is",
            ));
            return Vec::new();
        }
    };
    let mut providers = Vec::new();
    for (i, rule) in rules.iter().enumerate() {
        let field = format!("spec.jwtRules[{i}]");
        match RuleSpec::deserialize(rule) {
            Ok(spec) => providers.push(compile_rule(spec, &field, issues)),
            Err(e) => {
                issues.push(PolicyIssue::error(
                    field,
                    format!("cannot be read ({e}); fix the rule: tokens of its issuer are refused until then"),
                ));
                // Fail closed: a rule whose issuer is known still claims that issuer's tokens.
                if let Some(issuer) = rule.get("issuer").and_then(|v| v.as_str()) {
                    let spec = RuleSpec {
                        issuer: issuer.to_string(),
                        ..RuleSpec::default()
                    };
                    let mut provider = compile_rule(spec, "", &mut Vec::new());
                    provider.keys = KeySource::Unusable;
                    providers.push(provider);
                }
            }
        }
    }
    providers
}

fn compile_rule(spec: RuleSpec, field: &str, issues: &mut Vec<PolicyIssue>) -> Provider {
    // Istio accepts an empty issuer (any `iss`) only together with a `jwksUri`.
    if spec.issuer.is_empty() && spec.jwks_uri.is_empty() {
        issues.push(PolicyIssue::error(
            format!("{field}.issuer"),
            "is required unless `jwksUri` is set (Istio rejects the rule): set it to the `iss` of the tokens this rule verifies",
        ));
    }
    for (j, aud) in spec.audiences.iter().enumerate() {
        if aud.is_empty() {
            issues.push(PolicyIssue::error(
                format!("{field}.audiences[{j}]"),
                "is empty; remove it or write the audience",
            ));
        }
    }
    let keys = key_source(&spec, field, issues);
    let timeout = fetch_timeout(spec.timeout.as_deref(), field, issues);
    let locations = locations(&spec, field, issues);
    let claim_headers = claim_headers(&spec, field, issues);
    let payload_header = match spec.output_payload_to_header.trim() {
        "" => None,
        name => valid_header(name, &format!("{field}.outputPayloadToHeader"), issues),
    };
    let mut space_delimited: Vec<String> = DEFAULT_SPACE_DELIMITED
        .iter()
        .map(|c| c.to_string())
        .collect();
    for claim in spec.space_delimited_claims {
        if !space_delimited.contains(&claim) {
            space_delimited.push(claim);
        }
    }
    Provider {
        issuer: spec.issuer,
        audiences: spec.audiences,
        keys,
        locations,
        forward: spec.forward_original_token,
        payload_header,
        claim_headers,
        space_delimited,
        timeout,
    }
}

fn key_source(spec: &RuleSpec, field: &str, issues: &mut Vec<PolicyIssue>) -> KeySource {
    if !spec.jwks.is_empty() {
        if !spec.jwks_uri.is_empty() {
            issues.push(PolicyIssue::warning(
                format!("{field}.jwksUri"),
                "is ignored because `jwks` is set too (istiod uses the inline keys); remove one of them",
            ));
        }
        return match Jwks::parse(&spec.jwks) {
            Ok(jwks) => KeySource::Inline(Arc::new(jwks)),
            Err(e) => {
                issues.push(PolicyIssue::error(
                    format!("{field}.jwks"),
                    format!(
                        "{e}; every token of issuer {:?} is refused until the keys are fixed",
                        spec.issuer
                    ),
                ));
                KeySource::Unusable
            }
        };
    }
    if spec.jwks_uri.is_empty() {
        // istiod finds the keys through OpenID discovery of the issuer.
        let discovery = format!(
            "{}{OPENID_DISCOVERY_SUFFIX}",
            spec.issuer.trim_end_matches('/')
        );
        if !is_http_url(&discovery) {
            issues.push(PolicyIssue::warning(
                format!("{field}.jwksUri"),
                "is not set and the issuer is not an http(s) URL, so OpenID discovery cannot find the keys: set `jwksUri` or `jwks`; tokens of this issuer are refused until then",
            ));
        }
        return KeySource::Remote(discovery);
    }
    let uri = spec.jwks_uri.as_str();
    if !is_http_url(uri) {
        issues.push(PolicyIssue::error(
            format!("{field}.jwksUri"),
            format!("{uri:?} is not an http:// or https:// URL; fix it: tokens of this issuer are refused until then"),
        ));
        return KeySource::Unusable;
    }
    KeySource::Remote(uri.to_string())
}

/// Reads a protobuf JSON duration (`"5s"`, `"1.5s"`; `"500ms"` accepted too).
fn fetch_timeout(text: Option<&str>, field: &str, issues: &mut Vec<PolicyIssue>) -> Duration {
    let Some(text) = text else {
        return DEFAULT_FETCH_TIMEOUT;
    };
    let parsed = match text.strip_suffix("ms") {
        Some(ms) => ms.parse::<f64>().ok().map(|v| v / 1000.0),
        None => text.strip_suffix('s').and_then(|s| s.parse::<f64>().ok()),
    };
    match parsed {
        Some(secs) if secs.is_finite() && secs > 0.0 => Duration::from_secs_f64(secs),
        _ => {
            issues.push(PolicyIssue::warning(
                format!("{field}.timeout"),
                format!("{text:?} is not a positive duration like \"5s\"; the default 5s is used"),
            ));
            DEFAULT_FETCH_TIMEOUT
        }
    }
}

fn valid_header(name: &str, field: &str, issues: &mut Vec<PolicyIssue>) -> Option<String> {
    match http::HeaderName::from_bytes(name.as_bytes()) {
        Ok(header) => Some(header.as_str().to_string()),
        Err(_) => {
            issues.push(PolicyIssue::error(
                field,
                format!("{name:?} is not a valid HTTP header name; it is ignored until fixed"),
            ));
            None
        }
    }
}

fn locations(spec: &RuleSpec, field: &str, issues: &mut Vec<PolicyIssue>) -> Vec<Location> {
    let mut out = Vec::new();
    for (j, h) in spec.from_headers.iter().enumerate() {
        let at = format!("{field}.fromHeaders[{j}].name");
        if h.name.is_empty() {
            issues.push(PolicyIssue::error(
                at,
                "is empty; name the header that carries the token",
            ));
        } else if let Some(name) = valid_header(&h.name, &at, issues) {
            out.push(Location::Header {
                name,
                prefix: h.prefix.clone(),
            });
        }
    }
    let named = |list: &[String], what: &str, issues: &mut Vec<PolicyIssue>| -> Vec<String> {
        let mut names = Vec::new();
        for (j, name) in list.iter().enumerate() {
            if name.is_empty() {
                issues.push(PolicyIssue::error(
                    format!("{field}.{what}[{j}]"),
                    "is empty; name the location that carries the token",
                ));
            } else {
                names.push(name.clone());
            }
        }
        names
    };
    out.extend(
        named(&spec.from_params, "fromParams", issues)
            .into_iter()
            .map(Location::Param),
    );
    out.extend(
        named(&spec.from_cookies, "fromCookies", issues)
            .into_iter()
            .map(Location::Cookie),
    );
    if spec.from_headers.is_empty() && spec.from_params.is_empty() && spec.from_cookies.is_empty() {
        // Envoy's defaults when istiod passes no location.
        out.push(Location::Header {
            name: "authorization".to_string(),
            prefix: "Bearer ".to_string(),
        });
        out.push(Location::Param("access_token".to_string()));
    }
    out
}

fn claim_headers(
    spec: &RuleSpec,
    field: &str,
    issues: &mut Vec<PolicyIssue>,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (j, c) in spec.output_claim_to_headers.iter().enumerate() {
        let at = format!("{field}.outputClaimToHeaders[{j}]");
        if c.claim.is_empty() {
            issues.push(PolicyIssue::error(
                format!("{at}.claim"),
                "is empty; name the claim to copy",
            ));
            continue;
        }
        if c.header.is_empty() {
            issues.push(PolicyIssue::error(
                format!("{at}.header"),
                "is empty; name the header to write",
            ));
            continue;
        }
        if let Some(header) = valid_header(&c.header, &format!("{at}.header"), issues) {
            out.push((header, c.claim.clone()));
        }
    }
    out
}

#[cfg(test)]
mod tests;

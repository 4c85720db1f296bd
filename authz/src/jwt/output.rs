//! What a verified token gives the request: `request.auth.*` (as Istio reads Envoy's payload
//! metadata) and the headers Envoy writes upstream (`outputPayloadToHeader`,
//! `outputClaimToHeaders`, the token removed unless forwarded).

use super::rules::Provider;
use super::token::Jwt;
use crate::attrs::{HeaderEdit, RequestAuth};
use base64::Engine;
use serde_json::{Map, Value};

/// `request.auth.*` of a verified token; the claims named in the provider's space-delimited
/// list are split into lists when they are strings (Envoy's `normalize_payload_in_metadata`).
pub(crate) fn request_auth(jwt: &Jwt, provider: &Provider) -> RequestAuth {
    let mut claims: Map<String, Value> = jwt.payload.clone();
    for name in &provider.space_delimited {
        if let Some(Value::String(text)) = claims.get(name) {
            let parts = text
                .split(' ')
                .filter(|p| !p.is_empty())
                .map(|p| Value::String(p.to_string()))
                .collect();
            claims.insert(name.clone(), Value::Array(parts));
        }
    }
    RequestAuth {
        principal: format!("{}/{}", jwt.iss, jwt.sub),
        issuer: jwt.iss.clone(),
        subject: jwt.sub.clone(),
        audiences: jwt.audiences.clone(),
        presenter: jwt
            .payload
            .get("azp")
            .and_then(Value::as_str)
            .map(str::to_string),
        claims,
    }
}

/// The edits Envoy makes after verifying `jwt` found in `token_header` (None for a query or
/// cookie token, which Envoy leaves in place).
pub(crate) fn verified_edits(
    jwt: &Jwt,
    provider: &Provider,
    token_header: Option<&str>,
) -> Vec<HeaderEdit> {
    let mut edits = Vec::new();
    if let Some(header) = &provider.payload_header {
        edits.push(HeaderEdit::Set(header.clone(), jwt.payload_b64.clone()));
    }
    for (header, claim) in &provider.claim_headers {
        if let Some(value) = claim_value(&jwt.payload, claim) {
            if http::HeaderValue::from_str(&value).is_ok() {
                edits.push(HeaderEdit::Set(header.clone(), value));
            }
        }
    }
    // Last, as in Envoy: a claim written to the token's own header is removed with it.
    if let (false, Some(header)) = (provider.forward, token_header) {
        edits.push(HeaderEdit::Remove(header.to_string()));
    }
    edits
}

/// A claim as Envoy's `claim_to_headers` writes it: `a.b` walks nested objects; strings as
/// they are, numbers as integers when whole, booleans as `true`/`false`, objects and lists as
/// base64 of their JSON; an empty result writes nothing.
pub(crate) fn claim_value(payload: &Map<String, Value>, claim: &str) -> Option<String> {
    let mut parts = claim.split('.');
    let mut value = payload.get(parts.next()?)?;
    for part in parts {
        value = value.as_object()?.get(part)?;
    }
    let text = match value {
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => number_text(n),
        Value::Object(_) | Value::Array(_) => {
            base64::engine::general_purpose::STANDARD.encode(value.to_string())
        }
        Value::Null => return None,
    };
    (!text.is_empty()).then_some(text)
}

fn number_text(n: &serde_json::Number) -> String {
    if let Some(i) = n.as_i64() {
        return i.to_string();
    }
    if let Some(u) = n.as_u64() {
        return u.to_string();
    }
    let f = n.as_f64().unwrap_or_default();
    if f.fract() == 0.0 && f.abs() < 9.0e18 {
        // A whole number written with a fraction (`3.0`): Envoy prints it as an integer.
        return format!("{}", f as i64);
    }
    // Envoy prints other numbers with six significant digits (absl's StrCat).
    let text = format!("{f:.*e}", 5);
    match text
        .split_once('e')
        .map(|(m, e)| (m.parse::<f64>(), e.parse::<i32>()))
    {
        Some((Ok(mantissa), Ok(exp))) if (-5..6).contains(&exp) => {
            let value = mantissa * 10f64.powi(exp);
            let decimals = (5 - exp).max(0) as usize;
            let fixed = format!("{value:.decimals$}");
            let fixed = fixed.trim_end_matches('0');
            fixed.trim_end_matches('.').to_string()
        }
        _ => text,
    }
}

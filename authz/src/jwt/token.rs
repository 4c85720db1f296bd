//! A token split and decoded as Envoy's JWT library does, with its checks in the same order,
//! so that a malformed token gets the same message.

use super::status::JwtStatus;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use serde_json::{Map, Value};

/// base64url that accepts the padding being there or not, like Envoy's decoder.
pub(crate) const B64URL: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The algorithms Envoy parses. HS* parse (so the message is Envoy's) but no key ever fits them,
/// and ES512 parses but the crypto backend cannot verify it (no key fits either).
const PARSED_ALGS: &[&str] = &[
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "HS256",
    "HS384", "HS512", "EdDSA",
];

/// A parsed, not yet verified token.
#[derive(Clone, Debug)]
pub(crate) struct Jwt {
    /// The `alg` header.
    pub alg: String,
    /// The `kid` header.
    pub kid: Option<String>,
    /// `iss`, empty when absent.
    pub iss: String,
    /// `sub`, empty when absent.
    pub sub: String,
    /// `aud` as a list.
    pub audiences: Vec<String>,
    /// `nbf`, 0 when absent.
    pub nbf: u64,
    /// `exp`, 0 when absent.
    pub exp: u64,
    /// The decoded payload.
    pub payload: Map<String, Value>,
    /// The payload section exactly as sent (what `outputPayloadToHeader` forwards).
    pub payload_b64: String,
    /// `header.payload`, the signed bytes.
    pub signed: String,
    /// The signature section.
    pub signature: String,
}

fn decode_object(
    section: &str,
    bad_b64: JwtStatus,
    bad_json: JwtStatus,
) -> Result<Map<String, Value>, JwtStatus> {
    let bytes = B64URL.decode(section).map_err(|_| bad_b64)?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(bad_json),
    }
}

fn optional_string(
    map: &Map<String, Value>,
    key: &str,
    err: JwtStatus,
) -> Result<Option<String>, JwtStatus> {
    match map.get(key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(err),
    }
}

/// A time claim as Envoy reads it: a number (fractions truncated) in `0..2^64`.
fn optional_u64(
    map: &Map<String, Value>,
    key: &'static str,
    err: JwtStatus,
) -> Result<u64, JwtStatus> {
    match map.get(key) {
        None => Ok(0),
        Some(Value::Number(n)) => match (n.as_u64(), n.as_f64()) {
            (Some(v), _) => Ok(v),
            (None, Some(f)) if (0.0..18_446_744_073_709_551_616.0).contains(&f) => Ok(f as u64),
            _ => Err(JwtStatus::PayloadTimeOutOfRange(key)),
        },
        Some(_) => Err(err),
    }
}

fn audiences(payload: &Map<String, Value>) -> Result<Vec<String>, JwtStatus> {
    match payload.get("aud") {
        None => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![s.clone()]),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .ok_or(JwtStatus::PayloadAudNotString),
        Some(_) => Err(JwtStatus::PayloadAudNotString),
    }
}

impl Jwt {
    /// Splits and decodes `token`, checking what Envoy checks before looking at any key.
    pub(crate) fn parse(token: &str) -> Result<Jwt, JwtStatus> {
        let sections: Vec<&str> = token.split('.').collect();
        let [header, payload_b64, signature] = sections[..] else {
            return Err(JwtStatus::BadFormat);
        };
        let head = decode_object(header, JwtStatus::HeaderBadBase64, JwtStatus::HeaderBadJson)?;
        let alg = match head.get("alg") {
            Some(Value::String(alg)) => alg.clone(),
            _ => return Err(JwtStatus::HeaderBadAlg),
        };
        if !PARSED_ALGS.contains(&alg.as_str()) {
            return Err(JwtStatus::HeaderNotImplementedAlg);
        }
        let kid = optional_string(&head, "kid", JwtStatus::HeaderBadKid)?;
        let payload = decode_object(
            payload_b64,
            JwtStatus::PayloadBadBase64,
            JwtStatus::PayloadBadJson,
        )?;
        let iss = optional_string(&payload, "iss", JwtStatus::PayloadIssNotString)?;
        let sub = optional_string(&payload, "sub", JwtStatus::PayloadSubNotString)?;
        optional_u64(&payload, "iat", JwtStatus::PayloadIatNotInteger)?;
        let nbf = optional_u64(&payload, "nbf", JwtStatus::PayloadNbfNotInteger)?;
        let exp = optional_u64(&payload, "exp", JwtStatus::PayloadExpNotInteger)?;
        optional_string(&payload, "jti", JwtStatus::PayloadJtiNotString)?;
        let audiences = audiences(&payload)?;
        B64URL
            .decode(signature)
            .map_err(|_| JwtStatus::SignatureBadBase64)?;
        Ok(Jwt {
            alg,
            kid,
            iss: iss.unwrap_or_default(),
            sub: sub.unwrap_or_default(),
            audiences,
            nbf,
            exp,
            payload,
            payload_b64: payload_b64.to_string(),
            signed: format!("{header}.{payload_b64}"),
            signature: signature.to_string(),
        })
    }

    /// Envoy's time check with its default 60 s clock skew: `nbf` first, then `exp` (0 means
    /// absent).
    pub(crate) fn check_time(&self, now_unix: u64) -> Result<(), JwtStatus> {
        const CLOCK_SKEW_SECS: u64 = 60;
        if self.nbf > now_unix.saturating_add(CLOCK_SKEW_SECS) {
            return Err(JwtStatus::NotYetValid);
        }
        if self.exp > 0 && self.exp.saturating_add(CLOCK_SKEW_SECS) < now_unix {
            return Err(JwtStatus::Expired);
        }
        Ok(())
    }
}

/// Envoy's audience check: allowed when the rule lists none, else when any of the token's
/// audiences is listed, both compared without an `http://`/`https://` scheme and trailing `/`.
pub(crate) fn audiences_allowed(allowed: &[String], token: &[String]) -> bool {
    fn sanitize(aud: &str) -> &str {
        let aud = aud
            .strip_prefix("http://")
            .or_else(|| aud.strip_prefix("https://"))
            .unwrap_or(aud);
        aud.strip_suffix('/').unwrap_or(aud)
    }
    allowed.is_empty()
        || token
            .iter()
            .any(|t| allowed.iter().any(|a| sanitize(a) == sanitize(t)))
}

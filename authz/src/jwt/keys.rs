//! JWKS: the public keys a rule verifies with, parsed as Envoy's JWT library parses them (keys
//! it cannot use are skipped; a set with none usable is an error), and signature verification
//! with the key selection of that library (`kid` and `alg` must fit when both sides name one).

use super::status::JwtStatus;
use super::token::{Jwt, B64URL};
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;
use std::fmt;

/// Why a JWKS text gives no key.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum JwksError {
    /// Not JSON.
    #[error("the JWKS is not valid JSON: {0}")]
    Json(String),
    /// No `keys` field.
    #[error("the JWKS has no \"keys\" field (a JSON Web Key Set is {{\"keys\": [...]}})")]
    NoKeys,
    /// `keys` is not a list.
    #[error("\"keys\" in the JWKS is not a list")]
    BadKeys,
    /// No key of a supported type (RSA, EC P-256/P-384, OKP Ed25519; `oct` HMAC keys are
    /// refused).
    #[error("the JWKS has no usable public key (RSA, EC P-256/P-384 or OKP Ed25519; HMAC `oct` keys are refused)")]
    NoValidKeys,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum KeyType {
    Rsa,
    P256,
    P384,
    Ed25519,
}

impl KeyType {
    /// Whether a token's `alg` belongs to this key's family: Envoy then tries the key, and a
    /// failure is "verification fails" rather than "no key matches".
    fn family_fits(self, alg: &str) -> bool {
        match self {
            KeyType::Rsa => alg.starts_with("RS") || alg.starts_with("PS"),
            KeyType::P256 | KeyType::P384 => alg.starts_with("ES"),
            KeyType::Ed25519 => alg == "EdDSA",
        }
    }

    /// The algorithm a token names, if this key can verify it (an EC key only its own curve's;
    /// ES512 never, the crypto backend has no P-521).
    fn verifies(self, alg: &str) -> Option<Algorithm> {
        match (self, alg) {
            (KeyType::Rsa, "RS256") => Some(Algorithm::RS256),
            (KeyType::Rsa, "RS384") => Some(Algorithm::RS384),
            (KeyType::Rsa, "RS512") => Some(Algorithm::RS512),
            (KeyType::Rsa, "PS256") => Some(Algorithm::PS256),
            (KeyType::Rsa, "PS384") => Some(Algorithm::PS384),
            (KeyType::Rsa, "PS512") => Some(Algorithm::PS512),
            (KeyType::P256, "ES256") => Some(Algorithm::ES256),
            (KeyType::P384, "ES384") => Some(Algorithm::ES384),
            (KeyType::Ed25519, "EdDSA") => Some(Algorithm::EdDSA),
            _ => None,
        }
    }
}

#[derive(Clone)]
struct Key {
    kid: Option<String>,
    alg: Option<String>,
    kind: KeyType,
    decoding: DecodingKey,
}

/// A parsed JSON Web Key Set.
#[derive(Clone)]
pub struct Jwks {
    keys: Vec<Key>,
}

impl fmt::Debug for Jwks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.keys.iter().map(|k| (k.kind, k.kid.as_deref())))
            .finish()
    }
}

fn text<'a>(key: &'a Value, field: &str) -> Option<&'a str> {
    key.get(field).and_then(Value::as_str)
}

/// A base64url field of a JWK, decoded, of `len` bytes when given (the crypto backend indexes
/// raw EC and Ed25519 keys without checking their length).
fn bytes(key: &Value, field: &str, len: Option<usize>) -> Option<Vec<u8>> {
    let decoded = B64URL.decode(text(key, field)?).ok()?;
    let fits = !decoded.is_empty() && len.is_none_or(|len| decoded.len() == len);
    fits.then_some(decoded)
}

fn parse_key(key: &Value) -> Option<Key> {
    let (kind, decoding) = match (text(key, "kty")?, text(key, "crv")) {
        ("RSA", _) => {
            let (n, e) = (bytes(key, "n", None)?, bytes(key, "e", None)?);
            (KeyType::Rsa, DecodingKey::from_rsa_raw_components(&n, &e))
        }
        ("EC", Some(crv)) => {
            let (kind, len) = match crv {
                "P-256" => (KeyType::P256, 32),
                "P-384" => (KeyType::P384, 48),
                _ => return None,
            };
            let mut point = vec![0x04];
            point.extend(bytes(key, "x", Some(len))?);
            point.extend(bytes(key, "y", Some(len))?);
            (kind, DecodingKey::from_ec_der(&point))
        }
        ("OKP", Some("Ed25519")) => (
            KeyType::Ed25519,
            DecodingKey::from_ed_der(&bytes(key, "x", Some(32))?),
        ),
        // `oct` (HMAC) keys are refused: a shared secret has no place in a public key set,
        // and accepting one is how "HMAC with a public key" forgeries start.
        _ => return None,
    };
    Some(Key {
        kid: text(key, "kid").map(str::to_string),
        alg: text(key, "alg").map(str::to_string),
        kind,
        decoding,
    })
}

impl Jwks {
    /// Parses a JWKS document; keys of unsupported types are skipped.
    pub fn parse(text: &str) -> Result<Jwks, JwksError> {
        let doc: Value = serde_json::from_str(text).map_err(|e| JwksError::Json(e.to_string()))?;
        let keys = match doc.get("keys") {
            None => return Err(JwksError::NoKeys),
            Some(Value::Array(keys)) => keys,
            Some(_) => return Err(JwksError::BadKeys),
        };
        let keys: Vec<Key> = keys.iter().filter_map(parse_key).collect();
        if keys.is_empty() {
            return Err(JwksError::NoValidKeys);
        }
        Ok(Jwks { keys })
    }

    /// The `kid`s of the keys (keys without one are not listed).
    pub fn kids(&self) -> Vec<&str> {
        self.keys.iter().filter_map(|k| k.kid.as_deref()).collect()
    }

    /// Whether some key fits `jwt` (its `kid`, `alg` and key family).
    pub(crate) fn has_key_for(&self, jwt: &Jwt) -> bool {
        self.keys.iter().any(|k| key_fits(k, jwt))
    }

    /// Verifies the signature with every key that fits; `KidAlgMismatch` when none fits.
    pub(crate) fn verify(&self, jwt: &Jwt) -> Result<(), JwtStatus> {
        let mut fitted = false;
        for key in self.keys.iter().filter(|k| key_fits(k, jwt)) {
            fitted = true;
            let Some(alg) = key.kind.verifies(&jwt.alg) else {
                continue;
            };
            let verified = jsonwebtoken::crypto::verify(
                &jwt.signature,
                jwt.signed.as_bytes(),
                &key.decoding,
                alg,
            );
            if matches!(verified, Ok(true)) {
                return Ok(());
            }
        }
        Err(if fitted {
            JwtStatus::VerificationFail
        } else {
            JwtStatus::KidAlgMismatch
        })
    }
}

/// Envoy's key selection: when both name a `kid` they must agree, a key's `alg` must be the
/// token's, and the key type must be of the algorithm's family.
fn key_fits(key: &Key, jwt: &Jwt) -> bool {
    if let (Some(want), Some(have)) = (&jwt.kid, &key.kid) {
        if want != have {
            return false;
        }
    }
    if key.alg.as_ref().is_some_and(|alg| *alg != jwt.alg) {
        return false;
    }
    key.kind.family_fits(&jwt.alg)
}

/// What a token meets when its rule's `jwksUri` has never been fetched: istiod then configures
/// Envoy with a placeholder JWKS (one RSA key, `kid` "abc", that verifies nothing), so a token
/// naming another `kid` gets `KidAlgMismatch` and an RSA token without one fails verification.
pub(crate) fn verify_with_placeholder(jwt: &Jwt) -> Result<(), JwtStatus> {
    const PLACEHOLDER_KID: &str = "abc";
    let kid_fits = jwt.kid.as_deref().is_none_or(|kid| kid == PLACEHOLDER_KID);
    if kid_fits && KeyType::Rsa.family_fits(&jwt.alg) {
        Err(JwtStatus::VerificationFail)
    } else {
        Err(JwtStatus::KidAlgMismatch)
    }
}

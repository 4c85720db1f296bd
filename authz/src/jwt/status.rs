//! Why a token was refused, worded as Envoy's `jwt_authn` words it (the JWT verification
//! library's status strings), and the local reply Envoy sends for it.

use crate::attrs::LocalReply;

/// A token's verification result other than success, one per status string of Envoy's JWT
/// library that a waypoint can produce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JwtStatus {
    /// Not three dot-separated sections.
    BadFormat,
    /// The header section is not base64url.
    HeaderBadBase64,
    /// The header section is not a JSON object.
    HeaderBadJson,
    /// `alg` missing or not a string.
    HeaderBadAlg,
    /// `alg` is not one Envoy verifies.
    HeaderNotImplementedAlg,
    /// `kid` is not a string.
    HeaderBadKid,
    /// The payload section is not base64url.
    PayloadBadBase64,
    /// The payload section is not a JSON object.
    PayloadBadJson,
    /// `iss` is not a string.
    PayloadIssNotString,
    /// `sub` is not a string.
    PayloadSubNotString,
    /// `iat` is not an integer.
    PayloadIatNotInteger,
    /// `nbf` is not an integer.
    PayloadNbfNotInteger,
    /// `exp` is not an integer.
    PayloadExpNotInteger,
    /// `iat`, `nbf` or `exp` is negative or beyond 64 bits; the name is the claim's.
    PayloadTimeOutOfRange(&'static str),
    /// `jti` is not a string.
    PayloadJtiNotString,
    /// `aud` is neither a string nor a list of strings.
    PayloadAudNotString,
    /// The signature section is not base64url.
    SignatureBadBase64,
    /// No rule at the token's location names its issuer.
    UnknownIssuer,
    /// `nbf` is in the future (beyond the clock skew).
    NotYetValid,
    /// `exp` is in the past (beyond the clock skew).
    Expired,
    /// None of the token's audiences is allowed.
    AudienceNotAllowed,
    /// A key fits but the signature does not verify.
    VerificationFail,
    /// No key of the JWKS fits the token's `kid` and `alg`.
    KidAlgMismatch,
    /// The rule's JWKS has no usable key (an inline `jwks` that does not parse).
    JwksNoValidKeys,
}

impl JwtStatus {
    /// The message Envoy writes as the local reply's body.
    pub fn message(self) -> &'static str {
        use JwtStatus::*;
        match self {
            BadFormat => {
                "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections"
            }
            HeaderBadBase64 => "Jwt header is an invalid Base64url encoded",
            HeaderBadJson => "Jwt header is an invalid JSON",
            HeaderBadAlg => "Jwt header [alg] field is required and must be a string",
            HeaderNotImplementedAlg => "Jwt header [alg] is not supported",
            HeaderBadKid => "Jwt header [kid] field is not a string",
            PayloadBadBase64 => "Jwt payload is an invalid Base64url encoded",
            PayloadBadJson => "Jwt payload is an invalid JSON",
            PayloadIssNotString => "Jwt payload [iss] field is not a string",
            PayloadSubNotString => "Jwt payload [sub] field is not a string",
            PayloadIatNotInteger => "Jwt payload [iat] field is not an integer",
            PayloadNbfNotInteger => "Jwt payload [nbf] field is not an integer",
            PayloadExpNotInteger => "Jwt payload [exp] field is not an integer",
            PayloadTimeOutOfRange("iat") => {
                "Jwt payload [iat] field is not a positive 64 bit integer"
            }
            PayloadTimeOutOfRange("nbf") => {
                "Jwt payload [nbf] field is not a positive 64 bit integer"
            }
            PayloadTimeOutOfRange(_) => "Jwt payload [exp] field is not a positive 64 bit integer",
            PayloadJtiNotString => "Jwt payload [jti] field is not a string",
            PayloadAudNotString => "Jwt payload [aud] field is not a string or string list",
            SignatureBadBase64 => "Jwt signature is an invalid Base64url encoded",
            UnknownIssuer => "Jwt issuer is not configured",
            NotYetValid => "Jwt not yet valid",
            Expired => "Jwt is expired",
            AudienceNotAllowed => "Audiences in Jwt are not allowed",
            VerificationFail => "Jwt verification fails",
            KidAlgMismatch => "Jwks doesn't have key to match kid or alg from Jwt",
            JwksNoValidKeys => "Jwks doesn't have any valid public key",
        }
    }

    /// Envoy answers 403 for audiences and 401 for everything else.
    pub fn http_status(self) -> u16 {
        if self == JwtStatus::AudienceNotAllowed {
            403
        } else {
            401
        }
    }

    /// The local reply for a request whose original URI (`<scheme>://<host><path?query>`, as
    /// Envoy rebuilds it from `x-forwarded-proto`, the host and the full path) was `uri`.
    /// Envoy adds the `www-authenticate` challenge to the 403 too.
    pub fn reply(self, uri: &str) -> LocalReply {
        LocalReply {
            status: self.http_status(),
            body: self.message().to_string(),
            headers: vec![(
                "www-authenticate".to_string(),
                format!("Bearer realm=\"{uri}\", error=\"invalid_token\""),
            )],
        }
    }
}

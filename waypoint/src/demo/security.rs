//! The demo's side of the folder's security policies: tokens for the portals' requests to a
//! service with a RequestAuthentication, and a few requests the policies must refuse.
//!
//! The traffic generator reads the same YAML the waypoint enforces, so that it can tell an
//! answer the policies intend (a 401 to an expired token, a 403 on a denied path) from a
//! failure. It mints its tokens with the key in `<config>/jwt/signing-key.pem` (the private
//! half of the RequestAuthentication's inline JWKS, committed for the demo only); without that
//! file it sends no token and probes nothing.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use authz::spec::{Attachment, TargetRef};
use http::StatusCode;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::PrivatePkcs1KeyDer;
use serde_json::{json, Value};

use crate::config::{Document, Resource};

/// Where the demo's signing key sits, relative to the config folder.
pub const SIGNING_KEY: &str = "jwt/signing-key.pem";

/// How long the portals' valid tokens live: longer than any demo run.
const TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// An answer a security policy gives instead of forwarding, as Envoy's jwt_authn and RBAC
/// filters give it (and Istio's waypoint with them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denial {
    /// 401 from request authentication: a token that fails verification.
    Unauthenticated,
    /// 403 from an AuthorizationPolicy: `RBAC: access denied`.
    Forbidden,
}

impl Denial {
    /// The status the policy answers with.
    pub fn status(self) -> StatusCode {
        match self {
            Denial::Unauthenticated => StatusCode::UNAUTHORIZED,
            Denial::Forbidden => StatusCode::FORBIDDEN,
        }
    }

    /// How the answer's body starts: every jwt_authn failure body starts with `Jwt` (`Jwt is
    /// expired`, `Jwt verification fails`…), RBAC's is `RBAC: access denied`.
    pub fn body_prefix(self) -> &'static [u8] {
        match self {
            Denial::Unauthenticated => b"Jwt",
            Denial::Forbidden => b"RBAC: access denied",
        }
    }

    /// Whether an answer is this denial.
    pub fn is(self, status: StatusCode, body: &[u8]) -> bool {
        status == self.status() && body.trim_ascii_start().starts_with(self.body_prefix())
    }
}

/// A request the folder's policies must refuse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The request path.
    pub path: String,
    /// The token it carries (as `Authorization: Bearer`), if any.
    pub bearer: Option<String>,
    /// The answer the policies intend.
    pub denial: Denial,
}

/// What a flow sends because of the folder's security policies.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlowSecurity {
    /// The valid token every ordinary request carries.
    pub bearer: Option<String>,
    /// Requests to mix in that the policies must refuse.
    pub refusals: Vec<Refusal>,
}

/// The JWT rule the demo mints tokens for: the first of the first RequestAuthentication on the
/// service.
struct JwtRule {
    issuer: String,
    audience: Option<String>,
    kid: Option<String>,
}

/// What the demo sends to `namespace/service` because of the policies in `documents`: a valid
/// token and two refused ones (expired, bad signature) when a RequestAuthentication targets the
/// service and `config` holds the signing key, and a request to a path a DENY
/// AuthorizationPolicy on the service refuses. Fails only when the key file is there but
/// unusable.
pub fn for_service(
    config: &Path,
    documents: &[Document],
    namespace: &str,
    service: &str,
) -> anyhow::Result<FlowSecurity> {
    let mut security = FlowSecurity::default();
    let key_path = config.join(SIGNING_KEY);
    let rule = jwt_rule(documents, namespace, service);
    if let (Some(rule), true) = (rule, key_path.exists()) {
        let pem = std::fs::read(&key_path)
            .with_context(|| format!("cannot read {}", key_path.display()))?;
        let key = PrivatePkcs1KeyDer::from_pem_slice(&pem).with_context(|| {
            format!(
                "{} is not an RSA private key in PKCS#1 PEM (BEGIN RSA PRIVATE KEY)",
                key_path.display()
            )
        })?;
        let minter = Minter {
            key: EncodingKey::from_rsa_der(key.secret_pkcs1_der()),
            rule,
        };
        let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
        let valid = minter.mint(now, now + TOKEN_LIFETIME.as_secs())?;
        // Issued two hours ago, expired an hour ago: well past the 60 s clock skew allowed.
        let expired = minter.mint(now - 7200, now - 3600)?;
        let path = format!("/{service}");
        security.refusals = vec![
            refusal(&path, Some(expired), Denial::Unauthenticated),
            refusal(&path, Some(tamper(&valid)), Denial::Unauthenticated),
        ];
        security.bearer = Some(valid);
    }
    if let Some(path) = denied_path(documents, namespace, service) {
        let bearer = security.bearer.clone();
        security.refusals.push(Refusal {
            path,
            bearer,
            denial: Denial::Forbidden,
        });
    }
    Ok(security)
}

fn refusal(path: &str, bearer: Option<String>, denial: Denial) -> Refusal {
    Refusal {
        path: path.to_owned(),
        bearer,
        denial,
    }
}

/// Mints RS256 tokens for one rule.
struct Minter {
    key: EncodingKey,
    rule: JwtRule,
}

impl Minter {
    /// A token issued at `iat`, expiring at `exp`, for the portal the demo plays.
    fn mint(&self, iat: u64, exp: u64) -> anyhow::Result<String> {
        let mut header = Header::new(Algorithm::RS256);
        header.kid.clone_from(&self.rule.kid);
        let mut claims = json!({
            "iss": self.rule.issuer,
            "sub": format!("{}/{}", super::CLIENT_NAMESPACE, super::CLIENT_SERVICE_ACCOUNT),
            "iat": iat,
            "exp": exp,
        });
        if let Some(audience) = &self.rule.audience {
            claims["aud"] = json!(audience);
        }
        jsonwebtoken::encode(&header, &claims, &self.key).context("cannot sign the demo's JWT")
    }
}

/// `token` with one character of its signature changed: still three well-formed sections, so
/// that it fails on the signature and nothing else.
fn tamper(token: &str) -> String {
    let Some(dot) = token.rfind('.') else {
        return token.to_owned();
    };
    // The middle of the signature: every base64url character there carries six whole bits,
    // so the change survives decoding (the last character may carry padding bits).
    let at = dot + 1 + (token.len() - dot - 1) / 2;
    token
        .char_indices()
        .map(|(i, c)| match (i == at, c) {
            (true, 'A') => 'B',
            (true, _) => 'A',
            (false, c) => c,
        })
        .collect()
}

/// Whether a policy's spec targets the Service `service` (in the policy's namespace).
fn targets_service(spec: &Value, service: &str) -> bool {
    Attachment::of(spec).is_ok_and(|a| a.targets().any(|t: &TargetRef| is_service(t, service)))
}

fn is_service(target: &TargetRef, service: &str) -> bool {
    target.kind == "Service" && target.group.is_empty() && target.name == service
}

/// The first JWT rule of the first RequestAuthentication on the service.
fn jwt_rule(documents: &[Document], namespace: &str, service: &str) -> Option<JwtRule> {
    documents.iter().find_map(|d| {
        let Resource::RequestAuthentication(ra) = &d.resource else {
            return None;
        };
        if d.object.namespace != namespace || !targets_service(&ra.spec, service) {
            return None;
        }
        let rule = ra.spec.get("jwtRules")?.get(0)?;
        let kid = rule
            .get("jwks")
            .and_then(Value::as_str)
            .and_then(|jwks| serde_json::from_str::<Value>(jwks).ok())
            .and_then(|jwks| jwks["keys"][0]["kid"].as_str().map(str::to_owned));
        Some(JwtRule {
            issuer: rule.get("issuer")?.as_str()?.to_owned(),
            audience: rule["audiences"][0].as_str().map(str::to_owned),
            kid,
        })
    })
}

/// A path the first DENY AuthorizationPolicy on the service refuses (dry-run ones refuse
/// nothing): its first rule's first path, with a trailing `*` (a prefix match) filled in. `None` when that rule has conditions
/// besides the path, which the demo could not tell would hold.
fn denied_path(documents: &[Document], namespace: &str, service: &str) -> Option<String> {
    documents.iter().find_map(|d| {
        let Resource::AuthorizationPolicy(ap) = &d.resource else {
            return None;
        };
        let spec = &ap.spec;
        // A dry-run policy only logs what it would do: nothing to refuse.
        let dry_run = ap
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("istio.io/dry-run"))
            .is_some_and(|v| v.eq_ignore_ascii_case("true"));
        if dry_run
            || d.object.namespace != namespace
            || spec.get("action").and_then(Value::as_str) != Some("DENY")
            || !targets_service(spec, service)
        {
            return None;
        }
        let rule = spec.get("rules")?.get(0)?;
        let operation = rule.get("to")?.get(0)?.get("operation")?.as_object()?;
        if rule.get("from").is_some() || rule.get("when").is_some() || operation.len() != 1 {
            return None;
        }
        let path = operation.get("paths")?.get(0)?.as_str()?;
        Some(match path.strip_suffix('*') {
            Some(prefix) => format!("{prefix}reports"),
            None => path.to_owned(),
        })
    })
}

#[cfg(test)]
mod tests;

//! RequestAuthentication at request time: the request's tokens verified by the target's
//! `authz::jwt::Authenticator` with keys from the [`JwksCache`].

use super::jwks::JwksCache;
use authz::jwt::{Authenticator, AuthnOutcome, JwtRequest};
use pingora_http::RequestHeader;
use std::time::SystemTime;

/// Authenticates `req` (its headers, query and cookies) against `authn` at `now`; an unknown
/// `kid` makes the cache refetch the URI once before the token is judged.
///
/// A CORS preflight (OPTIONS with `Origin` and `Access-Control-Request-Method`) is not
/// authenticated, as Envoy's `jwt_authn` lets it through (istiod sets
/// `bypass_cors_preflight`). The caller applies [`Authenticator::sanitize_edits`] to anonymous
/// requests too.
pub async fn authenticate(
    authn: &Authenticator,
    req: &RequestHeader,
    jwks: &JwksCache,
    now: SystemTime,
) -> AuthnOutcome {
    if authn.is_empty() || is_cors_preflight(req) {
        return AuthnOutcome::Anonymous;
    }
    let path_and_query = req.uri.path_and_query().map_or("/", |p| p.as_str());
    let original_uri = original_uri(req, path_and_query);
    let request = JwtRequest {
        original_uri: &original_uri,
        path_and_query,
        headers: &req.headers,
    };
    let judgement = authn.authenticate(&request, jwks, now);
    if judgement.refetch.is_empty() {
        return judgement.outcome;
    }
    let mut changed = false;
    for uri in &judgement.refetch {
        changed |= jwks.refetch(uri).await;
    }
    if !changed {
        return judgement.outcome;
    }
    authn.authenticate(&request, jwks, now).outcome
}

/// Envoy's CORS preflight test.
fn is_cors_preflight(req: &RequestHeader) -> bool {
    let present = |name: &str| req.headers.get(name).is_some_and(|v| !v.is_empty());
    req.method == http::Method::OPTIONS
        && present("origin")
        && present("access-control-request-method")
}

/// The URI Envoy puts in the `www-authenticate` realm: `x-forwarded-proto` (the client's, kept
/// as Envoy does without `use_remote_address`; else `http`, the tunnel's inner protocol), the
/// host, and the path with its query cut to Envoy's 256 bytes.
fn original_uri(req: &RequestHeader, path_and_query: &str) -> String {
    const MAX_PATH: usize = 256;
    let mut cut = path_and_query.len().min(MAX_PATH);
    while !path_and_query.is_char_boundary(cut) {
        cut -= 1;
    }
    let path = &path_and_query[..cut];
    let scheme = req
        .headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("http");
    let host = req
        .headers
        .get(http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| req.uri.authority().map(|a| a.as_str()))
        .unwrap_or_default();
    format!("{scheme}://{host}{path}")
}

#[cfg(test)]
pub(crate) mod tests;

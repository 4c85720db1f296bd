//! RequestAuthentication: the JWT rules of every RequestAuthentication attached to one target,
//! merged; token extraction (headers, params, cookies), verification against a JWKS, and the
//! local replies of Envoy's `jwt_authn` filter.
//!
//! istiod turns each `jwtRules[i]` into one Envoy provider and requires "any provider, or allow
//! missing" of the request. Envoy then runs, in order, one verifier per provider (it succeeds
//! when the provider's locations hold at least one token and every one of them verifies for
//! it) and last the "allow missing" verifier (every token at any provider's location, each
//! judged by the provider of its issuer; no token is fine, otherwise the token verified last —
//! the first one found — decides). The first verifier that succeeds wins; when none does, the
//! last one's failure is the reply. [`Authenticator::authenticate`] follows that order.
//!
//! Files: `rules` (compile and merge), `extract` (locations), `token` (parsing), `keys` (JWKS
//! and signatures), `status` (Envoy's messages and replies), `output` (`request.auth`, headers).

#[cfg(test)]
mod cache_tests;
mod extract;
mod keys;
mod output;
mod rules;
mod status;
#[cfg(test)]
mod tests;
mod token;

pub use extract::JwtRequest;
pub use keys::{Jwks, JwksError};
pub use rules::OPENID_DISCOVERY_SUFFIX;
pub use status::JwtStatus;

use crate::attrs::{HeaderEdit, LocalReply, RequestAuth};
use crate::spec::{PolicyIssue, PolicyRef};
use extract::{extract, Extracted};
use rules::{KeySource, Provider};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use token::Jwt;

/// The merged JWT rules of one target, compiled once per snapshot.
#[derive(Debug, Default)]
pub struct Authenticator {
    /// The policies merged into it, in the order they were given.
    pub sources: Vec<PolicyRef>,
    providers: Vec<Provider>,
    /// [`Authenticator::sanitize_edits`], decided once at compile rather than per request.
    sanitize: Vec<HeaderEdit>,
}

/// What authentication made of a request.
#[derive(Clone, Debug, PartialEq)]
pub enum AuthnOutcome {
    /// No token in any configured location (or no rules): the request goes on unauthenticated
    /// (Istio compiles every rule "or allow missing").
    Anonymous,
    /// A token verified: its claims, and the edits to the request sent upstream (token header
    /// removed unless `forwardOriginalToken`, `outputPayloadToHeader`, `outputClaimToHeaders`).
    Authenticated {
        /// The verified token's facts.
        auth: RequestAuth,
        /// Edits to the upstream request.
        edits: Vec<HeaderEdit>,
    },
    /// Refused: the 401/403 Envoy's `jwt_authn` would answer.
    Rejected(LocalReply),
}

/// The keys of the `jwksUri`s, as the waypoint's cache holds them.
pub trait JwksSource {
    /// The last JWKS fetched from `uri`; `None` while it has never been fetched successfully.
    fn jwks(&self, uri: &str) -> Option<Arc<Jwks>>;
}

impl JwksSource for std::collections::HashMap<String, Arc<Jwks>> {
    fn jwks(&self, uri: &str) -> Option<Arc<Jwks>> {
        self.get(uri).cloned()
    }
}

/// The outcome of [`Authenticator::authenticate`], and the `jwksUri`s worth fetching again: a
/// token named a `kid` the cached JWKS lacks (a key rotation) or the URI was never fetched.
/// The waypoint refetches them (rate-limited) and authenticates once more.
#[derive(Clone, Debug, PartialEq)]
pub struct Judgement {
    /// What to do with the request.
    pub outcome: AuthnOutcome,
    /// URIs whose JWKS had no key for a token.
    pub refetch: Vec<String>,
}

/// One verifier's result.
enum Verdict<'p> {
    Passed(Vec<Verified<'p>>),
    Missing,
    Failed(JwtStatus),
}

struct Verified<'p> {
    jwt: Jwt,
    provider: &'p Provider,
    header: Option<String>,
}

/// The per-request state of one authentication.
struct Run<'a> {
    jwks: &'a dyn JwksSource,
    now_unix: u64,
    refetch: Vec<String>,
}

impl Authenticator {
    /// Merges the `spec`s of the RequestAuthentications attached to one target (each with its
    /// `PolicyRef`), reporting issues per policy. An unusable rule stays in force fail closed:
    /// a token for its issuer is rejected.
    pub fn compile(
        policies: &[(PolicyRef, &serde_json::Value)],
    ) -> (Authenticator, Vec<(PolicyRef, PolicyIssue)>) {
        let mut authn = Authenticator::default();
        let mut issues = Vec::new();
        for (policy, spec) in policies {
            let mut found = Vec::new();
            authn
                .providers
                .extend(rules::compile_rules(spec, &mut found));
            issues.extend(found.into_iter().map(|i| (policy.clone(), i)));
            authn.sources.push(policy.clone());
        }
        authn.sanitize = output_header_removals(&authn.providers);
        (authn, issues)
    }

    /// True when no rule is configured: authentication is skipped.
    pub fn is_empty(&self) -> bool {
        self.providers.is_empty()
    }

    /// The `jwksUri`s the rules need, for the waypoint's JWKS fetcher.
    pub fn jwks_uris(&self) -> Vec<String> {
        self.jwks_fetches()
            .into_iter()
            .map(|(uri, _)| uri)
            .collect()
    }

    /// The `jwksUri`s with the rule's fetch `timeout` (Istio's default 5 s; the shortest when
    /// several rules name one URI).
    pub fn jwks_fetches(&self) -> Vec<(String, Duration)> {
        let mut out: Vec<(String, Duration)> = Vec::new();
        for p in &self.providers {
            if let KeySource::Remote(uri) = &p.keys {
                match out.iter_mut().find(|(u, _)| u == uri) {
                    Some((_, timeout)) => *timeout = (*timeout).min(p.timeout),
                    None => out.push((uri.clone(), p.timeout)),
                }
            }
        }
        out
    }

    /// Headers Envoy removes from every request it authenticates, before any token is looked
    /// at, so that a client cannot forge them: each rule's `outputPayloadToHeader` and
    /// `outputClaimToHeaders` headers. Apply them to anonymous requests too
    /// ([`AuthnOutcome::Authenticated`] already carries them).
    pub fn sanitize_edits(&self) -> Vec<HeaderEdit> {
        self.sanitize.clone()
    }

    /// Authenticates one request at `now` with keys from `jwks`, as Envoy's `jwt_authn` with
    /// istiod's configuration would.
    pub fn authenticate(
        &self,
        req: &JwtRequest<'_>,
        jwks: &dyn JwksSource,
        now: SystemTime,
    ) -> Judgement {
        let now_unix = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        let mut run = Run {
            jwks,
            now_unix,
            refetch: Vec::new(),
        };
        let outcome = self.decide(req, &mut run);
        run.refetch.sort();
        run.refetch.dedup();
        Judgement {
            outcome,
            refetch: run.refetch,
        }
    }

    fn decide(&self, req: &JwtRequest<'_>, run: &mut Run<'_>) -> AuthnOutcome {
        if self.providers.is_empty() {
            return AuthnOutcome::Anonymous;
        }
        for provider in &self.providers {
            if let Verdict::Passed(verified) = self.verify_for(provider, req, run) {
                return self.passed(verified);
            }
        }
        match self.verify_any(req, run) {
            Verdict::Passed(verified) => self.passed(verified),
            Verdict::Missing => AuthnOutcome::Anonymous,
            Verdict::Failed(status) => AuthnOutcome::Rejected(status.reply(req.original_uri)),
        }
    }

    /// One provider's verifier: every token at its locations must verify for it.
    fn verify_for<'p>(
        &'p self,
        provider: &'p Provider,
        req: &JwtRequest<'_>,
        run: &mut Run<'_>,
    ) -> Verdict<'p> {
        let tokens = extract([provider], req);
        if tokens.is_empty() {
            return Verdict::Missing;
        }
        let mut verified = Vec::new();
        for found in tokens.iter().rev() {
            match run.verify(found, Some(provider), &self.providers) {
                Ok(v) => verified.push(v),
                Err(status) => return Verdict::Failed(status),
            }
        }
        Verdict::Passed(verified)
    }

    /// The "allow missing" verifier: every token anywhere, each judged by its issuer's
    /// provider; the last judged decides.
    fn verify_any<'p>(&'p self, req: &JwtRequest<'_>, run: &mut Run<'_>) -> Verdict<'p> {
        let tokens = extract(&self.providers, req);
        let mut verified = Vec::new();
        let mut last_failure = None;
        for found in tokens.iter().rev() {
            match run.verify(found, None, &self.providers) {
                Ok(v) => {
                    verified.push(v);
                    last_failure = None;
                }
                Err(status) => last_failure = Some(status),
            }
        }
        match (tokens.is_empty(), last_failure) {
            (true, _) => Verdict::Missing,
            (false, Some(status)) => Verdict::Failed(status),
            (false, None) => Verdict::Passed(verified),
        }
    }

    fn passed(&self, verified: Vec<Verified<'_>>) -> AuthnOutcome {
        let mut edits = self.sanitize_edits();
        for v in &verified {
            edits.extend(output::verified_edits(
                &v.jwt,
                v.provider,
                v.header.as_deref(),
            ));
        }
        // Istio reads `request.auth` from the payload of the issuer that sorts first.
        match verified.iter().min_by(|a, b| a.jwt.iss.cmp(&b.jwt.iss)) {
            Some(v) => AuthnOutcome::Authenticated {
                auth: output::request_auth(&v.jwt, v.provider),
                edits,
            },
            None => AuthnOutcome::Anonymous,
        }
    }
}

impl Run<'_> {
    /// One token through Envoy's checks: format, issuer for the location, time, audiences,
    /// signature.
    fn verify<'p>(
        &mut self,
        found: &Extracted<'_>,
        provider: Option<&'p Provider>,
        providers: &'p [Provider],
    ) -> Result<Verified<'p>, JwtStatus> {
        let jwt = Jwt::parse(&found.token)?;
        if !found.allows(&jwt.iss) {
            return Err(JwtStatus::UnknownIssuer);
        }
        let provider = match provider {
            Some(p) if p.issuer.is_empty() || p.issuer == jwt.iss => p,
            Some(_) => return Err(JwtStatus::UnknownIssuer),
            None => providers
                .iter()
                .find(|p| p.issuer == jwt.iss)
                .or_else(|| providers.iter().find(|p| p.issuer.is_empty()))
                .ok_or(JwtStatus::UnknownIssuer)?,
        };
        jwt.check_time(self.now_unix)?;
        if !token::audiences_allowed(&provider.audiences, &jwt.audiences) {
            return Err(JwtStatus::AudienceNotAllowed);
        }
        match &provider.keys {
            KeySource::Inline(jwks) => jwks.verify(&jwt)?,
            KeySource::Unusable => return Err(JwtStatus::JwksNoValidKeys),
            KeySource::Remote(uri) => match self.jwks.jwks(uri) {
                Some(jwks) => {
                    if jwt.kid.is_some() && !jwks.has_key_for(&jwt) {
                        self.refetch.push(uri.clone());
                    }
                    jwks.verify(&jwt)?
                }
                None => {
                    self.refetch.push(uri.clone());
                    keys::verify_with_placeholder(&jwt)?
                }
            },
        }
        Ok(Verified {
            jwt,
            provider,
            header: found.header.clone(),
        })
    }
}

/// Every rule's `outputPayloadToHeader` and `outputClaimToHeaders` header, once each, as
/// removals.
fn output_header_removals(providers: &[Provider]) -> Vec<HeaderEdit> {
    let mut names: Vec<&str> = Vec::new();
    for p in providers {
        let claims = p.claim_headers.iter().map(|(h, _)| h.as_str());
        for name in p.payload_header.as_deref().into_iter().chain(claims) {
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    names
        .into_iter()
        .map(|n| HeaderEdit::Remove(n.to_string()))
        .collect()
}

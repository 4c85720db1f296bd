//! RequestAuthentication: the JWT rules of every RequestAuthentication attached to one target,
//! merged; token extraction (headers, params, cookies), verification against a JWKS, and the
//! local replies of Envoy's `jwt_authn` filter.
//!
//! CONTRACT (issue 12): the jwt helper replaces the placeholder bodies below; the signatures are
//! what the waypoint's pipeline, `explain` and the snapshot builder call.

use crate::attrs::{HeaderEdit, LocalReply, RequestAuth};
use crate::spec::{PolicyIssue, PolicyRef};

/// The merged JWT rules of one target, compiled once per snapshot.
#[derive(Debug, Default)]
pub struct Authenticator {
    /// The policies merged into it, in the order they were given.
    pub sources: Vec<PolicyRef>,
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

impl Authenticator {
    /// Merges the `spec`s of the RequestAuthentications attached to one target (each with its
    /// `PolicyRef`), reporting issues per policy. An unusable rule stays in force fail closed:
    /// a token for its issuer is rejected.
    pub fn compile(
        policies: &[(PolicyRef, &serde_json::Value)],
    ) -> (Authenticator, Vec<(PolicyRef, PolicyIssue)>) {
        let sources = policies.iter().map(|(r, _)| r.clone()).collect();
        (Authenticator { sources }, Vec::new())
    }

    /// True when no rule is configured: authentication is skipped.
    pub fn is_empty(&self) -> bool {
        true
    }

    /// The `jwksUri`s the rules need, for the waypoint's JWKS fetcher.
    pub fn jwks_uris(&self) -> Vec<String> {
        Vec::new()
    }
}

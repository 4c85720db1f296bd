//! The CUSTOM action: checking a request with an ext_authz server over HTTP or gRPC
//! (`envoy.service.auth.v3.Authorization/Check`).
//!
//! CONTRACT (issue 12): the ext_authz helper replaces this placeholder.

use crate::snapshot::Snapshot;
use authz::ext_authz::ExtAuthzProvider;
use authz::{HeaderEdit, LocalReply, RequestAttrs};
use pingora_http::RequestHeader;
use std::sync::Arc;

/// What the ext_authz server (or its failure policy) decided.
#[derive(Debug, Clone, PartialEq)]
pub enum CustomOutcome {
    /// Allowed: edits to the request sent upstream (`headersToUpstreamOnAllow`).
    Allow {
        /// Edits to the upstream request.
        edits: Vec<HeaderEdit>,
    },
    /// Denied: the answer to the client (the server's status, body and
    /// `headersToDownstreamOnDeny`, or `statusOnError`).
    Deny(LocalReply),
}

/// Connections to ext_authz servers, shared by all requests.
#[derive(Debug, Default)]
pub struct ExtAuthzClient {}

impl ExtAuthzClient {
    /// A client with no connections yet.
    pub fn new() -> Arc<Self> {
        Arc::new(ExtAuthzClient::default())
    }

    /// Checks `req` with `provider`, whose `service` is resolved through `snapshot`.
    pub async fn check(
        &self,
        snapshot: &Snapshot,
        provider: &ExtAuthzProvider,
        req: &RequestHeader,
        attrs: &RequestAttrs<'_>,
    ) -> CustomOutcome {
        let _ = (snapshot, provider, req, attrs);
        CustomOutcome::Deny(LocalReply {
            status: 403,
            body: String::new(),
            headers: Vec::new(),
        })
    }
}

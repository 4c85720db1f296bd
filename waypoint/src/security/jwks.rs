//! JWKS for `jwksUri`s: fetched over HTTP(S), cached, refreshed periodically and on an unknown
//! `kid`, with a clear state when a URI fails.
//!
//! CONTRACT (issue 12): the jwt helper replaces this placeholder.

use std::sync::Arc;

/// The JWKS of every `jwksUri` in force, shared by all requests.
#[derive(Debug, Default)]
pub struct JwksCache {}

impl JwksCache {
    /// An empty cache; fetching starts when a snapshot needs a URI.
    pub fn new() -> Arc<Self> {
        Arc::new(JwksCache::default())
    }
}

//! The requests a flow sends, in order: its paths with its token, and the requests its
//! security policies must refuse mixed in.

use anyhow::Context;
use http::HeaderValue;

use super::Flow;
use crate::demo::security::Denial;

/// One request of a flow's cycle.
#[derive(Debug)]
pub(super) struct CompiledRequest {
    pub(super) path: String,
    /// `Bearer <token>`, if the request carries a token.
    pub(super) authorization: Option<HeaderValue>,
    /// The answer the policies must give, for a request they must refuse.
    pub(super) denial: Option<Denial>,
}

impl CompiledRequest {
    fn new(path: &str, bearer: Option<&str>, denial: Option<Denial>) -> anyhow::Result<Self> {
        let authorization = bearer
            .map(|token| HeaderValue::from_str(&format!("Bearer {token}")))
            .transpose()
            .context("a demo token is not a valid header value")?;
        Ok(Self {
            path: path.to_owned(),
            authorization,
            denial,
        })
    }
}

/// A flow's requests in the order it sends them: its paths, then one request its policies
/// must refuse, then its paths again and the next such request, and so on; only its paths when
/// there is nothing to refuse.
pub(super) fn compile_requests(flow: &Flow) -> anyhow::Result<Vec<CompiledRequest>> {
    let root = ["/".to_owned()];
    let paths = if flow.paths.is_empty() {
        &root[..]
    } else {
        &flow.paths[..]
    };
    let bearer = flow.security.bearer.as_deref();
    let ordinary = || paths.iter().map(|p| CompiledRequest::new(p, bearer, None));
    let refusals = &flow.security.refusals;
    if refusals.is_empty() {
        return ordinary().collect();
    }
    let mut requests = Vec::new();
    for refusal in refusals {
        requests.extend(ordinary());
        requests.push(CompiledRequest::new(
            &refusal.path,
            refusal.bearer.as_deref(),
            Some(refusal.denial),
        ));
    }
    requests.into_iter().collect()
}

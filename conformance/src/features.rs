//! Which Gateway API features the waypoint claims (upstream's `SupportedFeatures`), and the
//! per-case decision whether the runner can replay a case at all.

use crate::cases::{Case, TestSpec};
use crate::manifests::Plan;
use std::collections::BTreeSet;

/// The features the waypoint implements; a test needing any other one is skipped.
pub const SUPPORTED_FEATURES: &[&str] = &[
    "Gateway",
    "HTTPRoute",
    "ReferenceGrant",
    "Mesh",
    "GatewayPort8080",
    "GatewayHTTPListenerIsolation",
    "ListenerSet",
    "HTTPRouteQueryParamMatching",
    "HTTPRouteMethodMatching",
    "HTTPRouteResponseHeaderModification",
    "HTTPRouteBackendRequestHeaderModification",
    "HTTPRoutePortRedirect",
    "HTTPRouteSchemeRedirect",
    "HTTPRoutePathRedirect",
    "HTTPRouteHostRewrite",
    "HTTPRoutePathRewrite",
    "HTTPRoute303RedirectStatusCode",
    "HTTPRoute307RedirectStatusCode",
    "HTTPRoute308RedirectStatusCode",
    "HTTPRouteRequestMirror",
    "HTTPRouteRequestMultipleMirrors",
    "HTTPRouteRequestPercentageMirror",
    "HTTPRouteRequestTimeout",
    "HTTPRouteBackendTimeout",
    "HTTPRouteRetry",
    "HTTPRouteCORS",
    "HTTPRouteNamedRouteRule",
    "HTTPRouteParentRefPort",
    "HTTPRouteDestinationPortMatching",
    "HTTPRouteBackendProtocolH2C",
    "HTTPRouteBackendProtocolWebSocket",
    "HTTPRouteHostnameIntersection",
    "HTTPRouteListenerHostnameMatching",
    "MeshClusterIPMatching",
    "MeshConsumerRoute",
    "MeshHTTPRouteNamedRouteRule",
    "MeshHTTPRouteQueryParamMatching",
    "MeshHTTPRouteMethodMatching",
    "MeshHTTPRouteRedirectPath",
    "MeshHTTPRouteRedirectPort",
    "MeshHTTPRouteSchemeRedirect",
    "MeshHTTPRouteRewritePath",
    "MeshHTTPRouteBackendRequestHeaderModification",
];

/// The feature set a run uses: the built-in list, a `--supported-features` override, or
/// everything (`--all-features`).
#[derive(Debug, Clone)]
pub enum FeatureSet {
    Listed(BTreeSet<String>),
    All,
}

impl Default for FeatureSet {
    fn default() -> Self {
        FeatureSet::Listed(SUPPORTED_FEATURES.iter().map(|s| (*s).to_owned()).collect())
    }
}

impl FeatureSet {
    pub fn supports(&self, feature: &str) -> bool {
        match self {
            FeatureSet::All => true,
            FeatureSet::Listed(set) => set.contains(feature),
        }
    }

    /// The reason a test is skipped for its features, if it is.
    pub fn unsupported(&self, test: &TestSpec) -> Option<String> {
        let missing: Vec<&str> = test
            .features
            .iter()
            .filter(|f| !self.supports(f))
            .map(String::as_str)
            .collect();
        (!missing.is_empty()).then(|| format!("unsupported feature(s): {}", missing.join(", ")))
    }

    /// Whether the case file declares the test runnable here: its features are supported and
    /// at least one of its units needs neither data the file marks as runtime-dependent nor
    /// an API server to mutate objects (section 6's `observedGenerationBump`, and a
    /// `statusSequence` with changes). Such a test ending with nothing run is a runner fault.
    pub fn declared_runnable(&self, test: &TestSpec) -> bool {
        if self.unsupported(test).is_some() {
            return false;
        }
        let needs_api_server = |check: &serde_yaml_ng::Value| match check
            .get("check")
            .and_then(serde_yaml_ng::Value::as_str)
        {
            Some("observedGenerationBump") => true,
            Some("statusSequence") => check
                .get("steps")
                .and_then(serde_yaml_ng::Value::as_sequence)
                .is_some_and(|steps| steps.iter().any(|s| s.get("change").is_some())),
            _ => false,
        };
        test.status_checks.iter().any(|c| !needs_api_server(c))
            || test.cases.iter().any(|c| c.runtime_dependent.is_none())
            || test.websocket.is_some()
            || test.weighted_distribution.is_some()
            || test.mirror_distribution.is_some()
            || test.header_matches_backend.is_some()
    }
}

/// A case with every placeholder the runner can fill filled, except `{uuid}`, which is fresh
/// per attempt. `Err` is the reason to skip the case.
pub fn prepare(case: &Case, plan: &Plan) -> Result<Case, String> {
    let runtime = || {
        case.runtime_dependent
            .clone()
            .unwrap_or_else(|| "needs generated TLS material".into())
    };
    if case.tls.is_some()
        || case.request.protocol.as_deref() == Some("H2")
        || case.request.sni.is_some()
        || case.request.client_cert.is_some()
        || case
            .expected_request
            .as_ref()
            .is_some_and(|e| e.sni.is_some() || e.client_cert.is_some())
    {
        return Err(format!("TLS case: {}", runtime()));
    }
    let mut case = case.clone();
    let mut filled_any = false;
    let mut fill = |text: &mut String| -> Result<(), String> {
        let (out, filled) = fill_pod_ips(text, plan)?;
        filled_any |= filled;
        *text = out;
        Ok(())
    };
    let r = &mut case.request;
    for t in [&mut r.host, &mut r.path].into_iter().flatten() {
        fill(t)?;
    }
    for v in r.headers.values_mut() {
        fill(v)?;
    }
    if let Some(e) = &mut case.expected_request {
        for t in [&mut e.host, &mut e.path].into_iter().flatten() {
            fill(t)?;
        }
        for v in e.headers.values_mut() {
            fill(v)?;
        }
    }
    let has_uuid = case
        .request
        .path
        .as_deref()
        .is_some_and(|p| p.contains("{uuid}"));
    if case.runtime_dependent.is_some() && !filled_any && !has_uuid {
        // The data it depends on is not a placeholder the runner fills (e.g. endpoints
        // upstream patches into objects at run time).
        return Err(runtime());
    }
    Ok(case)
}

/// Replaces `{podIP:<ns>/<selector>}` with the pod's IP. Returns whether anything was filled;
/// an unknown placeholder kind (`{secretCert:...}`) or pod is an error.
pub fn fill_pod_ips(text: &str, plan: &Plan) -> Result<(String, bool), String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut filled = false;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let after = &rest[start..];
        let Some(end) = after.find('}') else {
            out.push_str(after);
            return Ok((out, filled));
        };
        let token = &after[1..end];
        if let Some(spec) = token.strip_prefix("podIP:") {
            let (ns, selector) = spec.split_once('/').unwrap_or(("default", spec));
            let ip = plan
                .pod_ip(ns, selector)
                .ok_or_else(|| format!("no echo pod matches {{{token}}}"))?;
            out.push_str(&ip.to_string());
            filled = true;
        } else if token.starts_with("secretCert:") {
            return Err(format!("needs generated certificate {{{token}}}"));
        } else {
            // {uuid} and anything that is not a placeholder stay as written.
            out.push_str(&after[..=end]);
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok((out, filled))
}

/// A random UUID (version 4 layout) for `{uuid}` and mirror request ids.
pub fn uuid() -> String {
    let b: [u8; 16] = rand::random();
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
        u16::from_be_bytes([b[4], b[5]]),
        u16::from_be_bytes([b[6], b[7]]) & 0x0fff,
        (u16::from_be_bytes([b[8], b[9]]) & 0x3fff) | 0x8000,
        u64::from_be_bytes([0, 0, b[10], b[11], b[12], b[13], b[14], b[15]]),
    )
}

#[cfg(test)]
mod tests;

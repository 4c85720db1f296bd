//! The security policies in force, compiled at build (`build/security.rs`) and read by the
//! pipeline's STEP authorize, the TCP path and `waypoint explain`.

use super::{Report, ResourceStatus, State, StatusIssue};
use crate::config::MeshConfig;
use authz::ext_authz::ExtAuthzProvider;
use authz::jwt::Authenticator;
use authz::peer::PeerAuthentication;
use authz::policy::{PolicyAction, PolicySet};
use authz::{PolicyRef, TrustDomains};
use routing::ServiceKey;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// What applies to traffic for one destination: the waypoint's own policies (targetRef the
/// Gateway, or the `istio-waypoint` GatewayClass from the root namespace) together with the
/// destination service's (targetRef the Service or ServiceEntry).
#[derive(Debug, Default)]
pub struct SecurityPolicies {
    /// RequestAuthentication: the merged JWT rules.
    pub authn: Arc<Authenticator>,
    /// AuthorizationPolicy: CUSTOM, DENY, ALLOW, AUDIT.
    pub authz: Arc<PolicySet>,
}

/// Every security decision's configuration in one snapshot.
#[derive(Debug, Default)]
pub struct Security {
    /// The MeshConfig from the `istio-system/istio` ConfigMap (the default when absent).
    pub mesh: Arc<MeshConfig>,
    /// The trust domain and aliases principals are matched with.
    pub trust: TrustDomains,
    /// The CUSTOM action's providers by name.
    pub ext_authz: HashMap<String, Arc<ExtAuthzProvider>>,
    /// The policies for traffic to each served service.
    pub by_service: HashMap<ServiceKey, Arc<SecurityPolicies>>,
    /// The policies for traffic with no service (a pod addressed directly, the Gateway role).
    pub waypoint: Arc<SecurityPolicies>,
    /// PeerAuthentications for the plain listener, most specific first.
    pub peer: Vec<Arc<PeerAuthentication>>,
}

impl Security {
    /// The policies for a request addressed to `destination`.
    pub fn policies_for(&self, destination: Option<&ServiceKey>) -> &Arc<SecurityPolicies> {
        destination
            .and_then(|d| self.by_service.get(d))
            .unwrap_or(&self.waypoint)
    }
}

/// What `waypoint check` and `/config_dump` show of a snapshot's security: the trust domains,
/// the ext_authz providers, and per target the policies in force with their state and issues.
#[derive(Debug, Serialize)]
pub struct SecuritySummary {
    /// The trust domain principals are matched in.
    pub trust_domain: String,
    /// `trustDomainAliases`.
    pub trust_domain_aliases: Vec<String>,
    /// MeshConfig `rootNamespace`.
    pub root_namespace: String,
    /// The ext_authz providers, one line each (`name: protocol service:port`).
    pub ext_authz_providers: Vec<String>,
    /// The waypoint's own policies (Gateway and GatewayClass targets): every request.
    pub waypoint: Vec<PolicySummary>,
    /// Per served service (`namespace/name`), every policy in force for requests to it (the
    /// waypoint's included).
    pub services: BTreeMap<String, Vec<PolicySummary>>,
    /// PeerAuthentications for the plain listener, most specific first.
    pub peer_authentications: Vec<PolicySummary>,
}

/// One policy in force somewhere.
#[derive(Debug, Serialize)]
pub struct PolicySummary {
    /// `Kind namespace/name`.
    pub policy: String,
    /// What it does: an AuthorizationPolicy's action (and `dry-run`), a PeerAuthentication's
    /// mode; empty for a RequestAuthentication.
    pub effect: String,
    /// Its state in the report (`FailClosed` when it has errors).
    pub state: Option<State>,
    /// Its errors and warnings, each naming a field.
    pub issues: Vec<StatusIssue>,
}

impl Security {
    /// The summary of what is in force, with each policy's state and issues from `report`.
    pub fn summary(&self, report: &Report) -> SecuritySummary {
        let statuses: HashMap<(&str, &str, &str), &ResourceStatus> = report
            .statuses
            .iter()
            .map(|s| {
                let o = &s.object;
                ((o.kind.as_str(), o.namespace.as_str(), o.name.as_str()), s)
            })
            .collect();
        let describe = |source: &PolicyRef, effect: String| {
            let key = (
                source.kind.as_str(),
                source.namespace.as_str(),
                source.name.as_str(),
            );
            let status = statuses.get(&key);
            PolicySummary {
                policy: source.to_string(),
                effect,
                state: status.map(|s| s.state.clone()),
                issues: status.map(|s| s.issues.clone()).unwrap_or_default(),
            }
        };
        let policies = |p: &SecurityPolicies| {
            let authn = p.authn.sources.iter().map(|s| describe(s, String::new()));
            let authz = p.authz.policies.iter().map(|ap| {
                let dry_run = if ap.dry_run { " (dry-run)" } else { "" };
                describe(&ap.source, format!("{}{dry_run}", action_name(&ap.action)))
            });
            authn.chain(authz).collect::<Vec<_>>()
        };
        let mut providers: Vec<String> = (self.ext_authz.values())
            .map(|p| format!("{}: {:?} {}:{}", p.name, p.protocol, p.service, p.port))
            .collect();
        providers.sort();
        SecuritySummary {
            trust_domain: self.trust.domain.clone(),
            trust_domain_aliases: self.trust.aliases.clone(),
            root_namespace: self.mesh.root_namespace.clone(),
            ext_authz_providers: providers,
            waypoint: policies(&self.waypoint),
            services: (self.by_service.iter())
                .map(|(k, p)| (k.to_string(), policies(p)))
                .collect(),
            peer_authentications: (self.peer.iter())
                .map(|pa| describe(&pa.source, format!("{:?}", pa.mode).to_uppercase()))
                .collect(),
        }
    }

    /// Every `jwksUri` the attached RequestAuthentications need, once each: what the JWKS
    /// cache fetches and refreshes for this snapshot.
    pub fn jwks_uris(&self) -> Vec<String> {
        let mut uris: Vec<String> = std::iter::once(&self.waypoint)
            .chain(self.by_service.values())
            .flat_map(|p| p.authn.jwks_uris())
            .collect();
        uris.sort();
        uris.dedup();
        uris
    }

    /// Whether a peer of `trust_domain` is one of this mesh's at the HBONE handshake: the
    /// trust domain or one of its aliases, as the SAN prefixes istiod gives Envoy's inbound
    /// validation (`spiffe://<td>/` for each).
    pub fn accepts_trust_domain(&self, trust_domain: &str) -> bool {
        self.trust.domain == trust_domain || self.trust.aliases.iter().any(|a| a == trust_domain)
    }
}

/// Istio's name for an action, as written in the spec.
fn action_name(action: &PolicyAction) -> String {
    match action {
        PolicyAction::Allow => "ALLOW".into(),
        PolicyAction::Deny => "DENY".into(),
        PolicyAction::Audit => "AUDIT".into(),
        PolicyAction::Custom { provider } => format!("CUSTOM ({provider})"),
    }
}

//! The security policies in force, compiled at build (`build/security.rs`) and read by the
//! pipeline's STEP authorize, the TCP path and `waypoint explain`.

use crate::config::MeshConfig;
use authz::ext_authz::ExtAuthzProvider;
use authz::jwt::Authenticator;
use authz::peer::PeerAuthentication;
use authz::policy::PolicySet;
use authz::TrustDomains;
use routing::ServiceKey;
use std::collections::HashMap;
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

//! Who is calling, and may they: the decisions of Istio's `security.istio.io/v1` resources at a
//! waypoint. Pure: no sockets, no clocks (the time is passed in), no tasks.
//!
//! - [`Identity`]: workload identities (SPIFFE IDs), the source principal of HBONE traffic.
//! - [`attrs`]: the facts of one request or connection that policies match on, filled in by
//!   the waypoint.
//! - [`spec`]: what every security policy shares (its name, `targetRefs`, issues).
//! - [`jwt`]: RequestAuthentication — JWT extraction, verification and the local replies of
//!   Envoy's `jwt_authn`.
//! - [`policy`]: AuthorizationPolicy — CUSTOM, DENY, ALLOW, AUDIT, failing closed; path
//!   normalization.
//! - [`ext_authz`]: the CUSTOM action's providers (MeshConfig `extensionProviders`) and what
//!   their answers mean.
//! - [`peer`]: PeerAuthentication (mTLS mode of the plain listener).
#![forbid(unsafe_code)]

pub mod attrs;
pub mod ext_authz;
mod identity;
pub mod jwt;
pub mod peer;
pub mod policy;
pub mod spec;

pub use attrs::{
    ConnectionAttrs, HeaderEdit, HttpAttrs, LocalReply, RequestAttrs, RequestAuth, TrustDomains,
};
pub use identity::{Identity, IdentityError};
pub use spec::{PolicyIssue, PolicyRef, TargetRef};

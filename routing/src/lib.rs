//! Gateway API HTTPRoute compilation and matching for the waypoint: routes in, validated
//! [`RouteTable`]s and per-request decisions out, with no I/O.
//!
//! Flow: [`parent_services`] says which Services a route attaches to, [`compile_http_route`]
//! turns it into a [`CompiledRoute`] (reporting [`Issue`]s instead of failing), and a
//! [`RouteTable`] per parent orders every rule by Gateway API precedence so that
//! [`RouteTable::find`] is a walk that stops at the first match.

#![forbid(unsafe_code)]

pub mod authority;
mod backend;
mod compile;
mod cors;
mod filter;
pub mod gateway;
mod grpc;
mod header_modifier;
pub mod hostname;
mod issue;
pub mod istio;
mod mirror;
mod parent;
mod path_modifier;
mod redirect;
mod request_match;
mod table;
mod tcp;

#[cfg(test)]
mod fixtures;

pub use authority::{Authority, AuthorityError};
pub use backend::{BackendLookup, BackendTarget, WeightedBackend};
pub use compile::{compile_http_route, CompiledRoute, DirectResponse, RouteId, RouteSource, Rule};
pub use cors::Cors;
pub use grpc::grpc_to_http;
pub use header_modifier::HeaderModifier;
pub use issue::{Issue, IssueReason, Severity};
pub use mirror::Mirror;
pub use parent::{
    gateway_parents, parent_services, tcp_parent_services, ParentGateway, ParentService, ServiceKey,
};
pub use path_modifier::{PathModifier, PathRegex};
pub use redirect::{Redirect, RedirectInput, RedirectPort, UrlRewrite, DEFAULT_REDIRECT_STATUS};
pub use request_match::{
    ExtraConditions, HeaderMatch, HeaderValueMatch, PathMatch, QueryParamMatch, QueryValueMatch,
    RequestContext, RequestMatch, RequestView, TextMatch,
};
pub use table::{RouteMatch, RouteTable};
pub use tcp::{compile_tcp_route, CompiledTcpRoute};

//! The closed sets of names Gateway API status uses: route and parent kinds and condition
//! types, as
//! enums matched exhaustively and written out by their `as_str` (status YAML, `waypoint check`)
//! byte for byte as before.

use serde::{Serialize, Serializer};
use std::fmt;

/// A Gateway API route kind (group gateway.networking.k8s.io).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RouteKind {
    /// HTTPRoute.
    Http,
    /// GRPCRoute.
    Grpc,
    /// TCPRoute.
    Tcp,
    /// TLSRoute.
    Tls,
    /// UDPRoute.
    Udp,
}

impl RouteKind {
    /// The kind as Gateway API writes it ("HTTPRoute").
    pub fn as_str(self) -> &'static str {
        match self {
            RouteKind::Http => "HTTPRoute",
            RouteKind::Grpc => "GRPCRoute",
            RouteKind::Tcp => "TCPRoute",
            RouteKind::Tls => "TLSRoute",
            RouteKind::Udp => "UDPRoute",
        }
    }

    /// The kind a user wrote (in `allowedRoutes.kinds`, say); `None` for any other name.
    pub fn parse(kind: &str) -> Option<RouteKind> {
        [
            RouteKind::Http,
            RouteKind::Grpc,
            RouteKind::Tcp,
            RouteKind::Tls,
            RouteKind::Udp,
        ]
        .into_iter()
        .find(|k| k.as_str() == kind)
    }
}

/// A Gateway API status condition type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConditionType {
    /// The object is valid and taken on (a route: attached).
    Accepted,
    /// Every reference (backends, certificates, route kinds) could be resolved.
    ResolvedRefs,
    /// The configuration is served.
    Programmed,
    /// A listener clashes with another on its port.
    Conflicted,
}

impl ConditionType {
    /// The type as Gateway API writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            ConditionType::Accepted => "Accepted",
            ConditionType::ResolvedRefs => "ResolvedRefs",
            ConditionType::Programmed => "Programmed",
            ConditionType::Conflicted => "Conflicted",
        }
    }
}

/// The kind of a Gateway-role parentRef.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ParentKind {
    /// A Gateway (the default kind of a parentRef).
    Gateway,
    /// A ListenerSet, extending a Gateway with more listeners.
    ListenerSet,
}

impl ParentKind {
    /// The kind as Gateway API writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            ParentKind::Gateway => "Gateway",
            ParentKind::ListenerSet => "ListenerSet",
        }
    }

    /// The kind a parentRef names; `None` for kinds that are not Gateway-role parents.
    pub fn parse(kind: &str) -> Option<ParentKind> {
        [ParentKind::Gateway, ParentKind::ListenerSet]
            .into_iter()
            .find(|k| k.as_str() == kind)
    }
}

macro_rules! written_as_str {
    ($t:ty) => {
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
    };
}

written_as_str!(RouteKind);
written_as_str!(ConditionType);
written_as_str!(ParentKind);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_kinds_round_trip() {
        for kind in ["HTTPRoute", "GRPCRoute", "TCPRoute", "TLSRoute", "UDPRoute"] {
            assert_eq!(RouteKind::parse(kind).map(RouteKind::as_str), Some(kind));
        }
        assert_eq!(RouteKind::parse("httproute"), None);
        assert_eq!(
            serde_json::to_string(&ConditionType::ResolvedRefs).expect("json"),
            "\"ResolvedRefs\""
        );
    }
}

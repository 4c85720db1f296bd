//! Envoy's response flags: why a request ended the way it did, in the short names Istio's
//! access logs (`%RESPONSE_FLAGS%`) and standard metrics (`response_flags` label) report.
//!
//! One enum for every place that states a reason (local replies, the reason header, the access
//! log, later the metrics), so a flag can never be spelled two ways.

use std::fmt;

/// The header a local reply carries its [`ResponseFlag`] in, so a client (or a test) can tell a
/// waypoint's own answer from the backend's.
pub const REASON_HEADER: &str = "x-waypoint-reason";

/// A response flag, named as Envoy names it. Only the flags the waypoint can set are listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResponseFlag {
    /// `NR`: no route (or no service, or no listener) for the request.
    NoRouteFound,
    /// `NC`: the chosen backend names no known cluster (service port).
    NoClusterFound,
    /// `UH`: the backend has no healthy endpoint.
    NoHealthyUpstream,
    /// `UF`: connecting to the endpoint failed.
    UpstreamConnectionFailure,
    /// `UC`: the upstream connection ended before a response.
    UpstreamConnectionTermination,
    /// `UR`: the upstream reset the stream.
    UpstreamRemoteReset,
    /// `UT`: the upstream did not answer within the route's timeout.
    UpstreamRequestTimeout,
    /// `URX`: the route's retries (or connect attempts) ran out.
    UpstreamRetryLimitExceeded,
    /// `UO`: a circuit breaker limit refused the request.
    UpstreamOverflow,
    /// `UPE`: the upstream spoke malformed HTTP.
    UpstreamProtocolError,
    /// `DC`: the client went away before the exchange completed.
    DownstreamConnectionTermination,
    /// `DPE`: the client spoke malformed HTTP.
    DownstreamProtocolError,
    /// `DI`: fault injection delayed the request.
    DelayInjected,
    /// `FI`: fault injection aborted the request.
    FaultInjected,
    /// `UAEX`: an external authorizer denied the request.
    UnauthorizedExternalService,
    /// `RL`: a rate limit refused the request.
    RateLimited,
    /// `SI`: the stream sat idle past its idle timeout.
    StreamIdleTimeout,
    /// `DT`: the request exceeded its maximum duration.
    DurationTimeout,
    /// `OM`: the proxy shed the request because it is overloaded.
    OverloadManager,
}

impl ResponseFlag {
    /// Every flag, for tables and round-trip tests.
    pub const ALL: [ResponseFlag; 19] = [
        ResponseFlag::NoRouteFound,
        ResponseFlag::NoClusterFound,
        ResponseFlag::NoHealthyUpstream,
        ResponseFlag::UpstreamConnectionFailure,
        ResponseFlag::UpstreamConnectionTermination,
        ResponseFlag::UpstreamRemoteReset,
        ResponseFlag::UpstreamRequestTimeout,
        ResponseFlag::UpstreamRetryLimitExceeded,
        ResponseFlag::UpstreamOverflow,
        ResponseFlag::UpstreamProtocolError,
        ResponseFlag::DownstreamConnectionTermination,
        ResponseFlag::DownstreamProtocolError,
        ResponseFlag::DelayInjected,
        ResponseFlag::FaultInjected,
        ResponseFlag::UnauthorizedExternalService,
        ResponseFlag::RateLimited,
        ResponseFlag::StreamIdleTimeout,
        ResponseFlag::DurationTimeout,
        ResponseFlag::OverloadManager,
    ];

    /// The short name Envoy prints (`UH`, `UF`, …).
    pub const fn as_str(self) -> &'static str {
        match self {
            ResponseFlag::NoRouteFound => "NR",
            ResponseFlag::NoClusterFound => "NC",
            ResponseFlag::NoHealthyUpstream => "UH",
            ResponseFlag::UpstreamConnectionFailure => "UF",
            ResponseFlag::UpstreamConnectionTermination => "UC",
            ResponseFlag::UpstreamRemoteReset => "UR",
            ResponseFlag::UpstreamRequestTimeout => "UT",
            ResponseFlag::UpstreamRetryLimitExceeded => "URX",
            ResponseFlag::UpstreamOverflow => "UO",
            ResponseFlag::UpstreamProtocolError => "UPE",
            ResponseFlag::DownstreamConnectionTermination => "DC",
            ResponseFlag::DownstreamProtocolError => "DPE",
            ResponseFlag::DelayInjected => "DI",
            ResponseFlag::FaultInjected => "FI",
            ResponseFlag::UnauthorizedExternalService => "UAEX",
            ResponseFlag::RateLimited => "RL",
            ResponseFlag::StreamIdleTimeout => "SI",
            ResponseFlag::DurationTimeout => "DT",
            ResponseFlag::OverloadManager => "OM",
        }
    }

    /// The flag with Envoy's short name `name`, if the waypoint knows it.
    pub fn from_short_name(name: &str) -> Option<ResponseFlag> {
        ResponseFlag::ALL.into_iter().find(|f| f.as_str() == name)
    }
}

impl fmt::Display for ResponseFlag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_are_envoys_and_round_trip() {
        assert_eq!(ResponseFlag::NoHealthyUpstream.as_str(), "UH");
        assert_eq!(ResponseFlag::UpstreamRetryLimitExceeded.to_string(), "URX");
        for flag in ResponseFlag::ALL {
            assert_eq!(ResponseFlag::from_short_name(flag.as_str()), Some(flag));
        }
        assert_eq!(ResponseFlag::from_short_name("XX"), None);
    }

    #[test]
    fn short_names_are_distinct() {
        let mut names: Vec<_> = ResponseFlag::ALL.iter().map(|f| f.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ResponseFlag::ALL.len());
    }
}

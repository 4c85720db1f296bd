//! Envoy's retry conditions (`retry_on`), as a VirtualService's `retries.retryOn` names them,
//! and what an attempt's outcome looks like to them.

use std::fmt;

/// One retry condition, named as Envoy (and so Istio's `retryOn`) names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RetryOn {
    /// `5xx`: any 5xx response, and any attempt that got no response (connect failure, reset,
    /// per-try timeout).
    FiveXx,
    /// `gateway-error`: 502, 503 or 504, and any attempt that got no response.
    GatewayError,
    /// `reset`: an attempt that got no response (disconnect, reset, connect failure, per-try
    /// timeout).
    Reset,
    /// `reset-before-request`: a reset before the request reached the endpoint.
    ResetBeforeRequest,
    /// `connect-failure`: the connection to the endpoint could not be made.
    ConnectFailure,
    /// `refused-stream`: the endpoint refused the HTTP/2 stream (REFUSED_STREAM).
    RefusedStream,
    /// `retriable-4xx`: a 409 response.
    Retriable4xx,
    /// `retriable-status-codes`: a response status in the policy's codes.
    RetriableStatusCodes,
    /// `retriable-headers`: a response header in the policy's list; Istio has no field to
    /// list headers, so with Istio's API it never matches.
    RetriableHeaders,
    /// `envoy-ratelimited`: a response carrying `x-envoy-ratelimited`.
    EnvoyRateLimited,
    /// `cancelled`: `grpc-status: 1` in the response headers.
    Cancelled,
    /// `deadline-exceeded`: `grpc-status: 4`.
    DeadlineExceeded,
    /// `resource-exhausted`: `grpc-status: 8`.
    ResourceExhausted,
    /// `internal`: `grpc-status: 13`.
    Internal,
    /// `unavailable`: `grpc-status: 14`.
    Unavailable,
}

impl RetryOn {
    /// Every condition, in Envoy's documentation order.
    pub const ALL: [RetryOn; 15] = [
        RetryOn::FiveXx,
        RetryOn::GatewayError,
        RetryOn::Reset,
        RetryOn::ResetBeforeRequest,
        RetryOn::ConnectFailure,
        RetryOn::RefusedStream,
        RetryOn::Retriable4xx,
        RetryOn::RetriableStatusCodes,
        RetryOn::RetriableHeaders,
        RetryOn::EnvoyRateLimited,
        RetryOn::Cancelled,
        RetryOn::DeadlineExceeded,
        RetryOn::ResourceExhausted,
        RetryOn::Internal,
        RetryOn::Unavailable,
    ];

    /// The name in `retryOn`.
    pub const fn as_str(self) -> &'static str {
        match self {
            RetryOn::FiveXx => "5xx",
            RetryOn::GatewayError => "gateway-error",
            RetryOn::Reset => "reset",
            RetryOn::ResetBeforeRequest => "reset-before-request",
            RetryOn::ConnectFailure => "connect-failure",
            RetryOn::RefusedStream => "refused-stream",
            RetryOn::Retriable4xx => "retriable-4xx",
            RetryOn::RetriableStatusCodes => "retriable-status-codes",
            RetryOn::RetriableHeaders => "retriable-headers",
            RetryOn::EnvoyRateLimited => "envoy-ratelimited",
            RetryOn::Cancelled => "cancelled",
            RetryOn::DeadlineExceeded => "deadline-exceeded",
            RetryOn::ResourceExhausted => "resource-exhausted",
            RetryOn::Internal => "internal",
            RetryOn::Unavailable => "unavailable",
        }
    }

    /// The condition named `name` in `retryOn`.
    pub fn from_name(name: &str) -> Option<RetryOn> {
        RetryOn::ALL.into_iter().find(|c| c.as_str() == name)
    }

    const fn bit(self) -> u16 {
        1 << self as u16
    }
}

impl fmt::Display for RetryOn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of retry conditions: a bit per condition, so checking one on the request path is a
/// mask test.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct RetryOnSet(u16);

impl RetryOnSet {
    /// The set holding `conditions`.
    pub fn of(conditions: &[RetryOn]) -> Self {
        let mut set = RetryOnSet::default();
        for c in conditions {
            set.insert(*c);
        }
        set
    }

    /// Adds `condition`.
    pub fn insert(&mut self, condition: RetryOn) {
        self.0 |= condition.bit();
    }

    /// Whether `condition` is in the set.
    pub fn contains(self, condition: RetryOn) -> bool {
        self.0 & condition.bit() != 0
    }

    /// Whether any of `conditions` is in the set.
    pub fn any(self, conditions: &[RetryOn]) -> bool {
        conditions.iter().any(|c| self.contains(*c))
    }

    /// Whether no condition is set.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl fmt::Display for RetryOnSet {
    /// The conditions as `retryOn` writes them, comma-separated.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for c in RetryOn::ALL.into_iter().filter(|c| self.contains(*c)) {
            if !first {
                f.write_str(",")?;
            }
            first = false;
            f.write_str(c.as_str())?;
        }
        Ok(())
    }
}

/// How an attempt failed without a response header the client could get.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttemptFailure {
    /// No connection to the endpoint (refused, unreachable, connect timeout).
    ConnectFailure,
    /// The endpoint refused the HTTP/2 stream.
    RefusedStream,
    /// The connection or stream ended before the response header.
    Reset,
    /// The attempt's own timeout (`perTryTimeout`, `backendRequest`) fired before the response
    /// header.
    PerTryTimeout,
}

impl AttemptFailure {
    /// The conditions under which Envoy retries this failure: an attempt without a response
    /// counts as a 5xx (and a gateway error) since it ends in one.
    pub fn retried_under(self) -> &'static [RetryOn] {
        use RetryOn::*;
        match self {
            AttemptFailure::ConnectFailure => &[
                FiveXx,
                GatewayError,
                Reset,
                ResetBeforeRequest,
                ConnectFailure,
            ],
            AttemptFailure::RefusedStream => &[
                FiveXx,
                GatewayError,
                Reset,
                ResetBeforeRequest,
                RefusedStream,
            ],
            AttemptFailure::Reset | AttemptFailure::PerTryTimeout => &[FiveXx, GatewayError, Reset],
        }
    }
}

/// What the retry conditions look at in an attempt's response header.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ResponseView {
    /// The HTTP status.
    pub status: u16,
    /// The `grpc-status` header, when the response carries one (a gRPC Trailers-Only answer).
    pub grpc_status: Option<u32>,
    /// The response carries `x-envoy-ratelimited`.
    pub rate_limited: bool,
}

/// The gRPC status codes the gRPC retry conditions name.
const GRPC_CONDITIONS: [(RetryOn, u32); 5] = [
    (RetryOn::Cancelled, 1),
    (RetryOn::DeadlineExceeded, 4),
    (RetryOn::ResourceExhausted, 8),
    (RetryOn::Internal, 13),
    (RetryOn::Unavailable, 14),
];

impl ResponseView {
    /// Whether a policy with `retry_on` and retriable `codes` retries this response.
    pub fn is_retried(&self, retry_on: RetryOnSet, codes: &[u16]) -> bool {
        let status = self.status;
        (retry_on.contains(RetryOn::FiveXx) && (500..600).contains(&status))
            || (retry_on.contains(RetryOn::GatewayError) && matches!(status, 502..=504))
            || (retry_on.contains(RetryOn::Retriable4xx) && status == 409)
            || (retry_on.contains(RetryOn::RetriableStatusCodes) && codes.contains(&status))
            || (retry_on.contains(RetryOn::EnvoyRateLimited) && self.rate_limited)
            || self.grpc_status.is_some_and(|g| {
                GRPC_CONDITIONS
                    .iter()
                    .any(|(c, code)| *code == g && retry_on.contains(*c))
            })
    }
}

//! STEP fault: the matched rule's fault injection, decided once per request before any
//! upstream work (`resilience::FaultPolicy::decide`), then applied: a delay waits, an abort
//! becomes the request's refusal so it never reaches a backend.

use super::context::Record;
use super::decide::{Action, Routed};
use super::reply::Refusal;
use pingora_http::RequestHeader;
use resilience::AbortAnswer;
use telemetry::ResponseFlag;

/// Applies the rule's faults to a request about to be forwarded: as Envoy's fault filter, the
/// delay first (DI), then the abort (FI), which replaces the forward with a local answer.
pub async fn inject(req: &RequestHeader, routed: &mut Routed, record: &mut Record) {
    if !matches!(routed.action, Action::Forward(_)) {
        return;
    }
    let Some(fault) = &routed.filters.policy.fault else {
        return;
    };
    let decision = fault.decide(rand::random::<u64>);
    if let Some(delay) = decision.delay {
        record.also.push(ResponseFlag::DelayInjected);
        tokio::time::sleep(delay).await;
    }
    if let Some(answer) = decision.abort {
        routed.action = Action::Refuse(abort_refusal(answer, is_grpc(req)));
    }
}

/// Envoy's answer to an aborted request: the status with `fault filter abort`; a gRPC status
/// abort is a 200 whose `grpc-status` carries the code for a gRPC client, and a plain 200 for
/// any other.
pub fn abort_refusal(answer: AbortAnswer, grpc_request: bool) -> Refusal {
    match answer {
        AbortAnswer::Http(status) => Refusal::fault_abort(status, None),
        AbortAnswer::Grpc(code) => Refusal::fault_abort(200, grpc_request.then_some(code)),
    }
}

/// A gRPC request, by its content type (`application/grpc`, `application/grpc+proto`, ...).
pub fn is_grpc(req: &RequestHeader) -> bool {
    req.headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"))
}

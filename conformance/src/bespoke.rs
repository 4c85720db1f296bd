//! The bespoke checks of section 7: weighted distribution, percentage mirroring and
//! per-backend header filters (many requests each, judged by the `rule` text of their block),
//! and WebSocket echo exchanges through a Gateway listener.

use crate::cases::{
    Case, Driver, HeaderMatchesBackend, MirrorDistribution, WebSocketCheck, WebSocketFrame,
    WeightedDistribution,
};
use crate::client::REQUEST_TIMEOUT;
use crate::eventually::{Attempt, Streak};
use crate::features::uuid;
use crate::judge::{default_host, judge_gateway, judge_mesh};
use crate::run::{exchange, mirrored_count, with_request_id, Ctx, Outcome};
use futures_util::{SinkExt, StreamExt};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

/// Sends `n` copies of requests made by `make(i)`, `concurrency` at a time; returns each
/// result in order.
async fn burst<F>(
    ctx: &Arc<Ctx>,
    n: usize,
    concurrency: usize,
    make: F,
) -> Vec<Result<crate::judge::Observed, String>>
where
    F: Fn(usize) -> Case,
{
    let limit = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
    let mut set = tokio::task::JoinSet::new();
    for i in 0..n {
        let ctx = ctx.clone();
        let case = make(i);
        let limit = limit.clone();
        set.spawn(async move {
            let _permit = limit.acquire_owned().await;
            (i, exchange(&ctx, &case).await)
        });
    }
    let mut out: Vec<(usize, Result<_, String>)> = Vec::with_capacity(n);
    while let Some(r) = set.join_next().await {
        out.push(r.unwrap_or_else(|e| (usize::MAX, Err(format!("request task failed: {e}")))));
    }
    out.sort_by_key(|(i, _)| *i);
    out.into_iter().map(|(_, r)| r).collect()
}

fn judge(ctx: &Ctx, case: &Case, resp: &crate::judge::Observed) -> Result<(), String> {
    match ctx.test.driver {
        Driver::Gateway => judge_gateway(case, "http", resp),
        Driver::Mesh => judge_mesh(case, resp),
    }
}

/// The Deployment a pod belongs to: its name minus the last two dash-separated parts.
pub fn deployment_of(pod: &str) -> &str {
    let mut cut = pod;
    for _ in 0..2 {
        cut = cut.rsplit_once('-').map_or(cut, |(head, _)| head);
    }
    cut
}

/// weightedDistribution: rounds of `totalRequests` copies of the case request; each round
/// passes when every backend seen is expected, as many distinct backends as non-zero weights
/// answer, and each share is within `tolerance` of its weight.
pub(crate) async fn weighted(ctx: Arc<Ctx>, case: &Case, wd: &WeightedDistribution) -> Outcome {
    let case = match crate::features::prepare(case, &ctx.plan) {
        Ok(c) => c,
        Err(why) => return Outcome::Skip(why),
    };
    let per_request = ctx.test.driver == Driver::Gateway;
    let mut last = String::new();
    for _ in 0..wd.max_retries.max(1) {
        let make = |_| {
            let mut c = case.clone();
            if wd.entropy.is_some() && rand::random::<bool>() {
                // Upstream adds jitter so that a hash-based balancer cannot pin every request
                // to one backend.
                c.request.headers.insert(
                    "X-Jitter".into(),
                    rand::random_range(0..10000u32).to_string(),
                );
            }
            c
        };
        let results = burst(&ctx, wd.total_requests, wd.concurrency.unwrap_or(10), make).await;
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        let mut bad = None;
        for r in &results {
            match r {
                Err(e) => {
                    bad = Some(e.clone());
                    break;
                }
                Ok(resp) => {
                    if per_request {
                        if let Err(e) = judge(&ctx, &case, resp) {
                            bad = Some(e);
                            break;
                        }
                    }
                    let pod = resp.echo("GET").map(|e| e.pod).unwrap_or_default();
                    *counts.entry(deployment_of(&pod).to_owned()).or_default() += 1;
                }
            }
        }
        match bad {
            Some(e) => last = format!("a request failed: {e}"),
            None => match check_weights(
                &counts,
                &wd.expected_weights,
                wd.total_requests,
                wd.tolerance,
            ) {
                Ok(()) => return Outcome::Pass,
                Err(e) => last = e,
            },
        }
    }
    Outcome::Fail(format!(
        "no round within tolerance in {} rounds; last: {last}",
        wd.max_retries
    ))
}

pub fn check_weights(
    counts: &BTreeMap<String, usize>,
    expected: &BTreeMap<String, f64>,
    total: usize,
    tolerance: f64,
) -> Result<(), String> {
    if let Some(unknown) = counts.keys().find(|k| !expected.contains_key(*k)) {
        return Err(format!(
            "backend {unknown:?} answered but is not expected ({counts:?})"
        ));
    }
    let non_zero = expected.values().filter(|w| **w > 0.0).count();
    if counts.len() != non_zero {
        return Err(format!(
            "{} distinct backends answered, expected {non_zero} ({counts:?})",
            counts.len()
        ));
    }
    for (backend, weight) in expected {
        let share = *counts.get(backend).unwrap_or(&0) as f64 / total.max(1) as f64;
        if (share - weight).abs() > tolerance {
            return Err(format!(
                "backend {backend} got {share:.3} of requests, expected {weight} ± {tolerance} ({counts:?})"
            ));
        }
    }
    Ok(())
}

/// mirrorDistribution: per mirroring case, batches of requests with one fresh request id; the
/// number of copies each mirror received must be within `toleranceStdDevs` binomial standard
/// deviations of `percent`.
pub(crate) async fn mirror_distribution(ctx: Arc<Ctx>, md: &MirrorDistribution) -> Outcome {
    let pause = md
        .pause_between_attempts
        .as_deref()
        .and_then(crate::echo::parse_go_duration)
        .unwrap_or(Duration::from_secs(2));
    for case in ctx.test.cases.iter().filter(|c| !c.mirrored_to.is_empty()) {
        let case = match crate::features::prepare(case, &ctx.plan) {
            Ok(c) => c,
            Err(why) => return Outcome::Skip(why),
        };
        let mut last = String::new();
        let mut passed = false;
        for attempt in 0..md.attempts.max(1) {
            if attempt > 0 {
                tokio::time::sleep(pause).await;
            }
            let with_id = with_request_id(&case, &md.request_id_query_param, &uuid());
            let results = burst(
                &ctx,
                md.total_requests,
                md.concurrency.unwrap_or(10),
                |_| with_id.clone(),
            )
            .await;
            if let Some(e) = results.iter().find_map(|r| match r {
                Err(e) => Some(e.clone()),
                Ok(resp) => judge(&ctx, &with_id, resp).err(),
            }) {
                last = format!("a request failed: {e}");
                continue;
            }
            // Mirrors are sent in the background; give the last copies a moment to land.
            tokio::time::sleep(Duration::from_millis(500)).await;
            let uri = with_id.request.path.clone().unwrap_or_default();
            let n = md.total_requests as f64;
            let verdict = with_id.mirrored_to.iter().try_for_each(|m| {
                let p = m.percent.unwrap_or(100.0) / 100.0;
                let got = mirrored_count(&ctx, &m.namespace, &m.name, &uri) as f64;
                let sd = (n * p * (1.0 - p)).sqrt();
                let (lo, hi) = (
                    n * p - md.tolerance_std_devs * sd,
                    n * p + md.tolerance_std_devs * sd,
                );
                if got < lo || got > hi {
                    Err(format!(
                        "{}/{} received {got} of {n} copies, expected [{lo:.1}, {hi:.1}]",
                        m.namespace, m.name
                    ))
                } else {
                    Ok(())
                }
            });
            match verdict {
                Ok(()) => {
                    passed = true;
                    break;
                }
                Err(e) => last = e,
            }
        }
        if !passed {
            let path = case.request.path.as_deref().unwrap_or("/");
            return Outcome::Fail(format!("{path}: {last}"));
        }
    }
    Outcome::Pass
}

/// headerMatchesBackend: sequential requests; each must be answered, the echo must have seen
/// exactly one value of `header`, and the answering pod's name must start with it.
pub(crate) async fn header_matches_backend(ctx: Arc<Ctx>, hm: &HeaderMatchesBackend) -> Outcome {
    let case = Case {
        request: hm.request.clone(),
        ..Case::default()
    };
    for i in 0..hm.requests {
        let resp = match exchange(&ctx, &case).await {
            Ok(r) => r,
            Err(e) => return Outcome::Fail(format!("request {i}: {e}")),
        };
        let echo = match resp.echo("GET") {
            Ok(e) => e,
            Err(e) => return Outcome::Fail(format!("request {i}: {e}")),
        };
        let values: Vec<&String> = echo
            .headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(&hm.header))
            .flat_map(|(_, v)| v)
            .collect();
        let [value] = values.as_slice() else {
            return Outcome::Fail(format!(
                "request {i}: backend saw {} values of {} ({values:?}), expected one",
                values.len(),
                hm.header
            ));
        };
        if !echo.pod.starts_with(value.as_str()) {
            return Outcome::Fail(format!(
                "request {i}: pod {} answered with {}: {value}",
                echo.pod, hm.header
            ));
        }
    }
    Outcome::Pass
}

/// websocket: opens a WebSocket through the Gateway listener and, for each exchange, sends the
/// frame and expects the same frame back; the whole session must succeed three times in a row
/// (4.3), each on a fresh connection.
pub(crate) async fn websocket(ctx: Arc<Ctx>, check: &WebSocketCheck) -> Outcome {
    let Some(target) = check.gateway.as_ref().or(ctx.test.gateway.as_ref()) else {
        return Outcome::Fail(
            "the websocket block names no gateway and the test has no default".into(),
        );
    };
    let result = Streak::CASE
        .run(|| {
            let ctx = ctx.clone();
            async move {
                match tokio::time::timeout(REQUEST_TIMEOUT, websocket_session(&ctx, target, check))
                    .await
                {
                    Ok(Ok(())) => Attempt::Pass,
                    Ok(Err(why)) => Attempt::Retry(why),
                    Err(_) => Attempt::Retry(format!(
                        "WebSocket session did not finish within {REQUEST_TIMEOUT:?}"
                    )),
                }
            }
        })
        .await;
    match result {
        Ok(()) => Outcome::Pass,
        Err(why) => Outcome::Fail(why),
    }
}

async fn websocket_session(
    ctx: &Ctx,
    target: &crate::cases::GatewayTarget,
    check: &WebSocketCheck,
) -> Result<(), String> {
    let addr = ctx.listener_addr(target)?;
    // The URL names the Gateway's own port; the socket goes to where the runner serves it.
    let host = default_host(None, "http", &addr.ip().to_string(), target.port);
    let url = format!("ws://{host}{}", check.path);
    let mut request = url
        .as_str()
        .into_client_request()
        .map_err(|e| format!("WebSocket URL {url}: {e}"))?;
    if let Some(origin) = &check.origin {
        let value = http::HeaderValue::from_str(origin)
            .map_err(|_| format!("Origin {origin:?} is not a header value"))?;
        request.headers_mut().insert(http::header::ORIGIN, value);
    }
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    let (mut ws, _) = tokio_tungstenite::client_async(request, stream)
        .await
        .map_err(|e| format!("WebSocket handshake for {url} via {addr}: {e}"))?;
    for (i, exchange) in check.exchanges.iter().enumerate() {
        ws.send(message_of(&exchange.send))
            .await
            .map_err(|e| format!("exchange {i}: send: {e}"))?;
        let got = loop {
            match ws.next().await {
                Some(Ok(m)) => {
                    if let Some(frame) = frame_of(m) {
                        break frame;
                    }
                }
                Some(Err(e)) => return Err(format!("exchange {i}: receive: {e}")),
                None => {
                    return Err(format!(
                        "exchange {i}: the connection closed without a reply"
                    ))
                }
            }
        };
        if got != exchange.expect {
            return Err(format!(
                "exchange {i}: got {got:?}, expected {:?}",
                exchange.expect
            ));
        }
    }
    // A clean close is courtesy; the exchanges already passed.
    let _ = ws.close(None).await;
    Ok(())
}

fn message_of(frame: &WebSocketFrame) -> Message {
    match frame {
        WebSocketFrame::Text { data } => Message::text(data.clone()),
        WebSocketFrame::Binary { data_bytes } => Message::binary(data_bytes.clone()),
    }
}

/// The data frame a message carries; control frames (ping, pong, close) carry none.
fn frame_of(message: Message) -> Option<WebSocketFrame> {
    match message {
        Message::Text(text) => Some(WebSocketFrame::Text {
            data: text.as_str().to_owned(),
        }),
        Message::Binary(bytes) => Some(WebSocketFrame::Binary {
            data_bytes: bytes.to_vec(),
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deployment_from_pod_name() {
        assert_eq!(
            deployment_of("infra-backend-v1-7d9f8c6b5-x2x4q"),
            "infra-backend-v1"
        );
        assert_eq!(deployment_of("echo-v2-abc-def"), "echo-v2");
        assert_eq!(deployment_of("solo"), "solo");
    }

    #[test]
    fn weights_within_tolerance() {
        let expected: BTreeMap<String, f64> = [
            ("a".to_string(), 0.7),
            ("b".to_string(), 0.3),
            ("c".to_string(), 0.0),
        ]
        .into();
        let counts = |a: usize, b: usize| -> BTreeMap<String, usize> {
            [("a".to_string(), a), ("b".to_string(), b)].into()
        };
        assert!(check_weights(&counts(350, 150), &expected, 500, 0.05).is_ok());
        assert!(check_weights(&counts(400, 100), &expected, 500, 0.05).is_err());
        let only_a: BTreeMap<String, usize> = [("a".to_string(), 500)].into();
        assert!(check_weights(&only_a, &expected, 500, 0.05).is_err());
        let mut with_c = counts(340, 150);
        with_c.insert("c".into(), 10);
        assert!(check_weights(&with_c, &expected, 500, 0.05).is_err());
    }
}

//! Replays one test: deploy (echo backends, config folder, waypoint process), status checks,
//! cases under the consistency rules, bespoke checks, teardown.

use crate::cases::{Case, Driver, Expectation, GatewayTarget, MeshClient, TestSpec};
use crate::client::{send_on, send_tcp, HttpRequest};
use crate::echo::{spawn_echo_with_mode, EchoIdentity, EchoMode, EchoServer, RequestLog};
use crate::eventually::{Attempt, Streak};
use crate::features::{prepare, uuid, FeatureSet};
use crate::generated_tls::GeneratedSecrets;
use crate::judge::{default_host, is_redirect, judge_gateway, judge_mesh, Location, Observed};
use crate::manifests::{self, ConfigDir, MeshTarget, Plan};
use crate::status::{self, Applied, StatusList, Verdict};
pub use crate::verdict::{Outcome, TestResult, TestVerdict, Unit};
use crate::waypoint_proc::{check_status, wait_for_port, WaypointProcess};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use waypoint::demo::ca::{DemoCa, TRUST_DOMAIN};
use waypoint::demo::waypoint_dialer::WaypointDialer;

mod deployed;
mod send;

use deployed::Deployed;
use send::attempt;
pub(crate) use send::exchange;

/// Listener port N of a Gateway is served on its address at N + this offset, so that the
/// runner needs no privileges for ports below 1024.
const DEFAULT_PORT_OFFSET: u16 = 20000;
const MAX_REDIRECTS: usize = 10;
const CONFIG_CHANGE_WAIT: Duration = Duration::from_secs(30);

/// How a run is set up.
#[derive(Debug, Clone)]
pub struct Settings {
    pub waypoint: PathBuf,
    pub manifests: PathBuf,
    pub features: FeatureSet,
    /// Secrets the suite generates; listener checks that need one the manifests lack are skipped.
    pub generated_secrets: GeneratedSecrets,
}

/// The units a test has, named, before anything runs.
fn unit_names(test: &TestSpec) -> Vec<String> {
    let mut names = Vec::new();
    for (i, c) in test.status_checks.iter().enumerate() {
        let kind = c.get("check").and_then(|v| v.as_str()).unwrap_or("?");
        names.push(format!("status[{i}] {kind}"));
    }
    for (i, c) in test.cases.iter().enumerate() {
        names.push(case_name(i, c));
    }
    for (present, name) in [
        (test.websocket.is_some(), "websocket"),
        (test.weighted_distribution.is_some(), "weightedDistribution"),
        (test.mirror_distribution.is_some(), "mirrorDistribution"),
        (
            test.header_matches_backend.is_some(),
            "headerMatchesBackend",
        ),
    ] {
        if present {
            names.push(name.into());
        }
    }
    names
}

fn case_name(i: usize, c: &Case) -> String {
    let what = c.name.clone().unwrap_or_else(|| {
        format!(
            "{} {}{}",
            c.request.method.as_deref().unwrap_or("GET"),
            c.request
                .host
                .as_deref()
                .map(|h| format!("{h} "))
                .unwrap_or_default(),
            c.request.path.as_deref().unwrap_or("/")
        )
    });
    format!("case[{i}] {what}")
}

fn all(test: &TestSpec, outcome: Outcome) -> TestResult {
    let mut names = unit_names(test);
    if names.is_empty() {
        names.push("test".into());
    }
    TestResult {
        name: test.name.clone(),
        profiles: test.profiles.clone(),
        features: test.features.clone(),
        units: names
            .into_iter()
            .map(|name| Unit {
                name,
                outcome: outcome.clone(),
            })
            .collect(),
    }
}

/// Where a Gateway is served.
#[derive(Debug, Clone, Copy)]
struct GatewayAddr {
    ip: IpAddr,
    offset: u16,
}

/// What the cases of a running test need.
pub(crate) struct Ctx {
    pub(crate) test: TestSpec,
    pub(crate) plan: Plan,
    gateways: HashMap<(String, String), GatewayAddr>,
    mesh: Option<Mesh>,
    /// Request logs per echo Deployment (namespace, name).
    logs: HashMap<(String, String), RequestLog>,
}

impl Ctx {
    fn gateway(&self, target: &GatewayTarget) -> Result<GatewayAddr, String> {
        self.gateways
            .get(&(target.namespace.clone(), target.name.clone()))
            .copied()
            .ok_or_else(|| {
                format!(
                    "Gateway {}/{} is not served by the runner",
                    target.namespace, target.name
                )
            })
    }

    /// Where the runner serves listener `target.port` of the target Gateway.
    pub(crate) fn listener_addr(&self, target: &GatewayTarget) -> Result<SocketAddr, String> {
        let gw = self.gateway(target)?;
        let port = target.port.checked_add(gw.offset).ok_or("port overflow")?;
        Ok(SocketAddr::new(gw.ip, port))
    }
}

struct Mesh {
    ca: DemoCa,
    hbone: SocketAddr,
    waypoint_identity: authz::Identity,
    /// One HBONE client per client namespace (its identity is ns/<ns>/sa/default).
    dialers: tokio::sync::Mutex<HashMap<String, Arc<WaypointDialer>>>,
}

/// Runs one test end to end.
pub async fn run_test(settings: &Settings, test: &TestSpec, slot: u8) -> TestResult {
    if let Some(reason) = settings.features.unsupported(test) {
        return all(test, Outcome::Skip(reason));
    }
    match Deployed::up(settings, test, slot).await {
        Ok(deployed) => {
            let result = deployed.run(settings).await;
            deployed.down().await;
            result
        }
        Err(why) => all(test, Outcome::Fail(format!("deploy: {why}"))),
    }
}

/// Runs one case to its outcome under the consistency rules.
async fn run_case(ctx: Arc<Ctx>, case: Case, after_change: bool) -> Outcome {
    let case = match prepare(&case, &ctx.plan) {
        Ok(c) => c,
        Err(why) => return Outcome::Skip(why),
    };
    let mut streak = match case.expect {
        Some(Expectation::TlsFailure) => {
            return Outcome::Skip(
                "tlsFailure cases need HTTPS listeners with generated certificates".into(),
            )
        }
        Some(Expectation::Failure) => Streak::EXPECT_FAILURE,
        None => Streak::CASE,
    };
    if after_change {
        streak.deadline = streak.deadline.max(CONFIG_CHANGE_WAIT);
    }
    // Mirror checks add a request id so the mirrored copy is unambiguous (section 7).
    let mirror_param = if case.mirrored_to.is_empty() {
        None
    } else {
        ctx.test
            .mirror
            .as_ref()
            .map(|m| m.request_id_query_param.clone())
    };
    let case = match &mirror_param {
        Some(param) => with_request_id(&case, param, &uuid()),
        None => case,
    };
    let expect = case.expect;
    let result = streak
        .run(|| {
            let ctx = ctx.clone();
            let case = case.clone();
            async move { attempt(&ctx, &case, expect).await }
        })
        .await;
    if let Err(why) = result {
        return Outcome::Fail(why);
    }
    if mirror_param.is_some() {
        let window = ctx
            .test
            .mirror
            .as_ref()
            .and_then(|m| m.log_window.as_deref())
            .and_then(crate::echo::parse_go_duration)
            .unwrap_or(Duration::from_secs(10));
        let path = case.request.path.clone().unwrap_or_else(|| "/".into());
        for target in &case.mirrored_to {
            if let Err(why) =
                wait_mirrored(&ctx, &target.namespace, &target.name, &path, window).await
            {
                return Outcome::Fail(why);
            }
        }
    }
    Outcome::Pass
}

/// Adds `param=id` to the query of the request and expected paths, keys sorted (Go's
/// `url.Values.Encode`).
pub fn with_request_id(case: &Case, param: &str, id: &str) -> Case {
    let mut case = case.clone();
    let add = |path: &str| -> String {
        let (p, q) = path.split_once('?').unwrap_or((path, ""));
        let mut pairs: Vec<(String, String)> = q
            .split('&')
            .filter(|s| !s.is_empty())
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                (k.to_owned(), v.to_owned())
            })
            .collect();
        pairs.push((param.to_owned(), id.to_owned()));
        pairs.sort();
        let q: Vec<String> = pairs.into_iter().map(|(k, v)| format!("{k}={v}")).collect();
        format!("{p}?{}", q.join("&"))
    };
    let path = case.request.path.clone().unwrap_or_else(|| "/".into());
    case.request.path = Some(add(&path));
    if let Some(e) = &mut case.expected_request {
        let ep = e.path.clone().unwrap_or_else(|| path.clone());
        e.path = Some(add(&ep));
    }
    case
}

/// Request logs of the backends behind Service `ns/name` (by selector), or of the Deployment
/// of that name when there is no such Service.
fn backend_logs(ctx: &Ctx, ns: &str, name: &str) -> Vec<RequestLog> {
    let by_service: Vec<RequestLog> = ctx
        .plan
        .services
        .iter()
        .filter(|s| s.namespace == ns && s.name == name && !s.selector.is_empty())
        .flat_map(|s| {
            ctx.plan.echoes.iter().filter(move |e| {
                e.namespace == s.namespace
                    && s.selector.iter().all(|(k, v)| e.labels.get(k) == Some(v))
            })
        })
        .filter_map(|e| {
            ctx.logs
                .get(&(e.namespace.clone(), e.deployment.clone()))
                .cloned()
        })
        .collect();
    if !by_service.is_empty() {
        return by_service;
    }
    ctx.logs
        .get(&(ns.to_owned(), name.to_owned()))
        .cloned()
        .into_iter()
        .collect()
}

pub(crate) fn mirrored_count(ctx: &Ctx, ns: &str, name: &str, uri: &str) -> usize {
    backend_logs(ctx, ns, name)
        .iter()
        .map(|l| l.count(uri))
        .sum()
}

async fn wait_mirrored(
    ctx: &Ctx,
    ns: &str,
    name: &str,
    uri: &str,
    window: Duration,
) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + window;
    loop {
        if mirrored_count(ctx, ns, name, uri) > 0 {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(format!(
                "mirror backend {ns}/{name} did not receive {uri} within {window:?}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

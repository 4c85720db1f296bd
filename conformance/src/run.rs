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

/// A test's running environment.
struct Deployed {
    ctx: Arc<Ctx>,
    config: std::sync::Mutex<ConfigDir>,
    config_dir: PathBuf,
    _tmp: tempfile::TempDir,
    _echoes: Vec<EchoServer>,
    procs: Vec<WaypointProcess>,
}

impl Deployed {
    async fn up(settings: &Settings, test: &TestSpec, slot: u8) -> Result<Deployed, String> {
        let docs =
            manifests::load(&settings.manifests, &test.manifests).map_err(|e| e.to_string())?;
        let mesh = test.driver == Driver::Mesh;
        let plan = manifests::plan(docs, mesh, slot);

        let mut echoes = Vec::new();
        let mut logs = HashMap::new();
        for e in &plan.echoes {
            let id = EchoIdentity {
                namespace: e.namespace.clone(),
                service: String::new(),
                pod: e.pod.clone(),
            };
            let mut ports = e
                .http_ports
                .iter()
                .map(|p| (*p, EchoMode::Any))
                .chain(e.h2c_ports.iter().map(|p| (*p, EchoMode::H2cOnly)));
            let (first, first_mode) = ports
                .next()
                .ok_or_else(|| format!("echo {} has no port", e.pod))?;
            let main = spawn_echo_with_mode(SocketAddr::new(e.ip.into(), first), id, first_mode)
                .await
                .map_err(|err| format!("echo {} on {}:{first}: {err}", e.pod, e.ip))?;
            for (port, mode) in ports {
                let sibling = main
                    .spawn_sibling(SocketAddr::new(e.ip.into(), port), mode)
                    .await
                    .map_err(|err| format!("echo {} on {}:{port}: {err}", e.pod, e.ip))?;
                echoes.push(sibling);
            }
            logs.insert(
                (e.namespace.clone(), e.deployment.clone()),
                main.log.clone(),
            );
            echoes.push(main);
        }

        let tmp = tempfile::Builder::new()
            .prefix("waypoint-conformance-")
            .tempdir()
            .map_err(|e| format!("temp dir: {e}"))?;
        let config_dir = tmp.path().join("config");
        std::fs::create_dir_all(&config_dir).map_err(|e| e.to_string())?;
        let config = ConfigDir::write(&config_dir, &plan.docs).map_err(|e| e.to_string())?;

        let mut procs = Vec::new();
        let mut gateways = HashMap::new();
        let mut mesh_ctx = None;
        let common = |extra: &[String]| -> Vec<String> {
            let mut args = vec![
                "run".to_owned(),
                "--config".into(),
                config_dir.display().to_string(),
                "--admin-listen".into(),
                "127.0.0.1:0".into(),
                "--ready-listen".into(),
                "127.0.0.1:0".into(),
                "--hbone-listen".into(),
                "127.0.0.1:0".into(),
            ];
            args.extend_from_slice(extra);
            args
        };
        if test.status_only {
            // Nothing is sent, so nothing needs serving: status comes from `waypoint check`,
            // and the addresses the runner would assign count as the Gateways' addresses.
            for g in &plan.gateways {
                gateways.insert(
                    (g.namespace.clone(), g.name.clone()),
                    GatewayAddr {
                        ip: g.ip.into(),
                        offset: DEFAULT_PORT_OFFSET,
                    },
                );
            }
        } else if mesh {
            let ca = DemoCa::generate(TRUST_DOMAIN).map_err(|e| format!("CA: {e}"))?;
            let wp_ns = plan
                .mesh_waypoint_namespace
                .clone()
                .unwrap_or_else(|| "default".into());
            let waypoint_identity = ca.identity(&wp_ns, manifests::MESH_WAYPOINT_NAME);
            let cert_dir = tmp.path().join("certs");
            std::fs::create_dir_all(&cert_dir).map_err(|e| e.to_string())?;
            ca.write_cert_dir(&cert_dir, &waypoint_identity)
                .map_err(|e| format!("waypoint certificate: {e}"))?;
            let proc = WaypointProcess::start(
                &settings.waypoint,
                &common(&[
                    "--cert-dir".into(),
                    cert_dir.display().to_string(),
                    "--gateway".into(),
                    format!("{wp_ns}/{}", manifests::MESH_WAYPOINT_NAME),
                ]),
            )
            .await?;
            let hbone = proc
                .addr("hbone")
                .ok_or_else(|| format!("start line has no hbone address: {:?}", proc.started))?;
            procs.push(proc);
            mesh_ctx = Some(Mesh {
                ca,
                hbone,
                waypoint_identity,
                dialers: tokio::sync::Mutex::new(HashMap::new()),
            });
        } else {
            for g in &plan.gateways {
                let max = g.listener_ports.iter().max().copied().unwrap_or(0);
                let offset = if u32::from(max) + u32::from(DEFAULT_PORT_OFFSET) <= 65535 {
                    DEFAULT_PORT_OFFSET
                } else {
                    65535 - max
                };
                let proc = WaypointProcess::start(
                    &settings.waypoint,
                    &common(&[
                        "--gateway".into(),
                        format!("{}/{}", g.namespace, g.name),
                        "--gateway-address".into(),
                        g.ip.to_string(),
                        "--gateway-port-offset".into(),
                        offset.to_string(),
                    ]),
                )
                .await
                .map_err(|e| format!("Gateway {}/{}: {e}", g.namespace, g.name))?;
                for port in &g.listener_ports {
                    let addr = SocketAddr::new(g.ip.into(), port + offset);
                    if !wait_for_port(addr, Duration::from_secs(10)).await {
                        tracing::warn!(%addr, gateway = %g.name, "listener does not accept connections");
                    }
                }
                procs.push(proc);
                gateways.insert(
                    (g.namespace.clone(), g.name.clone()),
                    GatewayAddr {
                        ip: g.ip.into(),
                        offset,
                    },
                );
            }
        }
        Ok(Deployed {
            ctx: Arc::new(Ctx {
                test: test.clone(),
                plan,
                gateways,
                mesh: mesh_ctx,
                logs,
            }),
            config: std::sync::Mutex::new(config),
            config_dir,
            _tmp: tmp,
            _echoes: echoes,
            procs,
        })
    }

    async fn down(self) {
        for p in self.procs {
            p.stop().await;
        }
    }

    async fn run(&self, settings: &Settings) -> TestResult {
        let test = &self.ctx.test;
        let mut units = Vec::new();
        if !test.status_checks.is_empty() {
            units.extend(self.status_units(settings).await);
        }

        let sequential =
            test.sequential || test.cases.iter().any(|c| c.config_change_before.is_some());
        let mut case_units = Vec::new();
        if sequential {
            for (i, case) in test.cases.iter().enumerate() {
                let mut outcome = None;
                if let Some(change) = &case.config_change_before {
                    if let Err(why) = self.apply_change(change) {
                        outcome = Some(Outcome::Fail(why));
                    }
                }
                let outcome = match outcome {
                    Some(o) => o,
                    None => {
                        run_case(
                            self.ctx.clone(),
                            case.clone(),
                            case.config_change_before.is_some(),
                        )
                        .await
                    }
                };
                case_units.push(Unit {
                    name: case_name(i, case),
                    outcome,
                });
            }
        } else {
            let mut set = tokio::task::JoinSet::new();
            for (i, case) in test.cases.iter().enumerate() {
                let ctx = self.ctx.clone();
                let case = case.clone();
                set.spawn(async move {
                    let name = case_name(i, &case);
                    (
                        i,
                        Unit {
                            name,
                            outcome: run_case(ctx, case, false).await,
                        },
                    )
                });
            }
            let mut done = Vec::new();
            while let Some(r) = set.join_next().await {
                match r {
                    Ok(u) => done.push(u),
                    Err(e) => done.push((
                        usize::MAX,
                        Unit {
                            name: "case".into(),
                            outcome: Outcome::Fail(format!("case task panicked: {e}")),
                        },
                    )),
                }
            }
            done.sort_by_key(|(i, _)| *i);
            case_units.extend(done.into_iter().map(|(_, u)| u));
        }
        let first_case_passed = case_units
            .first()
            .is_some_and(|u| u.outcome == Outcome::Pass);
        units.extend(case_units);

        if let Some(ws) = &test.websocket {
            units.push(Unit {
                name: "websocket".into(),
                outcome: crate::bespoke::websocket(self.ctx.clone(), ws).await,
            });
        }
        if let Some(wd) = &test.weighted_distribution {
            let outcome = if !first_case_passed {
                Outcome::Fail("skipped because the test's case did not pass".into())
            } else {
                match test.cases.first() {
                    Some(case) => crate::bespoke::weighted(self.ctx.clone(), case, wd).await,
                    None => Outcome::Skip("weightedDistribution without a case to repeat".into()),
                }
            };
            units.push(Unit {
                name: "weightedDistribution".into(),
                outcome,
            });
        }
        if let Some(md) = &test.mirror_distribution {
            units.push(Unit {
                name: "mirrorDistribution".into(),
                outcome: crate::bespoke::mirror_distribution(self.ctx.clone(), md).await,
            });
        }
        if let Some(hm) = &test.header_matches_backend {
            units.push(Unit {
                name: "headerMatchesBackend".into(),
                outcome: crate::bespoke::header_matches_backend(self.ctx.clone(), hm).await,
            });
        }
        TestResult {
            name: test.name.clone(),
            profiles: test.profiles.clone(),
            features: test.features.clone(),
            units,
        }
    }

    async fn status_units(&self, settings: &Settings) -> Vec<Unit> {
        let test = &self.ctx.test;
        let names = unit_names(test);
        let status = match check_status(
            &settings.waypoint,
            &self.config_dir,
            manifests::GATEWAY_CLASS,
        )
        .await
        .and_then(|json| StatusList::parse(&json))
        {
            Ok(s) => s,
            Err(why) => {
                return test
                    .status_checks
                    .iter()
                    .zip(names)
                    .map(|(_, name)| Unit {
                        name,
                        outcome: Outcome::Fail(why.clone()),
                    })
                    .collect();
            }
        };
        let addressed = self
            .ctx
            .gateways
            .keys()
            .map(|(ns, name)| format!("{ns}/{name}"))
            .collect();
        let applied = Applied::new(addressed, &self.ctx.plan.docs);
        test.status_checks
            .iter()
            .zip(names)
            .map(|(check, name)| {
                let json = serde_json::to_value(check).unwrap_or_default();
                if let Some((ns, secret)) = settings
                    .generated_secrets
                    .missing_for_check(&json, &self.ctx.plan.docs)
                {
                    return Unit {
                        name,
                        outcome: Outcome::Skip(format!(
                            "needs generated TLS Secret {ns}/{secret}, which this runner does not create"
                        )),
                    };
                }
                let outcome = match status::evaluate(&json, &status, &applied) {
                    Verdict::Pass => Outcome::Pass,
                    Verdict::Fail(w) => Outcome::Fail(w),
                    Verdict::Skip(w) => Outcome::Skip(w),
                };
                Unit { name, outcome }
            })
            .collect()
    }

    fn apply_change(&self, change: &crate::cases::ConfigChange) -> Result<(), String> {
        if change.op != "delete" {
            return Err(format!(
                "config change op {:?} is not supported by the runner",
                change.op
            ));
        }
        let mut config = self.config.lock().unwrap_or_else(|p| p.into_inner());
        match config.delete(&change.kind, &change.reference) {
            Ok(true) => Ok(()),
            Ok(false) => Err(format!("no {} {} to delete", change.kind, change.reference)),
            Err(e) => Err(e.to_string()),
        }
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

/// One attempt of a case, classified for the streak.
async fn attempt(ctx: &Ctx, case: &Case, expect: Option<Expectation>) -> Attempt {
    let id = uuid();
    let mut case = case.clone();
    if let Some(p) = &mut case.request.path {
        *p = p.replace("{uuid}", &id);
    }
    if let Some(e) = &mut case.expected_request {
        if let Some(p) = &mut e.path {
            *p = p.replace("{uuid}", &id);
        }
    }
    let sent = exchange(ctx, &case).await;
    match expect {
        Some(Expectation::Failure) => match sent {
            Err(why) => Attempt::Retry(why),
            Ok(r) if r.status == 408 || r.status == 504 => {
                Attempt::Retry(format!("status {}", r.status))
            }
            Ok(r) if r.status == 200 => {
                Attempt::Fatal("got 200, expected the request to fail".into())
            }
            Ok(_) => Attempt::Pass,
        },
        _ => match sent {
            Err(why) => Attempt::Retry(why),
            Ok(resp) => {
                let verdict = match ctx.test.driver {
                    Driver::Gateway => judge_gateway(&case, "http", &resp),
                    Driver::Mesh => judge_mesh(&case, &resp),
                };
                match verdict {
                    Ok(()) => Attempt::Pass,
                    Err(why) => Attempt::Retry(why),
                }
            }
        },
    }
}

/// Sends the case's request the way its driver does and returns the final response.
pub(crate) async fn exchange(ctx: &Ctx, case: &Case) -> Result<Observed, String> {
    match ctx.test.driver {
        Driver::Gateway => exchange_gateway(ctx, case).await,
        Driver::Mesh => exchange_mesh(ctx, case).await,
    }
}

async fn exchange_gateway(ctx: &Ctx, case: &Case) -> Result<Observed, String> {
    let target: &GatewayTarget = case
        .gateway
        .as_ref()
        .or(ctx.test.gateway.as_ref())
        .ok_or("the case names no gateway and the test has no default")?;
    let gw = ctx.gateway(target)?;
    let r = &case.request;
    let mut headers: Vec<(String, String)> = r
        .headers
        .iter()
        .filter(|(k, _)| !k.eq_ignore_ascii_case("host"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let set_header: Vec<String> = case
        .backend_set_response_headers
        .iter()
        .map(|(k, v)| format!("{k}:{v}"))
        .collect();
    headers.push(("X-Echo-Set-Header".into(), set_header.join(",")));
    let host_override = r
        .headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("host"))
        .map(|(_, v)| v.clone());
    let mut req = HttpRequest {
        method: r.method.clone().unwrap_or_else(|| "GET".into()),
        path: r.path.clone().unwrap_or_else(|| "/".into()),
        host: host_override.unwrap_or_else(|| {
            default_host(r.host.as_deref(), "http", &gw.ip.to_string(), target.port)
        }),
        headers,
        body: r.body.clone(),
        h2c: r.protocol.as_deref() == Some("H2C_PRIOR_KNOWLEDGE"),
    };
    let mut port = target.port;
    for _ in 0..=MAX_REDIRECTS {
        let addr = SocketAddr::new(gw.ip, port.checked_add(gw.offset).ok_or("port overflow")?);
        let resp = send_tcp(addr, &req).await?;
        if r.unfollow_redirect || !is_redirect(resp.status) {
            return Ok(resp);
        }
        let Some(location) = resp
            .header_values("location")
            .first()
            .and_then(|l| Location::parse(l))
        else {
            return Ok(resp);
        };
        // Hostnames in tests do not resolve; every hop goes back to the same Gateway.
        if !location.scheme.is_empty() && location.scheme != "http" {
            return Err(format!(
                "redirect to {} is not followed by the runner",
                location.scheme
            ));
        }
        if !location.port.is_empty() {
            port = location
                .port
                .parse()
                .map_err(|_| format!("bad redirect port {:?}", location.port))?;
        } else if !location.host.is_empty() {
            port = 80;
        }
        if !location.host.is_empty() {
            req.host = if port == 80 {
                location.host.clone()
            } else {
                format!("{}:{port}", location.host)
            };
        }
        req.path = if location.query.is_empty() {
            location.path.clone()
        } else {
            format!("{}?{}", location.path, location.query)
        };
        if req.path.is_empty() {
            req.path = "/".into();
        }
    }
    Err(format!("more than {MAX_REDIRECTS} redirects"))
}

async fn exchange_mesh(ctx: &Ctx, case: &Case) -> Result<Observed, String> {
    let mesh = ctx.mesh.as_ref().ok_or("no mesh waypoint running")?;
    let client: &MeshClient = case
        .client
        .as_ref()
        .or(ctx.test.mesh_client.as_ref())
        .ok_or("the case names no mesh client and the test has no default")?;
    let r = &case.request;
    let host = r.host.clone().unwrap_or_else(|| "echo".into());
    let host_header = r
        .headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("host"))
        .map_or_else(|| host.clone(), |(_, v)| v.clone());
    let req = HttpRequest {
        method: r.method.clone().unwrap_or_else(|| "GET".into()),
        path: r.path.clone().unwrap_or_else(|| "/".into()),
        host: host_header,
        headers: r
            .headers
            .iter()
            .filter(|(k, _)| !k.eq_ignore_ascii_case("host"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        body: r.body.clone(),
        h2c: r.protocol.as_deref() == Some("H2C_PRIOR_KNOWLEDGE"),
    };
    match ctx.plan.resolve_mesh_host(&host, &client.namespace)? {
        MeshTarget::Pod(addr) => send_tcp(addr, &req).await,
        MeshTarget::Service(vip) => {
            let dialer = mesh.dialer(&client.namespace).await?;
            let send = async {
                let tunnel = dialer
                    .open(vip)
                    .await
                    .map_err(|e| format!("HBONE CONNECT {vip} via waypoint: {e}"))?;
                send_on(tunnel, &req).await
            };
            tokio::time::timeout(crate::client::REQUEST_TIMEOUT, send)
                .await
                .map_err(|_| {
                    format!(
                        "no response for {vip} within {:?}",
                        crate::client::REQUEST_TIMEOUT
                    )
                })?
        }
    }
}

impl Mesh {
    async fn dialer(&self, namespace: &str) -> Result<Arc<WaypointDialer>, String> {
        let mut dialers = self.dialers.lock().await;
        if let Some(d) = dialers.get(namespace) {
            return Ok(d.clone());
        }
        let identity = self.ca.identity(namespace, "default");
        let certs = self
            .ca
            .cert_store(&identity)
            .map_err(|e| format!("client certificate for {identity}: {e}"))?;
        let dialer = WaypointDialer::new(certs, self.hbone, self.waypoint_identity.clone())
            .map_err(|e| format!("HBONE client for {identity}: {e}"))?;
        dialers.insert(namespace.to_owned(), dialer.clone());
        Ok(dialer)
    }
}

//! A test's running environment: echo backends, the config folder, the waypoint processes,
//! and the run of its status checks, cases and bespoke checks against them.

use super::*;

/// A test's running environment.
pub(super) struct Deployed {
    ctx: Arc<Ctx>,
    config: std::sync::Mutex<ConfigDir>,
    config_dir: PathBuf,
    _tmp: tempfile::TempDir,
    _echoes: Vec<EchoServer>,
    procs: Vec<WaypointProcess>,
}

impl Deployed {
    pub(super) async fn up(
        settings: &Settings,
        test: &TestSpec,
        slot: u8,
    ) -> Result<Deployed, String> {
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

    pub(super) async fn down(self) {
        for p in self.procs {
            p.stop().await;
        }
    }

    pub(super) async fn run(&self, settings: &Settings) -> TestResult {
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

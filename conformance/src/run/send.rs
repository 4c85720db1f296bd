//! One request of a case, sent the way its driver says (through a Gateway listener, or as a
//! mesh client over HBONE), and what came back.

use super::*;

/// One attempt of a case, classified for the streak.
pub(super) async fn attempt(ctx: &Ctx, case: &Case, expect: Option<Expectation>) -> Attempt {
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

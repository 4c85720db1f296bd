//! Scenario 4: the plain `--http-listen` listener under PeerAuthentication: PERMISSIVE lets
//! plaintext in with no peer identity (`principals: ["*"]` never matches, `notPrincipals:
//! ["*"]` always does; `source.ip` is the TCP peer), STRICT refuses it while HBONE still works.

use super::mesh::{policy, services_yaml, Svc, World, NS};
use super::probe::{rbac, Expect, Peer, Req};
use std::time::Duration;

const X: Peer = Peer::hbone("a", "x", [127, 0, 0, 11]);
const P21: Peer = Peer::plain([127, 0, 0, 21]);
const P22: Peer = Peer::plain([127, 0, 0, 22]);

const OPEN: Svc = Svc {
    name: "plain-open",
    octet: 41,
};
const ANY: Svc = Svc {
    name: "plain-principals",
    octet: 42,
};
const NONE: Svc = Svc {
    name: "plain-not-principals",
    octet: 43,
};
const IP: Svc = Svc {
    name: "plain-ip",
    octet: 44,
};

fn peer_authentication(mode: &str) -> String {
    format!(
        "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {{name: default, namespace: {NS}}}\nspec:\n  mtls: {{mode: {mode}}}\n"
    )
}

fn policies() -> String {
    [
        policy(
            "allow-any-principal",
            "plain-principals",
            "  rules:\n  - from:\n    - source: {principals: [\"*\"]}\n",
        ),
        policy(
            "allow-no-principal",
            "plain-not-principals",
            "  rules:\n  - from:\n    - source: {notPrincipals: [\"*\"]}\n",
        ),
        policy(
            "allow-ip21",
            "plain-ip",
            "  rules:\n  - from:\n    - source: {ipBlocks: [\"127.0.0.21/32\"]}\n",
        ),
    ]
    .concat()
}

/// The whole scenario on one waypoint.
pub async fn run() {
    let w = World::start(|backend| {
        vec![
            ("mesh.yaml", services_yaml(&[OPEN, ANY, NONE, IP], backend)),
            ("policies.yaml", policies()),
            ("peer.yaml", peer_authentication("PERMISSIVE")),
        ]
    })
    .await;
    w.check(&P21, Req::get(OPEN, "/"), Expect::Allowed).await;
    w.check(
        &P21,
        Req::get(ANY, "/"),
        rbac("allow-any-principal", None, None),
    )
    .await;
    w.check(&X, Req::get(ANY, "/"), Expect::Allowed).await;
    w.check(&P21, Req::get(NONE, "/"), Expect::Allowed).await;
    w.check(
        &X,
        Req::get(NONE, "/"),
        rbac("allow-no-principal", None, None),
    )
    .await;
    w.check(&P21, Req::get(IP, "/"), Expect::Allowed).await;
    w.check(&P22, Req::get(IP, "/"), rbac("allow-ip21", None, None))
        .await;

    // STRICT: a plaintext connection is closed without an HTTP answer (no request reaches the
    // policies, so there is nothing for explain to compare); HBONE is unaffected.
    w.rewrite("peer.yaml", &peer_authentication("STRICT")).await;
    let refused = async {
        let mut t = w.tunnel(&P21, OPEN).await?;
        t.send(&Req::get(OPEN, "/")).await
    };
    match tokio::time::timeout(Duration::from_secs(10), refused).await {
        Ok(Ok(r)) => w.fail(format!(
            "STRICT answered plaintext with {} {:?} instead of closing the connection",
            r.status, r.body
        )),
        Ok(Err(_)) => {}
        Err(_) => w.fail("STRICT left a plaintext request hanging instead of closing it".into()),
    }
    w.check(&X, Req::get(OPEN, "/"), Expect::Allowed).await;
    w.finish();
}

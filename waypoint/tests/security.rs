//! Issue 12's acceptance scenarios through the product's interface: YAML in a config folder as
//! users write it, `waypoint run --config DIR --gateway NS/NAME --cert-dir D --hbone-listen A
//! --http-listen B`, HBONE clients with real workload certificates bound to distinct loopback
//! source addresses, real JWKS and ext_authz (HTTP and gRPC) servers, and `waypoint explain`
//! run on every request to check that its verdict is the proxy's.
//!
//! Expectations are what Istio's Envoy-based waypoint answers for the same YAML (istio.io's
//! reference pages, Envoy's rbac / jwt_authn / ext_authz filters), not what this code does.
//! One waypoint per scenario, many requests each.

mod support;

/// `assert!` that records the failure on the scenario's `World` and goes on, so that one run
/// reports every difference from Istio's behaviour.
macro_rules! soft {
    ($w:expr, $cond:expr, $($msg:tt)+) => {
        if !$cond {
            $w.fail(format!($($msg)+));
        }
    };
}

/// `assert_eq!(got, want)` that records the failure on the scenario's `World` and goes on.
macro_rules! soft_eq {
    ($w:expr, $got:expr, $want:expr $(,)?) => {
        soft_eq!($w, $got, $want, "{}", stringify!($got))
    };
    ($w:expr, $got:expr, $want:expr, $($msg:tt)+) => {{
        let (got, want) = (&$got, &$want);
        if got != want {
            $w.fail(format!("{}: want {want:?}, got {got:?}", format!($($msg)+)));
        }
    }};
}

#[path = "security/custom.rs"]
mod custom;
#[path = "security/ext_authz.rs"]
mod ext_authz;
#[path = "security/jwt.rs"]
mod jwt;
#[path = "security/mesh.rs"]
mod mesh;
#[path = "security/plain.rs"]
mod plain;
#[path = "security/probe.rs"]
mod probe;
#[path = "security/rbac.rs"]
mod rbac;
#[path = "security/serve.rs"]
mod serve;
#[path = "security/tcp.rs"]
mod tcp;
#[path = "security/tokens.rs"]
mod tokens;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorization_policies_by_identity_address_path_and_order() {
    rbac::run().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_with_a_jwks_server_rotation_and_istio_samples() {
    jwt::run().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ext_authz_http_and_grpc_servers() {
    custom::run().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_listener_under_peer_authentication() {
    plain::run().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_route_with_an_l4_allow_by_principal() {
    tcp::run().await;
}

//! Trust-domain migration at the HBONE handshake (issue 12): a client certificate of the
//! MeshConfig's trust domain or of one of its `trustDomainAliases` is let in, any other trust
//! domain is refused by the handshake, and a MeshConfig change applies to the next handshake.

mod support;

use std::time::{Duration, SystemTime};
use support::hbone_client::handshake_verdict;
use support::pki::TestCa;
use support::{any_port, echo};

fn mesh_config(aliases: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: istio, namespace: istio-system}}\ndata:\n  mesh: |\n    trustDomain: cluster.local\n    trustDomainAliases: [{aliases}]\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aliases_of_the_trust_domain_pass_the_handshake() {
    let ca = TestCa::new("cluster.local");
    let backend = echo("web-a-0", any_port()).await;
    let (config, certs) = support::shop_folders(&ca, &[("a", backend.local_addr)]);
    support::write(config.path(), "istio.yaml", &mesh_config("old.td"));
    let mut opts = support::local_options(config.path());
    opts.cert_dir = Some(certs.path().to_path_buf());
    opts.hbone_listen = any_port();
    let wp = waypoint::app::start(opts).await.expect("waypoint starts");
    let hbone = wp.hbone_addr.expect("HBONE listener");
    let root = ca.root_pem();
    let now = SystemTime::now();
    let leaf = |td: &str| {
        ca.issue_with(
            &format!("spiffe://{td}/ns/frontend/sa/ui"),
            now - Duration::from_secs(3600),
            now + Duration::from_secs(3600),
        )
    };
    let verdict = |td: &'static str| {
        let leaf = leaf(td);
        let root = root.clone();
        async move { handshake_verdict(hbone, Some(&leaf), &root).await }
    };

    assert!(verdict("cluster.local").await.is_ok(), "the trust domain");
    assert!(verdict("old.td").await.is_ok(), "an alias");
    match verdict("other.td").await {
        Err(why) if format!("{why:#}").contains("alert") => {}
        other => panic!("another trust domain must fail the handshake, got {other:?}"),
    }

    // The alias removed: the next handshake of old.td is refused.
    support::write(config.path(), "istio.yaml", &mesh_config(""));
    assert!(matches!(
        wp.live.reload(),
        waypoint::live::ReloadOutcome::Applied { .. }
    ));
    match verdict("old.td").await {
        Err(why) if format!("{why:#}").contains("alert") => {}
        other => panic!("a removed alias must fail the handshake, got {other:?}"),
    }
    wp.shutdown().await;
}

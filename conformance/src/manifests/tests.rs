use super::*;

const DOCS: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: app}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: be-v1, namespace: app}
spec:
  template:
    metadata: {labels: {app: be-v1}}
    spec:
      containers:
      - name: be
        image: registry.k8s.io/gateway-api/echo-basic:v1.5.1
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: grpc, namespace: app}
spec:
  template:
    metadata: {labels: {app: grpc}}
    spec:
      containers:
      - name: g
        image: registry.k8s.io/gateway-api/echo-basic:v1.5.1
        env: [{name: GRPC_ECHO_SERVER, value: "1"}]
---
apiVersion: v1
kind: Service
metadata: {name: be-v1, namespace: app}
spec:
  selector: {app: be-v1}
  ports:
  - {name: http, port: 8080, targetPort: 3000}
  - {name: h2c, port: 8081, targetPort: 3001, appProtocol: kubernetes.io/h2c}
  - {name: alt, port: 9000}
---
apiVersion: v1
kind: Service
metadata: {name: headless, namespace: app}
spec: {clusterIP: None, selector: {app: be-v1}, ports: [{port: 80, targetPort: 3000}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: app}
spec:
  gatewayClassName: "{GATEWAY_CLASS_NAME}"
  listeners: [{name: http, port: 80, protocol: HTTP}, {name: alt, port: 8080, protocol: HTTP}]
"#;

fn docs() -> Vec<Value> {
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::write(dir.path().join("m.yaml"), DOCS).expect("write");
    load(dir.path(), &["m.yaml".to_string()]).expect("loads")
}

#[test]
fn echo_deployments_become_pods_with_ports_from_services() {
    let plan = plan(docs(), false, 3);
    assert_eq!(plan.echoes.len(), 1, "the gRPC echo is not an HTTP echo");
    let e = &plan.echoes[0];
    assert_eq!(e.ip, Ipv4Addr::new(127, 80, 4, 1));
    assert!(e.pod.starts_with("be-v1-"));
    assert_eq!(
        e.pod.split('-').count(),
        4,
        "two parts after the deployment name: {}",
        e.pod
    );
    assert_eq!(
        e.http_ports.iter().copied().collect::<Vec<_>>(),
        [3000, 9000]
    );
    assert_eq!(e.h2c_ports.iter().copied().collect::<Vec<_>>(), [3001]);
    let pod = plan
        .docs
        .iter()
        .find(|d| kind(d) == "Pod")
        .expect("pod written");
    assert_eq!(str_at(pod, &["status", "podIP"]), Some("127.80.4.1"));
    assert_eq!(str_at(pod, &["metadata", "labels", "app"]), Some("be-v1"));
}

#[test]
fn services_get_cluster_ips_but_headless_stays_headless() {
    let plan = plan(docs(), false, 0);
    let be = plan
        .services
        .iter()
        .find(|s| s.name == "be-v1")
        .expect("svc");
    assert_eq!(be.cluster_ip, Some("10.96.0.1".parse().expect("ip")));
    let headless = plan
        .services
        .iter()
        .find(|s| s.name == "headless")
        .expect("svc");
    assert_eq!(headless.cluster_ip, None);
}

#[test]
fn waypoint_gateways_get_addresses() {
    let plan = plan(docs(), false, 0);
    assert_eq!(plan.gateways.len(), 1);
    assert_eq!(plan.gateways[0].ip, Ipv4Addr::new(127, 81, 1, 1));
    assert_eq!(
        plan.gateways[0]
            .listener_ports
            .iter()
            .copied()
            .collect::<Vec<_>>(),
        [80, 8080]
    );
}

#[test]
fn mesh_adds_a_waypoint_and_enrols_namespaces() {
    let plan = plan(docs(), true, 0);
    assert!(plan.gateways.is_empty());
    assert_eq!(plan.mesh_waypoint_namespace.as_deref(), Some("app"));
    let wp = plan
        .docs
        .iter()
        .find(|d| kind(d) == "Gateway" && key(d).1 == MESH_WAYPOINT_NAME)
        .expect("waypoint gateway");
    assert_eq!(
        str_at(wp, &["spec", "gatewayClassName"]),
        Some(MESH_WAYPOINT_CLASS)
    );
    let ns = plan
        .docs
        .iter()
        .find(|d| kind(d) == "Namespace")
        .expect("ns");
    assert_eq!(
        str_at(ns, &["metadata", "labels", USE_WAYPOINT]),
        Some(MESH_WAYPOINT_NAME)
    );
}

#[test]
fn mesh_hosts_resolve_like_service_names() {
    let plan = plan(docs(), true, 0);
    let vip = |h: &str| plan.resolve_mesh_host(h, "app");
    assert_eq!(
        vip("be-v1"),
        Ok(MeshTarget::Service("10.96.0.1:80".parse().expect("addr")))
    );
    assert_eq!(
        vip("be-v1:8080"),
        Ok(MeshTarget::Service("10.96.0.1:8080".parse().expect("addr")))
    );
    assert_eq!(
        vip("be-v1.app.svc.cluster.local"),
        Ok(MeshTarget::Service("10.96.0.1:80".parse().expect("addr")))
    );
    assert_eq!(
        vip("127.80.1.1:8080"),
        Ok(MeshTarget::Pod("127.80.1.1:8080".parse().expect("addr")))
    );
    assert!(vip("missing").is_err());
    assert!(plan.resolve_mesh_host("be-v1", "elsewhere").is_err());
}

#[test]
fn pod_ips_by_selector() {
    let plan = plan(docs(), false, 0);
    assert_eq!(
        plan.pod_ip("app", "app=be-v1"),
        Some(Ipv4Addr::new(127, 80, 1, 1))
    );
    assert_eq!(plan.pod_ip("app", "app=nope"), None);
}

#[test]
fn config_dir_deletes_objects_by_file() {
    let plan = plan(docs(), false, 0);
    let dir = tempfile::tempdir().expect("tmp");
    let mut cfg = ConfigDir::write(dir.path(), &plan.docs).expect("written");
    let count = || {
        std::fs::read_dir(dir.path())
            .map(|d| d.count())
            .unwrap_or(0)
    };
    let before = count();
    assert_eq!(cfg.delete("Service", "app/headless").ok(), Some(true));
    assert_eq!(count(), before - 1);
    assert_eq!(cfg.delete("Service", "app/headless").ok(), Some(false));
}

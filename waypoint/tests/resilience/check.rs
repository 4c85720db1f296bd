//! `waypoint check` on resilience config (issue 11): invalid or contradictory DestinationRule
//! and VirtualService values are named with file, resource and field; a VirtualService that an
//! HTTPRoute overrides is reported as ignored. No Envoy side: this is the waypoint's own report.

use super::verdict::Verdict;
use crate::support::child::check;
use crate::support::{mesh_config, write};
use std::net::SocketAddr;

/// One bad file: its name, contents, the resource and a fragment of the field it must name.
const BAD: &[(&str, &str, &str, &str)] = &[
    (
        "negative.yaml",
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: negative, namespace: shop}\n\
         spec:\n  host: web-a\n  trafficPolicy:\n    connectionPool:\n      tcp: {maxConnections: -1}\n",
        "DestinationRule shop/negative",
        "maxConnections",
    ),
    (
        "duration.yaml",
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: duration, namespace: shop}\n\
         spec:\n  host: web-b\n  trafficPolicy:\n    outlierDetection: {consecutive5xxErrors: 3, interval: ten seconds}\n",
        "DestinationRule shop/duration",
        "interval",
    ),
    (
        "subset.yaml",
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: subset, namespace: shop}\n\
         spec:\n  host: web-c\n  subsets:\n  - name: v9\n    labels: {version: v9}\n",
        "DestinationRule shop/subset",
        "subsets[0]",
    ),
    (
        "hash.yaml",
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: hash, namespace: shop}\n\
         spec:\n  host: web-d\n  trafficPolicy:\n    loadBalancer:\n      simple: LEAST_REQUEST\n      consistentHash: {httpHeaderName: x-user}\n",
        "DestinationRule shop/hash",
        "loadBalancer",
    ),
    (
        "timeout.yaml",
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: timeout, namespace: shop}\n\
         spec:\n  hosts: [web-e]\n  http:\n  - timeout: soon\n    route: [{destination: {host: web-e}}]\n",
        "VirtualService shop/timeout",
        "timeout",
    ),
    (
        "attempts.yaml",
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: attempts, namespace: shop}\n\
         spec:\n  hosts: [web-f]\n  http:\n  - retries: {attempts: -2}\n    route: [{destination: {host: web-f}}]\n",
        "VirtualService shop/attempts",
        "attempts",
    ),
];

/// A line of `text` naming `file`, `resource` and `field`.
fn names(text: &str, file: &str, resource: &str, field: &str) -> bool {
    text.lines()
        .any(|l| l.contains(file) && l.contains(resource) && l.contains(field))
}

/// Every bad value is named, and the check fails.
pub fn bad_values_are_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let nowhere: SocketAddr = "127.0.0.1:9".parse().expect("addr");
    let services: Vec<(&str, SocketAddr)> = ["a", "b", "c", "d", "e", "f"]
        .map(|s| (s, nowhere))
        .to_vec();
    write(dir.path(), "mesh.yaml", &mesh_config(&services));
    for (file, yaml, _, _) in BAD {
        write(dir.path(), file, yaml);
    }
    let (code, text) = check(dir.path());
    eprintln!("waypoint check:\n{text}");
    Verdict::judge("waypoint", |v| {
        v.check(code != 0, "waypoint check fails on invalid values");
        for (file, _, resource, field) in BAD {
            v.check(
                names(&text, file, resource, field),
                format!("a line names {file}, {resource} and {field}"),
            );
        }
    });
}

/// The VirtualService of a service an HTTPRoute also attaches to is reported as ignored.
pub fn overridden_virtual_service_is_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let nowhere: SocketAddr = "127.0.0.1:9".parse().expect("addr");
    write(dir.path(), "mesh.yaml", &mesh_config(&[("a", nowhere)]));
    write(
        dir.path(),
        "vs.yaml",
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: web, namespace: shop}\n\
         spec:\n  hosts: [web]\n  http:\n  - route: [{destination: {host: web-a}}]\n",
    );
    write(dir.path(), "route.yaml", &crate::support::route_to("a"));
    let (_, text) = check(dir.path());
    eprintln!("waypoint check:\n{text}");
    Verdict::judge("waypoint", |v| {
        v.check(
            text.lines().any(|l| {
                l.contains("VirtualService shop/web") && l.to_ascii_lowercase().contains("ignored")
            }),
            "a line says VirtualService shop/web is ignored",
        );
    });
}

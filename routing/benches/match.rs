//! `RouteTable::find` on a table of 10 000 routes, shaped like a large mesh: most services
//! own a path prefix, many expose exact API paths, and some split traffic on a header.

// `criterion_group!` expands to a `pub fn` it cannot document, and lint attributes on a macro
// call do not reach what it expands to; nothing in a bench binary is public API anyway.
#![allow(missing_docs)]

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use http::{HeaderMap, HeaderName, HeaderValue};
use routing::{
    CompiledRoute, HeaderMatch, HeaderValueMatch, PathMatch, RequestMatch, RequestView, RouteId,
    RouteSource, RouteTable, Rule,
};

const ROUTES: usize = 10_000;

fn prefix(path: &str) -> PathMatch {
    PathMatch::Prefix {
        trimmed: path.trim_end_matches('/').to_owned(),
        written_chars: path.len(),
    }
}

fn rule(request_match: RequestMatch) -> Rule {
    Rule {
        index: 0,
        name: None,
        matches: vec![request_match],
        request_header_modifier: None,
        response_header_modifier: None,
        redirect: None,
        direct_response: None,
        rewrite: None,
        mirrors: Vec::new(),
        cors: None,
        policy: Default::default(),
        unsupported_filter: None,
        backends: Vec::new(),
    }
}

/// Route `i`: a third exact API paths, a third service prefixes, a third a prefix plus a
/// tenant header (canary-style splits).
fn route(i: usize) -> Arc<CompiledRoute> {
    let path = match i % 3 {
        0 => PathMatch::Exact(format!("/api/v1/service-{i}/items")),
        _ => prefix(&format!("/service-{}/", i / 3)),
    };
    let headers = match i % 3 {
        2 => vec![HeaderMatch {
            name: HeaderName::from_static("x-tenant"),
            value: HeaderValueMatch::Exact(format!("tenant-{i}").into_bytes()),
        }],
        _ => Vec::new(),
    };
    Arc::new(CompiledRoute {
        id: RouteId {
            namespace: "bench".to_owned(),
            name: format!("route-{i:05}"),
        },
        created_at_nanos: Some(i128::try_from(i).unwrap_or_default()),
        rules: vec![rule(RequestMatch {
            path,
            headers,
            ..RequestMatch::any()
        })],
        source: RouteSource::GatewayApi,
    })
}

fn find(c: &mut Criterion) {
    let table = RouteTable::new((0..ROUTES).map(route).collect());
    let headers = HeaderMap::new();
    let mut tenant = HeaderMap::new();
    tenant.insert("x-tenant", HeaderValue::from_static("tenant-9998"));
    tenant.insert("user-agent", HeaderValue::from_static("bench"));
    // Route 9998 (a header match on /service-3332) ranks behind every exact path and every
    // longer prefix: the last thing a precedence-ordered walk would reach.
    let late = RequestView {
        method: "GET",
        path: "/service-3332/orders/42",
        query: Some("page=2"),
        headers: &tenant,
        context: Default::default(),
    };
    let miss = RequestView {
        method: "GET",
        path: "/nowhere/at/all",
        query: None,
        headers: &headers,
        context: Default::default(),
    };
    assert_eq!(
        table.find(&late).map(|m| m.route.id.name.as_str()),
        Some("route-09998")
    );
    assert!(table.find(&miss).is_none());
    c.bench_function("find 10k routes, late match", |b| {
        b.iter(|| table.find(black_box(&late)).is_some())
    });
    c.bench_function("find 10k routes, no match", |b| {
        b.iter(|| table.find(black_box(&miss)).is_some())
    });
}

criterion_group!(benches, find);
criterion_main!(benches);

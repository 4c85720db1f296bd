//! The routes attached to one parent, in Gateway API precedence order, and request lookup.

use std::cmp::Reverse;
use std::sync::Arc;

use crate::compile::{CompiledRoute, Rule};
use crate::request_match::{RequestMatch, RequestView};

/// All routes attached to one parent, ordered by Gateway API precedence once at build time.
#[derive(Clone, Debug, Default)]
pub struct RouteTable {
    routes: Vec<Arc<CompiledRoute>>,
    /// Every (route, rule, match), best first; `find` walks it and stops at the first match.
    candidates: Vec<Candidate>,
}

/// Positions into `RouteTable::routes` and the vectors below it.
#[derive(Clone, Copy, Debug)]
struct Candidate {
    route: usize,
    rule: usize,
    request_match: usize,
}

/// The Gateway API "Route precedence" order for one candidate, field by field: derived `Ord`
/// compares in declaration order, and smaller sorts first.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Precedence<'a> {
    /// Exact, then RegularExpression, then PathPrefix with the most characters.
    path: (u8, Reverse<usize>),
    has_method: Reverse<bool>,
    headers: Reverse<usize>,
    query_params: Reverse<usize>,
    /// Oldest first; `true` (no timestamp) sorts after every timestamp.
    created: (bool, i128),
    /// "{namespace}/{name}" compared as one string, as the spec words it.
    route_name: &'a str,
    rule: usize,
    request_match: usize,
}

/// The rule chosen for a request.
#[derive(Clone, Copy, Debug)]
pub struct RouteMatch<'a> {
    pub route: &'a CompiledRoute,
    pub rule: &'a Rule,
    /// The match of the rule that selected the request: ReplacePrefixMatch replaces its path.
    pub request_match: &'a RequestMatch,
}

impl RouteTable {
    pub fn new(routes: Vec<Arc<CompiledRoute>>) -> Self {
        let names: Vec<String> = routes.iter().map(|r| r.id.to_string()).collect();
        let mut keyed = Vec::new();
        for (r, route) in routes.iter().enumerate() {
            for (rule_pos, rule) in route.rules.iter().enumerate() {
                for (m, request_match) in rule.matches.iter().enumerate() {
                    let key = precedence(route, &names[r], rule, m, request_match);
                    let candidate = Candidate {
                        route: r,
                        rule: rule_pos,
                        request_match: m,
                    };
                    keyed.push((key, candidate));
                }
            }
        }
        // Stable, so identical keys (the same route listed twice) keep their input order.
        keyed.sort_by(|a, b| a.0.cmp(&b.0));
        let candidates = keyed.into_iter().map(|(_, c)| c).collect();
        Self { routes, candidates }
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// The routes as given to [`RouteTable::new`], for config dumps.
    pub fn routes(&self) -> &[Arc<CompiledRoute>] {
        &self.routes
    }

    /// The highest-precedence matching rule, or None (the proxy answers 404).
    pub fn find(&self, req: &RequestView<'_>) -> Option<RouteMatch<'_>> {
        self.candidates.iter().find_map(|c| {
            let route = &self.routes[c.route];
            let rule = &route.rules[c.rule];
            let request_match = &rule.matches[c.request_match];
            request_match.matches(req).then_some(RouteMatch {
                route,
                rule,
                request_match,
            })
        })
    }
}

fn precedence<'a>(
    route: &CompiledRoute,
    route_name: &'a str,
    rule: &Rule,
    match_index: usize,
    request_match: &RequestMatch,
) -> Precedence<'a> {
    Precedence {
        path: request_match.path_rank(),
        has_method: Reverse(request_match.method.is_some()),
        headers: Reverse(request_match.headers.len()),
        query_params: Reverse(request_match.query_params.len()),
        created: match route.created_at_nanos {
            Some(nanos) => (false, nanos),
            None => (true, 0),
        },
        route_name,
        rule: rule.index,
        request_match: match_index,
    }
}

#[cfg(test)]
mod tests;

//! The routes attached to one parent, in Gateway API precedence order, and request lookup.

use std::cmp::Reverse;
use std::collections::HashMap;
use std::sync::Arc;

use crate::compile::{CompiledRoute, Rule};
use crate::request_match::{PathMatch, RequestMatch, RequestView};

/// All routes attached to one parent, ordered by Gateway API precedence once at build time.
#[derive(Clone, Debug, Default)]
pub struct RouteTable {
    routes: Vec<Arc<CompiledRoute>>,
    /// Every (route, rule, match), best first: the first one that matches wins.
    candidates: Vec<Candidate>,
    /// Positions in `candidates` grouped by the paths they can match, so `find` only tries
    /// the few candidates whose path part can hold instead of walking thousands.
    index: PathIndex,
}

/// Positions into `RouteTable::candidates`, ascending (so best first) within every bucket.
#[derive(Clone, Debug, Default)]
struct PathIndex {
    /// Exact path matches by their path.
    exact: HashMap<String, Vec<usize>>,
    /// PathPrefix matches by their prefix without the trailing '/' ("" for "/"). A request
    /// path can only match the prefixes that end where one of its elements ends, so a lookup
    /// probes one bucket per path element.
    prefix: HashMap<String, Vec<usize>>,
    /// Regular expressions (and the VirtualService path matches the buckets above cannot
    /// key: plain string prefixes, case-insensitive paths) can match any path, so they are
    /// always tried.
    regex: Vec<usize>,
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
    /// The route the rule belongs to, for its id in logs, metrics and status.
    pub route: &'a CompiledRoute,
    /// The rule whose filters and backends handle the request.
    pub rule: &'a Rule,
    /// The match of the rule that selected the request: ReplacePrefixMatch replaces its path.
    pub request_match: &'a RequestMatch,
}

impl RouteTable {
    /// Orders every match of every rule of `routes` by Gateway API precedence and indexes
    /// them by path, once per snapshot so that [`RouteTable::find`] does no sorting.
    pub fn new(routes: Vec<Arc<CompiledRoute>>) -> Self {
        Self::build(routes, true)
    }

    /// A table whose rules are tried in the order written, route by route, rule by rule: a
    /// VirtualService's `http[]` list, where the first rule that matches wins (Istio's order,
    /// not Gateway API precedence).
    pub fn in_written_order(routes: Vec<Arc<CompiledRoute>>) -> Self {
        Self::build(routes, false)
    }

    fn build(routes: Vec<Arc<CompiledRoute>>, by_precedence: bool) -> Self {
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
        if by_precedence {
            keyed.sort_by(|a, b| a.0.cmp(&b.0));
        }
        let candidates: Vec<Candidate> = keyed.into_iter().map(|(_, c)| c).collect();
        let mut index = PathIndex::default();
        for (position, c) in candidates.iter().enumerate() {
            match &routes[c.route].rules[c.rule].matches[c.request_match].path {
                PathMatch::Exact(path) => index.exact.entry(path.clone()).or_default(),
                PathMatch::Prefix { trimmed, .. } => {
                    index.prefix.entry(trimmed.clone()).or_default()
                }
                PathMatch::RegularExpression(_)
                | PathMatch::StringPrefix { .. }
                | PathMatch::ExactIgnoreCase(_) => &mut index.regex,
            }
            .push(position);
        }
        Self {
            routes,
            candidates,
            index,
        }
    }

    /// Whether no route is attached, as opposed to routes that merely match nothing.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// The routes as given to [`RouteTable::new`], for config dumps.
    pub fn routes(&self) -> &[Arc<CompiledRoute>] {
        &self.routes
    }

    /// The highest-precedence matching rule, or None (the proxy answers 404).
    ///
    /// Each bucket of the index that the path can fall in yields its best matching candidate;
    /// the best of those is the answer, exactly as a walk of all candidates in precedence order
    /// would find it.
    pub fn find(&self, req: &RequestView<'_>) -> Option<RouteMatch<'_>> {
        let path = req.path;
        // Every element boundary of the path: "" (the prefix "/"), "/a", "/a/b", ..., and the
        // whole path.
        let element_prefixes = path
            .match_indices('/')
            .map(|(i, _)| &path[..i])
            .chain(std::iter::once(path));
        let buckets = self
            .index
            .exact
            .get(path)
            .into_iter()
            .chain(element_prefixes.filter_map(|p| self.index.prefix.get(p)))
            .chain(std::iter::once(&self.index.regex));
        let mut best: Option<usize> = None;
        for bucket in buckets {
            // Buckets are sorted, so nothing after a position worse than the best can win.
            let found = bucket
                .iter()
                .take_while(|&&position| best.is_none_or(|b| position < b))
                .find(|&&position| self.candidate_matches(position, req));
            if let Some(&position) = found {
                best = Some(position);
            }
        }
        best.map(|position| self.route_match(position))
    }

    fn candidate_matches(&self, position: usize, req: &RequestView<'_>) -> bool {
        self.route_match(position).request_match.matches(req)
    }

    fn route_match(&self, position: usize) -> RouteMatch<'_> {
        let c = &self.candidates[position];
        let route = &self.routes[c.route];
        let rule = &route.rules[c.rule];
        RouteMatch {
            route,
            rule,
            request_match: &rule.matches[c.request_match],
        }
    }

    /// `find` without the index: the walk of every candidate that defines the answer.
    #[cfg(test)]
    fn find_linear(&self, req: &RequestView<'_>) -> Option<RouteMatch<'_>> {
        (0..self.candidates.len())
            .find(|&position| self.candidate_matches(position, req))
            .map(|position| self.route_match(position))
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

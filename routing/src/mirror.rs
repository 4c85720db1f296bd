//! RequestMirror: a copy of a share of the requests goes to another backend, whose answers are
//! ignored.

use gateway_api::experimental::httproutes::HttpRouteRulesFiltersRequestMirror;

use crate::backend::{compile_mirror_backend_ref, BackendLookup, BackendTarget};
use crate::issue::{Issue, IssueReason};

/// A compiled RequestMirror filter.
#[derive(Clone, Debug, PartialEq)]
pub struct Mirror {
    /// Where copies go; [`BackendTarget::Invalid`] when the backendRef cannot be resolved, in
    /// which case nothing is mirrored and the original request is unaffected.
    pub target: BackendTarget,
    /// Share of requests mirrored, 0 to 100.
    pub percent: f64,
}

impl Mirror {
    /// Whether this request is mirrored. `random` is any uniformly random u32 supplied by the
    /// caller (keeps this crate pure).
    pub fn samples(&self, random: u32) -> bool {
        f64::from(random) < self.percent / 100.0 * (f64::from(u32::MAX) + 1.0)
    }

    /// Compiles the `requestMirror` field at `field` of a route in `route_namespace`.
    pub(crate) fn compile(
        spec: &HttpRouteRulesFiltersRequestMirror,
        field: &str,
        route_namespace: &str,
        lookup: &dyn BackendLookup,
        issues: &mut Vec<Issue>,
    ) -> Self {
        let target = compile_mirror_backend_ref(
            &spec.backend_ref,
            &format!("{field}.backendRef"),
            route_namespace,
            lookup,
            issues,
        );
        let percent = match (spec.percent, &spec.fraction) {
            (Some(_), Some(_)) => {
                issues.push(Issue::error(
                    IssueReason::Invalid,
                    field.to_owned(),
                    "only one of percent and fraction may be set; using percent",
                ));
                spec.percent.map(f64::from)
            }
            (Some(p), None) => Some(f64::from(p)),
            (None, Some(fraction)) => {
                let denominator = fraction.denominator.unwrap_or(100);
                if denominator <= 0 || fraction.numerator < 0 || fraction.numerator > denominator {
                    issues.push(Issue::error(
                        IssueReason::Invalid,
                        format!("{field}.fraction"),
                        format!(
                            "fraction {}/{denominator} must have 0 <= numerator <= denominator \
                             and a positive denominator; nothing is mirrored",
                            fraction.numerator
                        ),
                    ));
                    Some(0.0)
                } else {
                    Some(f64::from(fraction.numerator) * 100.0 / f64::from(denominator))
                }
            }
            (None, None) => None,
        };
        let percent = match percent {
            None => 100.0,
            Some(p) if (0.0..=100.0).contains(&p) => p,
            Some(p) => {
                let clamped = p.clamp(0.0, 100.0);
                issues.push(Issue::error(
                    IssueReason::Invalid,
                    format!("{field}.percent"),
                    format!("percent {p} is out of range 0-100; using {clamped}"),
                ));
                clamped
            }
        };
        Self { target, percent }
    }
}

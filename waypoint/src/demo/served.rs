//! Requests each demo pod received, counted by the backends and read by the traffic summary.
//!
//! A client cannot see retries or outlier ejections, but the pods can: a retry is one more
//! request at some pod of a service than the client sent to it, and an ejected pod is one that
//! stops receiving any while its siblings still do.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::report::LabelReport;

/// One demo pod, as the summary names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodId {
    /// `namespace/service`: the service the pod plays (its `app` label).
    pub service: String,
    /// The pod's name.
    pub pod: String,
}

/// A shared, cheap-to-clone view of every demo pod's request counter.
#[derive(Debug, Clone, Default)]
pub struct Served {
    pods: Arc<Vec<(PodId, Arc<AtomicU64>)>>,
}

impl Served {
    /// Counters for `pods`, all at zero; the second item of each pair is the one the pod's
    /// backend increments.
    pub(super) fn new(pods: impl IntoIterator<Item = PodId>) -> (Self, Vec<Arc<AtomicU64>>) {
        let pods: Vec<(PodId, Arc<AtomicU64>)> = pods
            .into_iter()
            .map(|id| (id, Arc::new(AtomicU64::new(0))))
            .collect();
        let counters = pods.iter().map(|(_, c)| c.clone()).collect();
        (
            Self {
                pods: Arc::new(pods),
            },
            counters,
        )
    }

    /// The pods, in the order of [`Served::counts`].
    pub fn pods(&self) -> impl Iterator<Item = &PodId> {
        self.pods.iter().map(|(id, _)| id)
    }

    /// Requests each pod has received so far (a request counts when it arrives, whatever the
    /// answer), in the order of [`Served::pods`].
    pub fn counts(&self) -> Vec<u64> {
        self.pods
            .iter()
            .map(|(_, count)| count.load(Ordering::Relaxed))
            .collect()
    }
}

/// The pods' counts per summary label, for the last second and since the run started.
#[derive(Debug)]
pub(super) struct PodTally {
    served: Option<Served>,
    /// Per label, the indices in `served` of the pods of its service.
    label_pods: Vec<Vec<usize>>,
    /// The counts when the run started, and at the last second.
    baseline: Vec<u64>,
    previous: Vec<u64>,
}

impl PodTally {
    /// A tally for labels whose services are `label_services` (`namespace/service`, as
    /// [`PodId::service`]), starting from the counts now.
    pub(super) fn new(served: Option<Served>, label_services: &[Option<String>]) -> Self {
        let label_pods = label_services
            .iter()
            .map(|service| match (&served, service) {
                (Some(served), Some(service)) => served
                    .pods()
                    .enumerate()
                    .filter(|(_, id)| id.service == *service)
                    .map(|(i, _)| i)
                    .collect(),
                _ => Vec::new(),
            })
            .collect();
        let baseline = served.as_ref().map(Served::counts).unwrap_or_default();
        Self {
            previous: baseline.clone(),
            baseline,
            label_pods,
            served,
        }
    }

    /// Sets each label's pod counts: the second's in `window`, the run's in `cumulative`, which
    /// also notes the pods that went idle (ejections).
    pub(super) fn second(&mut self, window: &mut [LabelReport], cumulative: &mut [LabelReport]) {
        let Some(now) = self.served.as_ref().map(Served::counts) else {
            return;
        };
        for ((pods, last), all) in self.label_pods.iter().zip(window).zip(&mut *cumulative) {
            last.pods = self.counts(pods, &now, &self.previous);
            all.pods = self.counts(pods, &now, &self.baseline);
            all.observe_second(last);
        }
        self.previous = now;
    }

    /// Sets each label's pod counts since the run started.
    pub(super) fn total(&self, cumulative: &mut [LabelReport]) {
        let Some(now) = self.served.as_ref().map(Served::counts) else {
            return;
        };
        for (pods, all) in self.label_pods.iter().zip(cumulative) {
            all.pods = self.counts(pods, &now, &self.baseline);
        }
    }

    /// `(pod name, now − since)` for the pods at `indices`.
    fn counts(&self, indices: &[usize], now: &[u64], since: &[u64]) -> Vec<(String, u64)> {
        let Some(served) = &self.served else {
            return Vec::new();
        };
        indices
            .iter()
            .map(|&i| {
                (
                    served.pods[i].0.pod.clone(),
                    now[i].saturating_sub(since[i]),
                )
            })
            .collect()
    }
}

//! A fleet too large for one invocation: the clusters that need a look are handed on, one
//! event or queue message each, most urgent first; during a root rotation every cluster is
//! judged here first, so the rotation's gate can read the whole inventory back.

use std::time::Instant;

use futures::StreamExt;
use meshca_core::{KindSpec, Outcome, ReconcileRequest, Step, Verdict};
use tracing::info;

use super::listing::{Listed, Named};
use super::triage::Look;
use super::{Candidate, Found, Sweep, SweepReport, not_active};
use crate::Report;

impl<'a> Sweep<'a> {
    /// A fleet too large for one invocation, outside a rotation: the clusters that need a look
    /// are handed on as listed. The worker that takes each one describes, judges and reconciles
    /// it, so the sweep spends no call per cluster on it and the first certificate is issued
    /// while the rest is still being handed on. Only names ListClusters gave (no tag inventory)
    /// are described here, to know which are opted in and active. If no more than the threshold
    /// are left, they are reconciled here.
    pub(super) async fn hand_on(
        &self,
        listed: Vec<Listed<'a>>,
        started: Instant,
        deadline: Instant,
        out: &mut SweepReport,
    ) {
        let mut looks = Vec::new();
        for Listed {
            place,
            ports,
            names,
            by_tag,
        } in listed
        {
            if by_tag {
                looks.extend(names.into_iter().map(|look| Named { place, ports, look }));
                continue;
            }
            for cluster in self
                .describe_all(place, ports, names.into_iter().map(|n| n.name).collect())
                .await
            {
                match not_active(&cluster) {
                    None => looks.push(Named {
                        place,
                        ports,
                        look: Look::unknown(cluster.name),
                    }),
                    Some(skipped) => {
                        out.checked += 1;
                        out.record(Report::at(&cluster.name, place, skipped));
                    }
                }
            }
        }
        out.assessed_ms = started.elapsed().as_millis() as u64;
        if looks.len() <= self.app.config.fanout_threshold {
            return self.stream(looks, started, deadline, out).await;
        }
        out.checked += looks.len();
        looks.sort_by(|a, b| {
            a.look
                .urgency()
                .cmp(&b.look.urgency())
                .then_with(|| (a.place, &a.look.name).cmp(&(b.place, &b.look.name)))
        });
        self.fan_out(looks, out).await;
        self.summarise_kept(deadline).await;
    }

    /// A fleet too large for one invocation during a root rotation: every cluster described
    /// and judged from escrow here (the rotation's gate reads the whole inventory back after the
    /// sweep), most urgent first, then handed on — or, if fewer are opted in than the
    /// threshold, reconciled here.
    pub(super) async fn two_phase(
        &self,
        listed: Vec<Listed<'a>>,
        started: Instant,
        deadline: Instant,
        out: &mut SweepReport,
    ) {
        let kept = out.checked;
        let candidates = self.assess_fleet(listed, out).await;
        let described = out.checked - kept;
        out.assessed_ms = started.elapsed().as_millis() as u64;
        let (ready, not_ready): (Vec<_>, Vec<_>) =
            candidates.into_iter().partition(|c| c.assessed.is_ok());
        for c in &not_ready {
            if let Err(outcome) = &c.assessed {
                out.record(c.report(outcome.clone()));
            }
        }
        if described <= self.app.config.fanout_threshold {
            return self.reconcile_inline(ready, deadline, out).await;
        }
        // One request per cluster: the worker reconciles every kind of it.
        let mut seen = std::collections::BTreeSet::new();
        let looks = ready
            .into_iter()
            .filter(|c| seen.insert((c.place, c.cluster.name.clone())))
            .map(|c| Named {
                place: c.place,
                ports: c.ports,
                look: Look {
                    ends: c.assessed.as_ref().ok().and_then(Verdict::not_after),
                    name: c.cluster.name,
                },
            })
            .collect();
        self.fan_out(looks, out).await;
    }

    /// Every opted-in cluster with escrow's verdict, most urgent first.
    pub(super) async fn assess_fleet(
        &self,
        listed: Vec<Listed<'a>>,
        out: &mut SweepReport,
    ) -> Vec<Candidate<'a>> {
        let mut found = Vec::new();
        for Listed {
            place,
            ports,
            names,
            ..
        } in listed
        {
            let names = names.into_iter().map(|n| n.name).collect();
            found.extend(
                self.describe_all(place, ports, names)
                    .await
                    .into_iter()
                    .map(|cluster| (place, ports, cluster)),
            );
        }
        out.checked += found.len();
        out.inventory
            .extend(found.iter().map(|(place, _, cluster)| Found {
                place: (*place).clone(),
                cluster: cluster.clone(),
            }));
        // One candidate per kind of each cluster (a tag naming an unknown kind: one, skipped).
        let per_kind = found.into_iter().flat_map(|(place, ports, cluster)| {
            match self.app.config.kinds.for_tags(&cluster.tags) {
                Ok(kinds) => kinds
                    .into_iter()
                    .map(|spec| (place, ports, cluster.clone(), spec, None))
                    .collect::<Vec<_>>(),
                Err(reason) => vec![(
                    place,
                    ports,
                    cluster,
                    KindSpec::default(),
                    Some(Outcome::Skipped { reason }),
                )],
            }
        });
        let mut candidates: Vec<Candidate<'_>> = futures::stream::iter(per_kind)
            .map(|(place, ports, cluster, spec, stop)| async move {
                let assessed = match stop {
                    Some(outcome) => Err(outcome),
                    None => self.assess(place, ports, &cluster, &spec).await,
                };
                Candidate {
                    place,
                    ports,
                    cluster,
                    spec,
                    assessed,
                }
            })
            .buffer_unordered(self.app.config.sweep_concurrency)
            .collect()
            .await;
        candidates.sort_by(|a, b| {
            a.urgency()
                .cmp(&b.urgency())
                .then_with(|| (&a.cluster.name, a.spec.kind).cmp(&(&b.cluster.name, b.spec.kind)))
        });
        let due = candidates
            .iter()
            .filter(|c| matches!(c.assessed, Ok(Verdict::Renew { .. })))
            .count();
        info!(
            checked = out.checked,
            due, "sweep assessed the fleet from escrow"
        );
        candidates
    }

    /// Hands every cluster in `looks` on (the event bus or the work queue), in that order.
    pub(super) async fn fan_out(&self, looks: Vec<Named<'_>>, out: &mut SweepReport) {
        let requests: Vec<ReconcileRequest> = looks
            .iter()
            .map(|Named { place, look, .. }| ReconcileRequest {
                cluster: look.name.clone(),
                region: Some(place.region.clone()),
                account: place.account.member().map(|a| a.to_string()),
                force: false,
            })
            .collect();
        let fan_out = &self.app.fleet.fan_out;
        for (Named { place, look, .. }, sent) in looks.iter().zip(fan_out.send(&requests).await) {
            let report = |outcome| Report::at(&look.name, place, outcome);
            if let Some(end) = look.ends {
                out.saw_expiry(
                    &report(Outcome::Skipped {
                        reason: String::new(),
                    }),
                    end,
                );
            }
            match sent {
                Ok(()) => out.fanned_out += 1,
                Err(error) => out.record(report(Outcome::Failed {
                    step: Step::FanOut,
                    error,
                })),
            }
        }
        info!(fanned_out = out.fanned_out, to = %fan_out.destination(), "sweep handed clusters on");
    }
}

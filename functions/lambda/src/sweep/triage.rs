//! Escrow's summaries as the sweep's first look: a cluster whose every kind they keep is
//! reported unchanged with no call about it, except in its turn to be read back; the rest
//! go on to the full look, most urgent first.

use std::collections::BTreeMap;
use std::time::Instant;

use futures::StreamExt;
use meshca_core::clusters::Tagged;
use meshca_core::escrow::{EscrowKey, Summary};
use meshca_core::{ClusterName, Kind, KindSpec, Outcome, Place, Verdict};
use meshca_wiring::RegionPorts;
use time::OffsetDateTime;
use tracing::{info, warn};

use super::{DESCRIBE_CONCURRENCY, MARGIN, Sweep, SweepReport};
use crate::Report;

/// What escrow's summaries say of a listed cluster: every kind kept (with its summary and
/// unchanged report), kept but in its turn to be read back, or not known to be healthy.
pub(super) enum Kept {
    Yes(Vec<(KindSpec, Summary, Report)>),
    InItsTurn(Vec<(KindSpec, Summary, Report)>),
    No,
}

/// Every record escrow lists, with its summary where it has one.
pub(super) type Summaries = BTreeMap<EscrowKey, Option<Summary>>;

/// A cluster the sweep has to look at, with the end of its escrowed bundle where a summary
/// tells it (what orders a fan-out, most urgent first).
pub(super) struct Look {
    pub(super) name: String,
    pub(super) ends: Option<OffsetDateTime>,
}

impl Look {
    pub(super) fn unknown(name: String) -> Self {
        Look { name, ends: None }
    }

    /// No bundle known first (a new cluster), then the earliest end.
    pub(super) fn urgency(&self) -> (bool, Option<OffsetDateTime>) {
        (self.ends.is_some(), self.ends)
    }
}

impl Sweep<'_> {
    /// The names among `tagged` that need a closer look; the others, kept by escrow's
    /// summaries (and, in their turn, found in the cluster as summarised), are recorded as
    /// unchanged.
    pub(super) async fn triage(
        &self,
        place: &Place,
        ports: &RegionPorts,
        tagged: Vec<Tagged>,
        out: &mut SweepReport,
    ) -> Vec<Look> {
        let summaries = if self.thorough {
            BTreeMap::new()
        } else {
            ports.escrow.summaries().await.unwrap_or_else(|e| {
                warn!(place = %place, error = %e, "cannot list escrow summaries; reading each record");
                BTreeMap::new()
            })
        };
        let now = OffsetDateTime::now_utc();
        let before = out.checked;
        let (mut look, mut checks) = (Vec::new(), Vec::new());
        for cluster in tagged {
            match self.kept(place, &cluster, &summaries, now).await {
                Kept::Yes(reports) => {
                    out.checked += 1;
                    reports.into_iter().for_each(|(_, _, r)| out.record(r));
                }
                Kept::InItsTurn(reports) => checks.push((cluster, reports)),
                Kept::No => look.push(self.look(&cluster, &summaries)),
            }
        }
        let checked: Vec<_> = futures::stream::iter(checks)
            .map(|(cluster, kinds)| async move {
                (
                    self.read_back(place, ports, &cluster.name, &kinds, now)
                        .await,
                    cluster,
                    kinds,
                )
            })
            .buffer_unordered(DESCRIBE_CONCURRENCY)
            .collect()
            .await;
        for (as_summarised, cluster, kinds) in checked {
            if as_summarised {
                out.checked += 1;
                kinds.into_iter().for_each(|(_, _, r)| out.record(r));
            } else {
                look.push(self.look(&cluster, &summaries));
            }
        }
        info!(place = %place, kept = out.checked - before, look = look.len(), "sweep listed clusters by tag");
        look
    }

    /// `cluster` to be looked at, with the earliest end its summaries know of.
    pub(super) fn look(&self, cluster: &Tagged, summaries: &Summaries) -> Look {
        let ends = match (
            cluster.name.parse::<ClusterName>(),
            self.app.config.kinds.for_tags(&cluster.tags),
        ) {
            (Ok(name), Ok(specs)) => specs
                .iter()
                .filter_map(|s| {
                    summaries
                        .get(&EscrowKey::new(name.clone(), s.kind))?
                        .as_ref()
                        .map(|s| s.not_after)
                })
                .min(),
            _ => None,
        };
        Look {
            name: cluster.name.clone(),
            ends,
        }
    }

    /// Whether this sweep reads `name`'s secrets back (see [`is_turn`]).
    pub(super) fn verifies(&self, place: &Place, name: &str) -> bool {
        let now = OffsetDateTime::now_utc().unix_timestamp().max(0) as u64;
        let c = &self.app.config;
        is_turn(
            &format!("{place}/{name}"),
            now,
            c.sweep_period.as_secs(),
            c.verify_every,
        )
    }

    /// Whether escrow's summaries keep every kind of `cluster`, with the unchanged reports.
    pub(super) async fn kept(
        &self,
        place: &Place,
        cluster: &Tagged,
        summaries: &Summaries,
        now: OffsetDateTime,
    ) -> Kept {
        let (Ok(name), Ok(specs)) = (
            cluster.name.parse::<ClusterName>(),
            self.app.config.kinds.for_tags(&cluster.tags),
        ) else {
            return Kept::No;
        };
        let mut kinds = Vec::new();
        for spec in specs {
            let key = EscrowKey::new(name.clone(), spec.kind);
            let summary = match summaries.get(&key) {
                Some(Some(summary)) => summary,
                // A record kept before summaries: summarised when the full look keeps it.
                Some(None) => {
                    self.unsummarised
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert((place.clone(), key));
                    return Kept::No;
                }
                None => return Kept::No,
            };
            let Ok(info) = self.authority_for(spec.kind).describe().await else {
                return Kept::No;
            };
            let Some(Verdict::Keep {
                not_after,
                renew_at,
            }) = summary.keeps(&info, &self.app.config.settings.renewal, now)
            else {
                return Kept::No;
            };
            let mut report = Report::at(
                &cluster.name,
                place,
                Outcome::Unchanged {
                    generation: summary.generation,
                    not_after,
                    renew_at,
                },
            );
            report.kind = (spec.kind != Kind::IstioCacerts).then_some(spec.kind);
            kinds.push((spec, summary.clone(), report));
        }
        if self.verifies(place, &cluster.name) {
            Kept::InItsTurn(kinds)
        } else {
            Kept::Yes(kinds)
        }
    }

    /// A cluster's turn: one DescribeCluster and one read of each kind's secret, held against
    /// the summaries — no escrow read. `false` (drifted, unreachable, not active) sends it to
    /// the full look, which repairs what it can and reports the rest.
    pub(super) async fn read_back(
        &self,
        place: &Place,
        ports: &RegionPorts,
        name: &str,
        kinds: &[(KindSpec, Summary, Report)],
        now: OffsetDateTime,
    ) -> bool {
        let described = ports.clusters.describe(name).await;
        let (Some(info), Ok(cluster)) = (
            self.opted_in(place, name, described),
            name.parse::<ClusterName>(),
        ) else {
            return false;
        };
        if !info.is_active() {
            return false;
        }
        for (spec, summary, _) in kinds {
            let settings = self.app.settings_for(spec.clone());
            let Ok(delivery) = ports
                .clusters
                .connect(&info, self.app.options(&settings, &cluster))
            else {
                return false;
            };
            let Ok(observed) = delivery.observe().await else {
                return false;
            };
            if !summary.delivered_in(&observed, &settings.delivery_profile(&cluster), now) {
                return false;
            }
        }
        true
    }

    /// Records older than summaries, just handed on: the worker finds a healthy one unchanged
    /// and writes no summary, so without one written here the cluster would be handed on at
    /// every sweep until its next renewal. Each record escrow keeps (not due, same CA and root,
    /// nothing pending) gets its summary now; a due one gets it when it is promoted. Only kept
    /// records are tagged, so no worker is promoting the same record meanwhile.
    pub(super) async fn summarise_kept(&self, deadline: Instant) {
        let records =
            std::mem::take(&mut *self.unsummarised.lock().unwrap_or_else(|p| p.into_inner()));
        let now = OffsetDateTime::now_utc();
        futures::stream::iter(records)
            .for_each_concurrent(DESCRIBE_CONCURRENCY, |(place, key)| async move {
                let Some((_, ports)) = self.app.fleet.places.iter().find(|(p, _)| **p == place) else { return };
                if Instant::now() + MARGIN > deadline || !self.escrow_keeps(ports, &key, now).await {
                    return;
                }
                if let Err(e) = ports.escrow.summarise(&key).await {
                    warn!(place = %place, record = %key, error = %e, "cannot write the escrow summary; the next sweep tries again");
                }
            })
            .await;
    }

    /// Whether escrow alone keeps `key`'s record (what its summary would say).
    pub(super) async fn escrow_keeps(
        &self,
        ports: &RegionPorts,
        key: &EscrowKey,
        now: OffsetDateTime,
    ) -> bool {
        let (Ok(escrowed), Ok(info)) = (
            ports.escrow.load(key).await,
            self.authority_for(key.kind).describe().await,
        ) else {
            return false;
        };
        let Some(mut summary) = escrowed.current.as_ref().and_then(Summary::of) else {
            return false;
        };
        summary.pending = escrowed.pending.is_some();
        matches!(
            summary.keeps(&info, &self.app.config.settings.renewal, now),
            Some(Verdict::Keep { .. })
        )
    }
}

/// FNV-1a, 64 bits: a hash that is the same in every process and release (std's is seeded).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Whether the sweep at `now` (unix seconds) is the turn of the cluster named `key` to be read
/// back: one sweep in `every` on a schedule of `period` seconds (1: each sweep; 0: never — due
/// clusters and records without a summary are still looked at), chosen by a stable hash.
pub fn is_turn(key: &str, now: u64, period: u64, every: u32) -> bool {
    let every = u64::from(every);
    if every <= 1 {
        return every == 1;
    }
    // Rounded to the nearest tick: a schedule fires a little after its time, never before.
    let period = period.max(1);
    let sweep_number = (now + period / 2) / period;
    fnv1a(key.as_bytes()) % every == sweep_number % every
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hand_on_puts_clusters_without_a_bundle_first_then_the_earliest_end() {
        let day = |d: i64| Some(OffsetDateTime::UNIX_EPOCH + time::Duration::days(d));
        let mut looks = [
            Look {
                name: "late".into(),
                ends: day(30),
            },
            Look::unknown("new".into()),
            Look {
                name: "soon".into(),
                ends: day(2),
            },
            Look {
                name: "expired".into(),
                ends: day(-1),
            },
        ];
        looks.sort_by_key(Look::urgency);
        let order: Vec<&str> = looks.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(order, ["new", "expired", "soon", "late"]);
    }

    #[test]
    fn every_cluster_has_exactly_one_turn_in_every_run_of_sweeps() {
        let (period, every) = (3600, 24);
        for i in 0..200 {
            let key = format!("111122223333/eu-west-1/cluster-{i}");
            // 24 consecutive hourly sweeps, each fired up to 20 minutes late.
            let turns = (0..24u64)
                .filter(|h| {
                    is_turn(
                        &key,
                        1_800_000_000 + h * period + (h * 50) % 1200,
                        period,
                        every,
                    )
                })
                .count();
            assert_eq!(turns, 1, "{key}");
        }
        assert!(is_turn("any", 1, 3600, 1));
        assert!(!is_turn("any", 1, 3600, 0));
    }
}

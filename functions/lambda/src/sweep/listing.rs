//! Where the sweep finds clusters: by the opt-in tag where the account allows it, else by
//! listing and describing each.

use futures::StreamExt;
use meshca_core::Place;
use meshca_core::clusters::{ClusterInfo, ClustersError};
use meshca_wiring::RegionPorts;
use tracing::warn;

use super::triage::Look;
use super::{DESCRIBE_CONCURRENCY, Sweep, SweepReport};

/// One managed place and the names of its clusters that need a look, as listed.
pub(super) struct Listed<'a> {
    pub(super) place: &'a Place,
    pub(super) ports: &'a RegionPorts,
    pub(super) names: Vec<Look>,
    /// Listed by the opt-in tag: every name is opted in (ListClusters names are not known to be
    /// until described).
    pub(super) by_tag: bool,
}

/// A cluster that needs a look, and where it was listed.
pub(super) struct Named<'a> {
    pub(super) place: &'a Place,
    pub(super) ports: &'a RegionPorts,
    pub(super) look: Look,
}

impl<'a> Sweep<'a> {
    /// The cluster names of every managed place that need a closer look. Where clusters are
    /// listed by tag, those escrow's summaries keep are reported here, unchanged, with no call
    /// about them. A place that cannot be listed (a member role that cannot be assumed, say)
    /// fails alone, named in the report.
    pub(super) async fn list(&self, out: &mut SweepReport) -> Vec<Listed<'a>> {
        let mut listed = Vec::new();
        for (place, ports) in &self.app.fleet.places {
            let tagged = match ports.clusters.tagged(&self.app.config.opt_in).await {
                Ok(tagged) => tagged,
                Err(e) => {
                    warn!(place = %place, error = %e, "cannot list clusters by tag; describing each");
                    None
                }
            };
            let names = match tagged {
                Some(tagged) => Ok((self.triage(place, ports, tagged, out).await, true)),
                None => ports
                    .clusters
                    .list()
                    .await
                    .map(|names| (names.into_iter().map(Look::unknown).collect(), false)),
            };
            match names {
                Ok((names, by_tag)) => listed.push(Listed {
                    place,
                    ports,
                    names,
                    by_tag,
                }),
                Err(e) => {
                    warn!(place = %place, error = %e, "cannot list clusters");
                    out.errors.push(format!("{place}: {e}"));
                }
            }
        }
        listed
    }

    /// The opted-in clusters among `names` of one place (ListClusters has no tag filter: each
    /// is described).
    pub(super) async fn describe_all(
        &self,
        place: &Place,
        ports: &RegionPorts,
        names: Vec<String>,
    ) -> Vec<ClusterInfo> {
        let described: Vec<_> = futures::stream::iter(names)
            .map(|name| async move { (ports.clusters.describe(&name).await, name) })
            .buffered(DESCRIBE_CONCURRENCY)
            .collect()
            .await;
        described
            .into_iter()
            .filter_map(|(result, name)| self.opted_in(place, &name, result))
            .collect()
    }

    /// The described cluster if it is opted in; a cluster that could not be described is logged
    /// (the next sweep looks again), one deleted meanwhile passed over.
    pub(super) fn opted_in(
        &self,
        place: &Place,
        name: &str,
        described: Result<ClusterInfo, ClustersError>,
    ) -> Option<ClusterInfo> {
        match described {
            Ok(c) if self.app.config.opt_in.admits(&c.tags) => Some(c),
            Ok(_) | Err(ClustersError::NotFound(_)) => None,
            Err(e) => {
                warn!(place = %place, cluster = %name, error = %e, "cannot describe cluster");
                None
            }
        }
    }
}

/// Every listed name with its place, in listing order.
pub(super) fn flatten(listed: Vec<Listed<'_>>) -> Vec<Named<'_>> {
    listed
        .into_iter()
        .flat_map(|l| {
            l.names.into_iter().map(move |look| Named {
                place: l.place,
                ports: l.ports,
                look,
            })
        })
        .collect()
}

//! The ledger of a record's earlier generations: every certificate meshca was issued for a
//! cluster and kind stays valid until it expires, long after a renewal put a newer one in
//! service, and the workloads it signed keep presenting it until their leaves rotate. A
//! compromised cluster's earlier intermediates lived on the same machines as the current one,
//! so revoking the cluster revokes them too: the ledger is how meshca still knows them.

use time::OffsetDateTime;

/// One certificate issued for a record, kept after a newer generation replaced it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Issuance {
    /// Its generation.
    pub generation: u64,
    /// The authority that issued it; `None`: the record's own (the usual case, kept short so a
    /// long ledger fits the record).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authority_id: Option<String>,
    /// The authority's id of it (a Private CA certificate ARN, …).
    pub certificate_id: String,
    /// Its serial, hex.
    pub serial: String,
    /// When it expires: past that, it leaves the ledger.
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
    /// Revoked at its authority on meshca's word.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub revoked: bool,
    /// Its intermediate's own CRL, kept for the fleet's `ca-crl.pem` while it is valid (its key
    /// is gone with the generation, so it cannot be signed again).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub own_crl: Option<String>,
}

impl Issuance {
    /// Still valid at `now` and not revoked: something a revocation must reach.
    pub fn live(&self, now: OffsetDateTime) -> bool {
        !self.revoked && self.not_after > now
    }

    /// The authority that issued it, in a record of `record_authority`.
    pub fn authority<'a>(&'a self, record_authority: &'a str) -> &'a str {
        self.authority_id.as_deref().unwrap_or(record_authority)
    }
}

/// How many earlier generations a record keeps. Intermediates are renewed well before they
/// expire, so a handful are ever valid at once; a cap keeps a record of forced re-issues
/// within a Secrets Manager version (64 KiB), and what falls out is reported as unknown.
pub const MAX_SUPERSEDED: usize = 16;

/// How many of the newest earlier generations keep their own CRL. A replaced intermediate
/// signs no new leaves: its CRL matters only until the leaves it signed expire (Istio's
/// workload certificates live a day by default), and renewals come months apart. Three cover
/// forced re-issues in quick succession and keep a record of RSA-4096 CRLs within a version.
pub const OWN_CRLS_KEPT: usize = 3;

/// The ledger a record carries into its next generation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ledger {
    /// Earlier generations, oldest first.
    pub superseded: Vec<Issuance>,
    /// The first generation the ledger knows; `None`: a record made before meshca kept one.
    pub from: Option<u64>,
}

impl Ledger {
    /// What a record hands on to its next generation: its ledger (`superseded`, known `from`)
    /// and its own certificate (`own`), each entry naming its authority outright, so a record
    /// of another authority keeps knowing whose it was.
    pub fn handed_on(
        superseded: &[Issuance],
        from: Option<u64>,
        own: Issuance,
        record_authority: &str,
    ) -> Self {
        let mut superseded: Vec<Issuance> = superseded
            .iter()
            .map(|e| Issuance {
                authority_id: Some(e.authority(record_authority).to_string()),
                ..e.clone()
            })
            .collect();
        let from = Some(from.unwrap_or(own.generation));
        superseded.push(own);
        Ledger { superseded, from }
    }

    /// The ledger of `generation` of `authority_id` promoted at `now`: entries that expired
    /// are dropped, and the oldest beyond [`MAX_SUPERSEDED`] (the ledger then knows only from
    /// the oldest it keeps).
    pub fn kept(mut self, generation: u64, authority_id: &str, now: OffsetDateTime) -> Self {
        self.superseded
            .retain(|e| e.not_after > now && e.generation < generation);
        let over = self.superseded.len().saturating_sub(MAX_SUPERSEDED);
        let from = self.from.unwrap_or(generation);
        self.from = Some(match self.superseded.drain(..over).next_back() {
            Some(dropped) => from.max(dropped.generation + 1),
            None => from,
        });
        for e in &mut self.superseded {
            if e.authority_id.as_deref() == Some(authority_id) {
                e.authority_id = None;
            }
        }
        let older = self.superseded.len().saturating_sub(OWN_CRLS_KEPT);
        for e in &mut self.superseded[..older] {
            e.own_crl = None;
        }
        self
    }
}

/// How the line about generations the ledger does not know begins.
pub const BEFORE_LEDGER: &str = "generations 1 to ";

/// What a revocation cannot reach from a ledger (`superseded`, known `from`, of a record of
/// `record_authority`), said plainly: generations issued before the ledger was kept or that left
/// it, and entries of another authority.
pub fn unknown(
    superseded: &[Issuance],
    from: u64,
    record_authority: &str,
    now: OffsetDateTime,
) -> Vec<String> {
    let mut said = Vec::new();
    if from > 1 {
        said.push(format!(
            "{BEFORE_LEDGER}{} were issued before meshca kept a ledger, or left it (it keeps the {MAX_SUPERSEDED} newest): any still valid is not revoked. A revocation searches the authority for them by the certificate's subject when it names the cluster: the local CA's issued/, Vault's certs/, a Private CA's audit report (in CRL mode)",
            from - 1
        ));
    }
    for e in superseded
        .iter()
        .filter(|e| e.live(now) && e.authority(record_authority) != record_authority)
    {
        said.push(format!(
            "generation {} (serial {}) was issued by {}, not by the authority in force: revoke it there",
            e.generation,
            e.serial,
            e.authority(record_authority)
        ));
    }
    said
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::escrow::{Current, GenerationToken, SCHEMA};
    use crate::{Bundle, BundleMeta, ClusterName, Kind};
    use time::Duration;

    fn record(generation: u64, authority: &str, not_after: OffsetDateTime) -> Current {
        let cluster: ClusterName = "x".parse().unwrap();
        Current {
            schema: SCHEMA,
            cluster: cluster.clone(),
            kind: Kind::IstioCacerts,
            token: GenerationToken::derive(authority, &cluster, generation),
            authority_id: authority.into(),
            meta: BundleMeta {
                generation,
                serial: format!("{generation:02x}"),
                not_after,
                certificate_id: format!("{authority}/{generation}"),
                fingerprint_sha256: String::new(),
                root_fingerprint_sha256: String::new(),
                owner: None,
            },
            bundle: Bundle {
                ca_cert: String::new(),
                ca_key: String::new().into(),
                cert_chain: String::new(),
                root_cert: String::new(),
            },
            promoted_at: not_after,
            terms: None,
            history: Vec::new(),
            revoked: None,
            superseded: Vec::new(),
            ledger_from: None,
            own_crl: None,
        }
    }

    #[test]
    fn each_generation_hands_itself_on_until_it_expires() {
        let now = OffsetDateTime::now_utc();
        assert_eq!(Ledger::default().kept(1, "ca", now).from, Some(1));

        let mut g1 = record(1, "ca", now + Duration::days(300));
        g1.ledger_from = Some(1);
        let l2 = g1.ledger_handed_on().kept(2, "ca", now);
        assert_eq!(l2.from, Some(1));
        let own = Issuance {
            authority_id: None,
            ..g1.issuance()
        };
        assert_eq!(
            l2.superseded,
            [own],
            "the record's own authority is not repeated"
        );
        // A record whose authority changed keeps naming the earlier one.
        let moved = g1.ledger_handed_on().kept(2, "new-ca", now);
        assert_eq!(moved.superseded[0].authority_id.as_deref(), Some("ca"));

        // Generation 2 renewed after generation 1 expired: 1 leaves the ledger, 2 joins.
        let mut g2 = record(2, "ca", now + Duration::days(30));
        (g2.superseded, g2.ledger_from) = (l2.superseded, l2.from);
        let l3 = g2
            .ledger_handed_on()
            .kept(3, "ca", now + Duration::days(301));
        assert_eq!(
            l3.superseded
                .iter()
                .map(|e| e.generation)
                .collect::<Vec<_>>(),
            Vec::<u64>::new(),
            "both expired by then"
        );
        let l3 = g2.ledger_handed_on().kept(3, "ca", now);
        assert_eq!(
            l3.superseded
                .iter()
                .map(|e| e.generation)
                .collect::<Vec<_>>(),
            [1, 2]
        );
        // A rerun of a generation never lists itself.
        assert!(
            g2.ledger_handed_on()
                .kept(2, "ca", now)
                .superseded
                .iter()
                .all(|e| e.generation < 2)
        );
    }

    #[test]
    fn a_ledger_past_its_cap_drops_the_oldest_and_says_it_no_longer_knows_them() {
        let now = OffsetDateTime::now_utc();
        let mut g = record(1, "ca", now + Duration::days(300));
        g.ledger_from = Some(1);
        for generation in 2..=20 {
            let l = g.ledger_handed_on().kept(generation, "ca", now);
            g = record(generation, "ca", now + Duration::days(300));
            (g.superseded, g.ledger_from) = (l.superseded, l.from);
        }
        assert_eq!(g.superseded.len(), MAX_SUPERSEDED);
        assert_eq!(g.superseded[0].generation, 4);
        assert_eq!(g.ledger_from, Some(4));
        let said = g.unreached(now);
        assert!(
            said[0].starts_with(
                "generations 1 to 3 were issued before meshca kept a ledger, or left it"
            ),
            "{said:?}"
        );
    }

    #[test]
    fn the_newest_earlier_generations_keep_their_own_crls_for_the_fleet_bundle() {
        let now = OffsetDateTime::now_utc();
        let with_crl = |generation: u64, not_after| Current {
            own_crl: Some(format!("crl of {generation}")),
            ..record(generation, "ca", not_after)
        };
        let mut g = with_crl(1, now + Duration::days(300));
        for generation in 2..=6 {
            let l = g.ledger_handed_on().kept(generation, "ca", now);
            g = with_crl(generation, now + Duration::days(300));
            (g.superseded, g.ledger_from) = (l.superseded, l.from);
        }
        let kept: Vec<_> = g.superseded.iter().map(|e| e.own_crl.clone()).collect();
        assert_eq!(
            kept,
            [
                None,
                None,
                Some("crl of 3"),
                Some("crl of 4"),
                Some("crl of 5")
            ]
            .map(|c| c.map(str::to_string))
        );
        // The fleet bundle takes this generation's and the earlier ones still valid.
        let crls = g.own_crls(now).unwrap();
        assert_eq!(crls, ["crl of 6", "crl of 3", "crl of 4", "crl of 5"]);
        g.superseded[2].not_after = now - Duration::days(1);
        assert_eq!(
            g.own_crls(now).unwrap().len(),
            3,
            "an expired generation's CRL leaves"
        );
    }

    #[test]
    fn what_the_ledger_cannot_reach_is_said_plainly() {
        let now = OffsetDateTime::now_utc();
        // A record an earlier meshca made at generation 5: generations 1 to 4 are unknown.
        let old = record(5, "ca", now + Duration::days(300));
        let said = old.unreached(now);
        assert_eq!(said.len(), 1);
        assert!(
            said[0].starts_with("generations 1 to 4 were issued before"),
            "{said:?}"
        );

        let mut kept = record(3, "new-ca", now + Duration::days(300));
        kept.ledger_from = Some(1);
        kept.superseded = vec![
            record(1, "old-ca", now + Duration::days(10)).issuance(),
            Issuance {
                authority_id: None,
                ..record(2, "new-ca", now + Duration::days(200)).issuance()
            },
        ];
        let said = kept.unreached(now);
        assert_eq!(said.len(), 1, "{said:?}");
        assert!(
            said[0].contains("generation 1 (serial 01) was issued by old-ca"),
            "{said:?}"
        );
        assert!(
            kept.unreached(now + Duration::days(11)).is_empty(),
            "expired: nothing to reach"
        );
    }
}

//! Replacing the root of a whole fleet without a moment in which two clusters distrust each other.
//!
//! istiod reloads a new root bundle only when it contains, or is contained in, the old one byte
//! for byte (`ISTIO_MULTIROOT_MESH`), and otherwise needs a restart; proxies learn trust from
//! istiod and keep leaves of the old intermediate for up to a day. So the fleet moves in three
//! phases, each started only when every cluster confirmed the one before and a soak time passed:
//!
//! | phase       | issuer of intermediates | `root-cert.pem`          |
//! |-------------|-------------------------|--------------------------|
//! | trust-both  | old (A)                 | A's bytes, then B's      |
//! | switch      | new (B)                 | A's bytes, then B's      |
//! | drop-old    | new (B)                 | B's bytes                |
//!
//! Every leaf verifies in every cluster at every boundary: a cluster only ever issues under a
//! root that all clusters already trust. An abort (allowed before drop-old) turns the rotation
//! round: A issues again under A+B, then A alone remains.
//!
//! The record is one document per fleet, written with a compare-and-swap on its revision, so
//! concurrent runs of `advance` or of the sweep agree on one phase.

use std::fmt;

use time::{Duration, OffsetDateTime};

use crate::authority::{
    Authority, AuthorityError, AuthorityInfo, CertificateId, IssueRequest, Issued, RevocationReason,
};
use crate::bundle::Bundle;
use crate::cert::sha256_hex;
use crate::timestamp::rfc3339;

/// Record format version.
pub const SCHEMA: u32 = 1;

/// Default soak: Istio's workload certificates live 24 h; two hours of margin.
pub const DEFAULT_SOAK: Duration = Duration::hours(26);

/// Where a rotation stands.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Every cluster trusts both roots; the old authority still issues.
    TrustBoth,
    /// The new authority issues; both roots are still trusted.
    Switch,
    /// The old root is no longer trusted.
    DropOld,
    /// Finished: the fleet is under the target's root alone.
    Done,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Phase::TrustBoth => "trust-both",
            Phase::Switch => "switch",
            Phase::DropOld => "drop-old",
            Phase::Done => "done",
        })
    }
}

/// One side of a rotation: an authority, how to reach it again, and the root it anchors to.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Anchor {
    /// [`AuthorityInfo::id`]: the issuer recorded in every escrowed bundle.
    pub authority_id: String,
    /// How an entry point builds this authority again (a CA ARN, `local:<dir>`, `vault:<mount>`);
    /// read by the wiring, opaque here.
    pub locator: String,
    /// The authority's `root-cert.pem`, normalised.
    pub root_bundle: String,
}

impl Anchor {
    /// SHA-256 of the root bundle, hex.
    pub fn root_fingerprint(&self) -> String {
        sha256_hex(self.root_bundle.as_bytes())
    }
}

/// A phase change, kept in the record for `status` and the audit trail.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Transition {
    /// The phase entered.
    pub phase: Phase,
    /// Whether the rotation was turned round by then.
    pub aborted: bool,
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// Gates an operator overrode with `--force`, in their words.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub overridden: Vec<String>,
}

/// The fleet's rotation record.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RootRotation {
    /// The record format.
    pub schema: u32,
    /// The authority and root the fleet leaves.
    pub from: Anchor,
    /// The authority and root the fleet moves to.
    pub to: Anchor,
    /// Where the rotation stands.
    pub phase: Phase,
    /// Turned round by `abort`: A is the target again.
    pub aborted: bool,
    /// How long every cluster must hold a phase before the next may begin.
    pub soak_seconds: i64,
    /// When the current phase began.
    #[serde(with = "time::serde::rfc3339")]
    pub phase_started_at: OffsetDateTime,
    /// When every cluster was first seen confirmed in this phase; the soak counts from here.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub confirmed_at: Option<OffsetDateTime>,
    /// Compare-and-swap counter: a write succeeds only over the revision it read.
    pub revision: u64,
    /// Every phase entered, oldest first.
    pub history: Vec<Transition>,
}

/// What a cluster must hold in the current phase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage<'a> {
    /// Whose intermediates the cluster should carry.
    pub issuer: &'a Anchor,
    /// The exact `root-cert.pem` bytes.
    pub trust: String,
}

/// Why a rotation cannot start, advance or abort now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RotationError {
    /// The new authority is the one in service.
    #[error("the new authority is the current one ({0}); nothing to rotate")]
    SameAuthority(String),
    #[error(
        "the new authority {to} anchors to the same root as {from} (root fingerprint {fingerprint}); that is a re-issue, not a root rotation: point meshca at it and run `meshca issue --force`"
    )]
    /// The new authority signs under the same root: nothing would change.
    SameRoot {
        /// The authority in service.
        from: String,
        /// The one asked for.
        to: String,
        /// The root both share.
        fingerprint: String,
    },
    /// A rotation is already running.
    #[error("a rotation to {to} is already in phase {phase}; finish or abort it first")]
    InProgress {
        /// Its target.
        to: String,
        /// Its phase.
        phase: Phase,
    },
    /// Once the old root is dropped, going back would cut clusters off.
    #[error("the rotation is in phase {0}; abort is allowed only before drop-old starts")]
    TooLateToAbort(Phase),
    /// Abort was already asked for.
    #[error("the rotation is already aborted; advance it to finish the way back")]
    AlreadyAborted,
    /// Nothing left to advance.
    #[error("the rotation is done; nothing to advance")]
    Finished,
    /// The current phase does not hold everywhere yet, or has not soaked long enough.
    #[error("cannot advance from {phase}: {}", .blockers.join("; "))]
    Gated {
        /// The phase.
        phase: Phase,
        /// What keeps it, one line each.
        blockers: Vec<String>,
    },
}

impl RootRotation {
    /// A new rotation from `from` to `to`, in phase trust-both.
    pub fn start(
        from: Anchor,
        to: Anchor,
        soak: Duration,
        now: OffsetDateTime,
    ) -> Result<Self, RotationError> {
        if from.authority_id == to.authority_id {
            return Err(RotationError::SameAuthority(from.authority_id));
        }
        if from.root_bundle == to.root_bundle {
            let fingerprint = from.root_fingerprint();
            return Err(RotationError::SameRoot {
                from: from.authority_id,
                to: to.authority_id,
                fingerprint,
            });
        }
        let history = vec![Transition {
            phase: Phase::TrustBoth,
            aborted: false,
            at: now,
            overridden: Vec::new(),
        }];
        Ok(RootRotation {
            schema: SCHEMA,
            from,
            to,
            phase: Phase::TrustBoth,
            aborted: false,
            soak_seconds: soak.whole_seconds(),
            phase_started_at: now,
            confirmed_at: None,
            revision: 0,
            history,
        })
    }

    /// The authority the fleet ends on.
    pub fn target(&self) -> &Anchor {
        if self.aborted { &self.from } else { &self.to }
    }

    /// The authority being retired.
    pub fn retiring(&self) -> &Anchor {
        if self.aborted { &self.to } else { &self.from }
    }

    /// A's bytes followed by B's, in the order of the rotation as started (abort keeps it, so
    /// every bundle written contains, or is contained in, the one before).
    pub fn trust_both(&self) -> String {
        format!("{}{}", self.from.root_bundle, self.to.root_bundle)
    }

    /// A rotation is under way (not done).
    pub fn is_active(&self) -> bool {
        self.phase != Phase::Done
    }

    /// Issuer and trust bundle of the current phase.
    pub fn stage(&self) -> Stage<'_> {
        match self.phase {
            Phase::TrustBoth => Stage {
                issuer: self.retiring(),
                trust: self.trust_both(),
            },
            Phase::Switch => Stage {
                issuer: self.target(),
                trust: self.trust_both(),
            },
            Phase::DropOld | Phase::Done => Stage {
                issuer: self.target(),
                trust: self.target().root_bundle.clone(),
            },
        }
    }

    /// How long each phase must soak.
    pub fn soak(&self) -> Duration {
        Duration::seconds(self.soak_seconds)
    }

    /// Whether `bundle`, as read back from a cluster, is what this phase asks of it.
    pub fn confirms(&self, bundle: &Bundle) -> Result<(), String> {
        let stage = self.stage();
        if bundle.root_cert != stage.trust {
            return Err(format!(
                "root-cert.pem is not yet the {} trust bundle (root fingerprint {})",
                self.phase,
                sha256_hex(bundle.root_cert.as_bytes())
            ));
        }
        let top = chain_top(bundle).ok_or("cert-chain.pem holds no certificate")?;
        let issuer_roots = crate::pem::certificates("issuer root", &stage.issuer.root_bundle)
            .map_err(|e| e.to_string())?;
        let under_issuer = issuer_roots.into_iter().any(|der| {
            crate::cert::Certificate::from_der("issuer root", der)
                .is_ok_and(|root| top.signed_by(&root).is_ok())
        });
        if !under_issuer {
            return Err(format!(
                "the intermediate is not yet from {}",
                stage.issuer.authority_id
            ));
        }
        Ok(())
    }

    /// Why the rotation may not leave its phase now; empty when it may. `unconfirmed` names
    /// each cluster not confirmed (unreachable ones included) with the reason.
    pub fn blockers(&self, unconfirmed: &[(String, String)], now: OffsetDateTime) -> Vec<String> {
        let mut out: Vec<String> = unconfirmed
            .iter()
            .map(|(c, why)| format!("{c}: {why}"))
            .collect();
        if !unconfirmed.is_empty() {
            return out;
        }
        match self.confirmed_at {
            None => out.push("the fleet's confirmation is not recorded yet".into()),
            Some(at) if at + self.soak() > now => out.push(format!(
                "soaking until {} ({} after the whole fleet confirmed the phase at {})",
                rfc3339(at + self.soak()),
                human(self.soak()),
                rfc3339(at)
            )),
            Some(_) => {}
        }
        out
    }

    /// Records that every cluster confirmed this phase (the first time it is seen).
    pub fn note_confirmed(&mut self, now: OffsetDateTime) -> bool {
        if self.confirmed_at.is_some() {
            return false;
        }
        self.confirmed_at = Some(now);
        true
    }

    /// Moves to the next phase if nothing blocks, or if `force` and every blocker is overridden.
    pub fn advance(
        &mut self,
        blockers: Vec<String>,
        force: bool,
        now: OffsetDateTime,
    ) -> Result<Phase, RotationError> {
        if self.phase == Phase::Done {
            return Err(RotationError::Finished);
        }
        if !blockers.is_empty() && !force {
            return Err(RotationError::Gated {
                phase: self.phase,
                blockers,
            });
        }
        let next = match self.phase {
            Phase::TrustBoth => Phase::Switch,
            Phase::Switch => Phase::DropOld,
            Phase::DropOld | Phase::Done => Phase::Done,
        };
        self.enter(next, now, blockers);
        Ok(next)
    }

    /// Turns the rotation round towards A alone: A issues again under A+B (phase switch with A
    /// as the target), then A's root alone. Refused once drop-old began: B-only clusters would
    /// no longer trust A's intermediates.
    pub fn abort(&mut self, now: OffsetDateTime) -> Result<(), RotationError> {
        if self.aborted {
            return Err(RotationError::AlreadyAborted);
        }
        if self.phase >= Phase::DropOld {
            return Err(RotationError::TooLateToAbort(self.phase));
        }
        self.aborted = true;
        self.enter(Phase::Switch, now, Vec::new());
        Ok(())
    }

    fn enter(&mut self, phase: Phase, now: OffsetDateTime, overridden: Vec<String>) {
        self.phase = phase;
        self.phase_started_at = now;
        self.confirmed_at = None;
        self.history.push(Transition {
            phase,
            aborted: self.aborted,
            at: now,
            overridden,
        });
    }

    /// How long the rotation has been in its phase: what the stuck-rotation alarm watches.
    pub fn phase_age(&self, now: OffsetDateTime) -> Duration {
        now - self.phase_started_at
    }
}

/// `26 h`, `90 min`, `45 s`: a soak as people say it.
fn human(d: Duration) -> String {
    match d.whole_seconds() {
        s if s % 3600 == 0 => format!("{} h", s / 3600),
        s if s % 60 == 0 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}

/// The last certificate of `cert-chain.pem`: the root the intermediate was issued under.
/// The topmost certificate of the chain below its root(s): the one a root signed. Found by
/// signature, not by position, since a `kubernetes.io/tls` secret's chain ends with every
/// trusted root (old and new during a rotation), not with its own issuer's.
fn chain_top(bundle: &Bundle) -> Option<crate::cert::Certificate> {
    crate::pem::certificates("cert-chain.pem", &bundle.cert_chain)
        .ok()?
        .into_iter()
        .filter_map(|der| crate::cert::Certificate::from_der("cert-chain.pem", der).ok())
        .rfind(|c| !c.is_self_signed())
}

impl RootRotation {
    /// The revision this record is stored under, given what is stored now: one above the
    /// stored record's, if this record was read at that revision, or if it is a new rotation
    /// and the stored one (if any) is finished. Anything else lost a race.
    pub fn next_revision(&self, stored: Option<&RootRotation>) -> Result<u64, RotationStoreError> {
        match stored {
            None if self.revision == 0 => Ok(1),
            Some(s) if self.revision == 0 && !s.is_active() => Ok(s.revision + 1),
            Some(s) if self.revision != 0 && s.revision == self.revision => Ok(s.revision + 1),
            _ => Err(RotationStoreError::Conflict),
        }
    }
}

/// Where the fleet's rotation record is kept.
#[async_trait::async_trait]
pub trait RotationStore: Send + Sync {
    /// The record, if one was ever written.
    async fn load(&self) -> Result<Option<RootRotation>, RotationStoreError>;
    /// Writes `rotation` with its revision raised by one, only if the stored record still has
    /// `rotation.revision` (or, for revision 0, there is none or only a finished one).
    async fn save(&self, rotation: &RootRotation) -> Result<RootRotation, RotationStoreError>;
}

/// Why the rotation record could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum RotationStoreError {
    /// Another run wrote it since it was read.
    #[error("the rotation record changed since it was read (another run moved it); read it again")]
    Conflict,
    /// It does not parse.
    #[error("the rotation record is unreadable: {0}")]
    Corrupt(String),
    /// Any other failure of the backend.
    #[error("rotation record {operation} failed: {detail}")]
    Backend {
        /// The call.
        operation: &'static str,
        /// What failed.
        detail: String,
    },
}

/// An issuer seen through a rotation phase: it signs as itself, but the bundles it hands out
/// carry the phase's trust bundle as `root-cert.pem`.
pub struct Anchored {
    /// The authority that signs.
    pub issuer: std::sync::Arc<dyn Authority>,
    /// The roots its bundles carry in this phase.
    pub trust: String,
    /// Every side of the rotation, by authority id: a certificate either side issued is fetched
    /// and revoked by its own issuer (a cluster deleted mid-rotation may hold either's).
    pub sides: Vec<(String, std::sync::Arc<dyn Authority>)>,
}

impl Anchored {
    /// Who may know certificate `id`: sides whose id prefixes it (PCA's certificate ARNs, the
    /// local CA's ids), then the issuer, then the other sides (a Vault id is a bare serial).
    fn owners(&self, id: &CertificateId) -> Vec<&dyn Authority> {
        let mut out: Vec<&dyn Authority> = self
            .sides
            .iter()
            .filter(|(side, _)| id.0.starts_with(side.as_str()))
            .map(|(_, a)| a.as_ref())
            .collect();
        out.push(self.issuer.as_ref());
        out.extend(
            self.sides
                .iter()
                .filter(|(side, _)| !id.0.starts_with(side.as_str()))
                .map(|(_, a)| a.as_ref()),
        );
        out
    }
}

#[async_trait::async_trait]
impl Authority for Anchored {
    async fn describe(&self) -> Result<AuthorityInfo, AuthorityError> {
        let mut info = self.issuer.describe().await?;
        if !self.trust.contains(&info.root_bundle) {
            return Err(AuthorityError::Rejected {
                id: info.id,
                reason: "its root is not part of the rotation's trust bundle (did the CA's root change since the rotation started?)".into(),
            });
        }
        info.root_bundle = self.trust.clone();
        Ok(info)
    }
    async fn issue(&self, request: &IssueRequest<'_>) -> Result<CertificateId, AuthorityError> {
        self.issuer.issue(request).await
    }
    async fn fetch(&self, id: &CertificateId) -> Result<Issued, AuthorityError> {
        let mut last = None;
        for a in self.owners(id) {
            match a.fetch(id).await {
                Ok(issued) => return Ok(issued),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| AuthorityError::UnknownCertificate(id.clone())))
    }
    async fn revoke(
        &self,
        id: &CertificateId,
        serial: &str,
        reason: RevocationReason,
    ) -> Result<(), AuthorityError> {
        let mut last = None;
        for a in self.owners(id) {
            match a.revoke(id, serial, reason).await {
                Ok(()) => return Ok(()),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| AuthorityError::UnknownCertificate(id.clone())))
    }

    /// Every side's CRLs, the issuer's among them: mid-rotation, clusters present chains to
    /// either root, and a proxy in CRL mode refuses a chain whose CAs have no CRL, so the
    /// fleet's bundle needs both sides' (with only the issuer's, every cluster still on the
    /// other side would be cut off).
    async fn crl(&self) -> Result<Option<String>, AuthorityError> {
        if self.sides.is_empty() {
            return self.issuer.crl().await;
        }
        let mut out: Option<String> = None;
        for (_, side) in &self.sides {
            if let Some(text) = side.crl().await? {
                out.get_or_insert_default().push_str(&text);
            }
        }
        Ok(out)
    }

    async fn issued_with_subject(
        &self,
        subject: &[u8],
        now: time::OffsetDateTime,
    ) -> Result<crate::authority::Listing, crate::authority::AuthorityError> {
        self.issuer.issued_with_subject(subject, now).await
    }
}

/// Whether replacing root bundle `old` by `new` is one istiod's multi-root mode accepts.
pub fn contained(old: &str, new: &str) -> bool {
    old.contains(new) || new.contains(old)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn anchor(id: &str, root: &str) -> Anchor {
        Anchor {
            authority_id: id.into(),
            locator: id.into(),
            root_bundle: root.into(),
        }
    }

    /// An authority that answers only for its CRL.
    struct CrlOf(&'static str);

    #[async_trait::async_trait]
    impl Authority for CrlOf {
        async fn describe(&self) -> Result<AuthorityInfo, AuthorityError> {
            unreachable!("only the CRL is asked")
        }
        async fn issue(&self, _: &IssueRequest<'_>) -> Result<CertificateId, AuthorityError> {
            unreachable!("only the CRL is asked")
        }
        async fn fetch(&self, _: &CertificateId) -> Result<Issued, AuthorityError> {
            unreachable!("only the CRL is asked")
        }
        async fn revoke(
            &self,
            _: &CertificateId,
            _: &str,
            _: RevocationReason,
        ) -> Result<(), AuthorityError> {
            unreachable!("only the CRL is asked")
        }
        async fn crl(&self) -> Result<Option<String>, AuthorityError> {
            Ok(Some(self.0.to_string()))
        }
    }

    #[tokio::test]
    async fn mid_rotation_the_fleet_crls_carry_both_sides() {
        let (old, new): (std::sync::Arc<dyn Authority>, std::sync::Arc<dyn Authority>) = (
            std::sync::Arc::new(CrlOf("old root and its CAs\n")),
            std::sync::Arc::new(CrlOf("new root and its CAs\n")),
        );
        let anchored = Anchored {
            issuer: new.clone(),
            trust: "A\nB\n".into(),
            sides: vec![("a".into(), old), ("b".into(), new.clone())],
        };
        assert_eq!(
            anchored.crl().await.unwrap().unwrap(),
            "old root and its CAs\nnew root and its CAs\n"
        );
        let alone = Anchored {
            issuer: new,
            trust: "B\n".into(),
            sides: Vec::new(),
        };
        assert_eq!(
            alone.crl().await.unwrap().unwrap(),
            "new root and its CAs\n"
        );
    }

    fn rotation() -> RootRotation {
        RootRotation::start(
            anchor("a", "A\n"),
            anchor("b", "B\n"),
            Duration::hours(26),
            OffsetDateTime::UNIX_EPOCH,
        )
        .unwrap()
    }

    #[test]
    fn phases_give_issuer_and_trust_in_order() {
        let t0 = OffsetDateTime::UNIX_EPOCH;
        let mut r = rotation();
        assert_eq!(
            (
                r.stage().issuer.authority_id.as_str(),
                r.stage().trust.as_str()
            ),
            ("a", "A\nB\n")
        );
        r.note_confirmed(t0);
        assert!(
            matches!(
                r.advance(r.blockers(&[], t0 + Duration::hours(25)), false, t0),
                Err(RotationError::Gated { .. })
            ),
            "soak"
        );
        let blockers = r.blockers(&[], t0 + Duration::hours(26));
        assert_eq!(r.advance(blockers, false, t0).unwrap(), Phase::Switch);
        assert_eq!(
            (
                r.stage().issuer.authority_id.as_str(),
                r.stage().trust.as_str()
            ),
            ("b", "A\nB\n")
        );
        assert!(
            !r.blockers(&[], t0).is_empty(),
            "a new phase starts unconfirmed"
        );
        r.advance(vec!["forced".into()], true, t0).unwrap();
        assert_eq!(
            (
                r.stage().issuer.authority_id.as_str(),
                r.stage().trust.as_str()
            ),
            ("b", "B\n")
        );
        assert_eq!(
            r.history.last().unwrap().overridden,
            vec!["forced".to_string()]
        );
        assert_eq!(
            r.abort(t0),
            Err(RotationError::TooLateToAbort(Phase::DropOld))
        );
        r.advance(Vec::new(), false, t0).unwrap();
        assert_eq!(r.phase, Phase::Done);
        assert_eq!(
            r.advance(Vec::new(), false, t0),
            Err(RotationError::Finished)
        );
    }

    #[test]
    fn an_unconfirmed_cluster_blocks_even_after_the_soak() {
        let mut r = rotation();
        r.note_confirmed(OffsetDateTime::UNIX_EPOCH);
        let late = OffsetDateTime::UNIX_EPOCH + Duration::days(9);
        let b = r.blockers(&[("c7".into(), "unreachable".into())], late);
        assert_eq!(b, vec!["c7: unreachable".to_string()]);
    }

    #[test]
    fn abort_turns_round_to_a_under_both_then_a_alone() {
        let mut r = rotation();
        r.advance(Vec::new(), false, OffsetDateTime::UNIX_EPOCH)
            .unwrap();
        r.abort(OffsetDateTime::UNIX_EPOCH).unwrap();
        assert_eq!(
            (
                r.stage().issuer.authority_id.as_str(),
                r.stage().trust.as_str()
            ),
            ("a", "A\nB\n")
        );
        assert_eq!(
            r.abort(OffsetDateTime::UNIX_EPOCH),
            Err(RotationError::AlreadyAborted)
        );
        r.advance(Vec::new(), false, OffsetDateTime::UNIX_EPOCH)
            .unwrap();
        assert_eq!(
            (
                r.stage().issuer.authority_id.as_str(),
                r.stage().trust.as_str()
            ),
            ("a", "A\n")
        );
        assert!(
            contained("A\nB\n", "A\n")
                && contained("A\n", "A\nB\n")
                && !contained("A\nB\n", "B\nA\n")
        );
    }

    #[test]
    fn same_authority_or_same_root_is_no_rotation() {
        let t = OffsetDateTime::UNIX_EPOCH;
        assert!(matches!(
            RootRotation::start(anchor("a", "A\n"), anchor("a", "B\n"), DEFAULT_SOAK, t),
            Err(RotationError::SameAuthority(_))
        ));
        let e = RootRotation::start(anchor("a", "A\n"), anchor("b", "A\n"), DEFAULT_SOAK, t)
            .unwrap_err();
        assert!(
            e.to_string().contains("re-issue, not a root rotation"),
            "{e}"
        );
    }
}

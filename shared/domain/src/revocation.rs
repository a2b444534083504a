//! Compromise response for one cluster: its certificates revoked at the authority that issued
//! them, and its record *held*, so no sweep, event or rerun issues or delivers it again until a
//! person lifts the hold on purpose.
//!
//! The hold is written before the authority is called, so a run stopped in between leaves the
//! cluster held (never re-issued) with the authority's part marked pending; the next `revoke`
//! finishes it. Revoking a held cluster again calls nothing.

use time::OffsetDateTime;

use crate::Step;
use crate::authority::{CertificateId, Listing, RevocationReason};
use crate::cert::Certificate;
use crate::cluster::ClusterName;
use crate::escrow::{Current, Escrowed, Revoked};
use crate::kind::EscrowKey;
use crate::reconcile::{ReconcileError, Reconciler};

/// What one revocation did to one kind of a cluster.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Revocation {
    /// The cluster and kind.
    pub key: EscrowKey,
    /// Serials (hex) revoked at the authority by this run.
    pub serials: Vec<String>,
    /// The same certificates by the authority's id (a Private CA's certificate ARN, …).
    pub certificates: Vec<String>,
    /// The generation held.
    pub generation: u64,
    /// It was held and revoked already: this run changed nothing.
    pub already: bool,
    /// What the ledger cannot reach, said plainly ([`Current::unreached`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unknown: Vec<String>,
}

impl Reconciler<'_> {
    /// Revokes every certificate of this kind of `cluster` still valid (the one in service,
    /// earlier generations the ledger holds, a newer one issued but not yet in service) for
    /// `reason`, as asked `by` someone, and holds the record.
    pub async fn revoke(
        &self,
        cluster: &ClusterName,
        reason: RevocationReason,
        now: OffsetDateTime,
        by: &str,
    ) -> Result<Revocation, ReconcileError> {
        let key = self.key(cluster);
        let escrowed = self.load_for_revocation(&key).await?;
        let Some(current) = escrowed.current.clone() else {
            return Err(ReconcileError::NothingToRevoke { key });
        };
        let generation = current.meta.generation;
        if let Some(r) = &current.revoked
            && r.held
            && !r.authority_pending
        {
            return Ok(Revocation {
                key,
                serials: Vec::new(),
                certificates: Vec::new(),
                generation,
                already: true,
                unknown: Vec::new(),
            });
        }
        // Revoked when its cluster was deleted, or held by a run that stopped: its certificate is
        // revoked (or being revoked) already; the authority answers a repeat as done.
        let held = Current {
            revoked: Some(Revoked {
                at: current.revoked.as_ref().map_or(now, |r| r.at),
                reason: reason.as_pca().into(),
                by: Some(by.to_string()),
                held: true,
                authority_pending: true,
            }),
            ..current.clone()
        };
        self.mark(&held).await?;
        let (mut certificates, mut serials) =
            self.revoke_at_authority(&escrowed, reason, now).await?;
        let listing = self.before_ledger(&current, &serials, now).await?;
        let listed = match &listing {
            Some(Listing::Found(found)) => found.as_slice(),
            _ => &[],
        };
        for (id, serial) in listed {
            self.authority
                .revoke(id, serial, reason)
                .await
                .map_err(|source| ReconcileError::Authority {
                    step: Step::Revoke,
                    source,
                })?;
            certificates.push(id.0.clone());
            serials.push(serial.clone());
        }
        let done = Current {
            revoked: held.revoked.clone().map(|r| Revoked {
                authority_pending: false,
                ..r
            }),
            ..held.with_superseded_revoked(&serials)
        };
        self.mark(&done).await?;
        Ok(Revocation {
            key,
            serials,
            certificates,
            generation,
            already: false,
            // Listed at the authority, the generations before the ledger are no longer unknown;
            // not listed, the line says why.
            unknown: done
                .unreached(now)
                .into_iter()
                .filter_map(|u| match &listing {
                    _ if !u.starts_with(crate::ledger::BEFORE_LEDGER) => Some(u),
                    Some(Listing::Found(_)) => None,
                    Some(Listing::Unlisted(why)) => Some(format!("{u}. Not listed: {why}")),
                    None => Some(u),
                })
                .collect(),
        })
    }

    /// Certificates of generations issued before the record kept a ledger, found at the
    /// authority by the subject of the record's certificate (not those in `known`), or why they
    /// could not be listed: the authority cannot, or the subject does not name the cluster (then
    /// another cluster's could share it). `None` when the ledger knows every generation.
    async fn before_ledger(
        &self,
        current: &Current,
        known: &[String],
        now: OffsetDateTime,
    ) -> Result<Option<Listing>, ReconcileError> {
        if current.ledger_from.unwrap_or(current.meta.generation) <= 1 {
            return Ok(None);
        }
        let Some(der) = crate::pem::certificates("ca-cert.pem", &current.bundle.ca_cert)
            .ok()
            .and_then(|c| c.into_iter().next())
        else {
            return Ok(None);
        };
        let names_cluster = Certificate::from_der("ca-cert.pem", der.clone()).is_ok_and(|c| {
            c.subject
                .split(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '-' || ch == '_'))
                .any(|word| word == current.cluster.as_str())
        });
        let Some(subject) = crate::cert::subject_of(&der) else {
            return Ok(None);
        };
        if !names_cluster {
            return Ok(Some(Listing::Unlisted(format!(
                "the certificate's subject does not name {}, so the authority is not searched by it (another cluster's could share it)",
                current.cluster
            ))));
        }
        let listed = self
            .authority
            .issued_with_subject(&subject, now)
            .await
            .map_err(|source| ReconcileError::Authority {
                step: Step::Revoke,
                source,
            })?;
        let on_record: Vec<&String> = current.superseded.iter().map(|e| &e.serial).collect();
        Ok(Some(match listed {
            Listing::Found(found) => Listing::Found(
                found
                    .into_iter()
                    .filter(|(_, s)| !known.contains(s) && !on_record.contains(&s))
                    .collect(),
            ),
            unlisted => unlisted,
        }))
    }

    /// Lifts the hold on this kind of `cluster`: its certificate stays revoked (no authority
    /// takes a revocation back), and the next run issues it a new key and generation.
    pub async fn lift(&self, cluster: &ClusterName) -> Result<u64, ReconcileError> {
        let key = self.key(cluster);
        let escrowed = self.load_for_revocation(&key).await?;
        let Some(current) = escrowed
            .current
            .filter(|c| c.revoked.as_ref().is_some_and(|r| r.held))
        else {
            return Err(ReconcileError::NotHeld { key });
        };
        let generation = current.meta.generation;
        let lifted = Current {
            revoked: current
                .revoked
                .clone()
                .map(|r| Revoked { held: false, ..r }),
            ..current
        };
        self.mark(&lifted).await?;
        Ok(generation)
    }

    async fn load_for_revocation(&self, key: &EscrowKey) -> Result<Escrowed, ReconcileError> {
        self.escrow
            .load(key)
            .await
            .map_err(|source| ReconcileError::Escrow {
                step: Step::Observe,
                source,
            })
    }

    async fn mark(&self, current: &Current) -> Result<(), ReconcileError> {
        self.escrow
            .mark_revoked(current)
            .await
            .map_err(|source| ReconcileError::Escrow {
                step: Step::Escrow,
                source,
            })
    }

    /// What the authority issued for this record and has not revoked on our word: the
    /// certificate in service (if `current_too`), earlier generations still valid that the
    /// ledger holds from the same authority, and a pending generation's, if it was issued and
    /// not refused (a refused one was revoked when it was refused).
    pub(crate) async fn issued_to(
        &self,
        escrowed: &Escrowed,
        current_too: bool,
        now: OffsetDateTime,
    ) -> Vec<(CertificateId, String)> {
        let mut issued = Vec::new();
        if let Some(c) = escrowed.current.as_ref() {
            issued.extend(
                c.superseded
                    .iter()
                    .filter(|e| e.live(now) && e.authority(&c.authority_id) == c.authority_id)
                    .map(|e| (CertificateId(e.certificate_id.clone()), e.serial.clone())),
            );
        }
        if let Some(c) = escrowed.current.as_ref().filter(|_| current_too) {
            issued.push((
                CertificateId(c.meta.certificate_id.clone()),
                c.meta.serial.clone(),
            ));
        }
        if let Some(id) = escrowed
            .pending
            .as_ref()
            .filter(|p| p.refused.is_none())
            .and_then(|p| p.certificate_id.clone())
            && let Some(serial) = self.serial_of(&id).await
        {
            issued.push((id, serial));
        }
        issued
    }

    /// Revokes what the authority issued for the record, for `reason`; the certificates
    /// revoked, by id and by serial.
    async fn revoke_at_authority(
        &self,
        escrowed: &Escrowed,
        reason: RevocationReason,
        now: OffsetDateTime,
    ) -> Result<(Vec<String>, Vec<String>), ReconcileError> {
        let (mut ids, mut serials) = (Vec::new(), Vec::new());
        for (id, serial) in self.issued_to(escrowed, true, now).await {
            self.authority
                .revoke(&id, &serial, reason)
                .await
                .map_err(|source| ReconcileError::Authority {
                    step: Step::Revoke,
                    source,
                })?;
            ids.push(id.0);
            serials.push(serial);
        }
        Ok((ids, serials))
    }
}

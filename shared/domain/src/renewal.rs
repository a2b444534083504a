//! When a cluster's intermediate is renewed.

use std::fmt;

use time::{Duration, OffsetDateTime};

/// istiod does not re-clamp workload certificate lifetimes after hot-reloading a new
/// intermediate, so a workload certificate signed just before rotation can run to the old
/// intermediate's end. Renewing at least two days ahead keeps every such certificate inside it.
pub const MIN_RENEW_BEFORE: Duration = Duration::hours(48);

/// AWS Private CA's short-lived certificate mode caps validity at seven days.
pub const SHORT_LIVED_MAX: Duration = Duration::days(7);

/// When a bundle is due for renewal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RenewalPolicy {
    /// Renew when less than this is left. `None`: a third of the certificate's validity, but
    /// never less than [`MIN_RENEW_BEFORE`].
    pub renew_before: Option<Duration>,
}

/// Why a new intermediate is needed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "reason", rename_all = "kebab-case")]
pub enum RenewReason {
    /// Nothing escrowed for this cluster yet.
    NoBundle,
    /// The escrowed bundle fails validation.
    Invalid {
        /// What failed.
        detail: String,
    },
    /// The authority's root bundle differs from the escrowed `root-cert.pem`.
    RootChanged,
    /// Another authority issued the escrowed intermediate (a root rotation switched issuers).
    IssuerChanged {
        /// The issuer recorded with it.
        from: String,
    },
    /// Less life left than the renew-before threshold.
    Due {
        /// Hours of life left.
        remaining_hours: i64,
        /// The threshold, in hours.
        renew_before_hours: i64,
    },
    /// The operator asked for it.
    Forced,
    /// The escrowed certificate was revoked (its cluster deleted or retired, the record
    /// restored since): it is never put back in force.
    Revoked,
}

impl fmt::Display for RenewReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RenewReason::NoBundle => f.write_str("no bundle escrowed for this cluster"),
            RenewReason::Revoked => f.write_str(
                "the escrowed certificate was revoked (a lifted `meshca revoke`, or a record restored after its cluster was retired)",
            ),
            RenewReason::Invalid { detail } => write!(f, "escrowed bundle is invalid: {detail}"),
            RenewReason::RootChanged => f.write_str("the authority's root changed"),
            RenewReason::IssuerChanged { from } => write!(
                f,
                "the intermediate was issued by {from}, not by the authority in force"
            ),
            RenewReason::Due {
                remaining_hours,
                renew_before_hours,
            } => write!(
                f,
                "{} left, renewal is due {} before expiry",
                human_hours(*remaining_hours),
                human_hours(*renew_before_hours)
            ),
            RenewReason::Forced => f.write_str("renewal forced"),
        }
    }
}

/// Whether a bundle stays in service or is renewed, and why: the policy's answer for one
/// certificate, the reconciler's for a cluster's escrow, and the sweep's first look.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The bundle in service stays.
    Keep {
        /// When it expires.
        not_after: OffsetDateTime,
        /// When it becomes due.
        renew_at: OffsetDateTime,
    },
    /// `not_after`: the end of the bundle in service, if there is one.
    Renew {
        /// Why.
        reason: RenewReason,
        /// The end of the bundle in service, if there is one.
        not_after: Option<OffsetDateTime>,
    },
}

impl Verdict {
    /// The end of the bundle in service, if any.
    pub fn not_after(&self) -> Option<OffsetDateTime> {
        match self {
            Verdict::Keep { not_after, .. } => Some(*not_after),
            Verdict::Renew { not_after, .. } => *not_after,
        }
    }

    /// Whether a new generation is wanted.
    pub fn is_due(&self) -> bool {
        matches!(self, Verdict::Renew { .. })
    }
}

/// Why a validity and renewal policy cannot work together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnworkablePolicy {
    /// Certificates this short would be refused as soon as they are issued.
    #[error("a certificate valid for {} would be refused at once: a bundle must have more than {} of life left", human_hours(.validity.whole_hours()), human_hours(.minimum.whole_hours()))]
    TooShort {
        /// The validity asked for.
        validity: Duration,
        /// The least life a bundle must have.
        minimum: Duration,
    },
    /// Certificates this short would be due again the moment they are issued.
    #[error("a certificate valid for {} with renewal due {} before expiry would be renewed on every run: give a longer validity or renew later", human_hours(.validity.whole_hours()), human_hours(.renew_before.whole_hours()))]
    AlwaysDue {
        /// The validity asked for.
        validity: Duration,
        /// How long before expiry renewal is due.
        renew_before: Duration,
    },
}

impl RenewalPolicy {
    /// Whether certificates valid for `validity` can be issued and then kept under this policy,
    /// given the shortest life a bundle may have (`minimum`): checked before any key exists.
    pub fn check(&self, validity: Duration, minimum: Duration) -> Result<(), UnworkablePolicy> {
        // An hour of slack for the time between asking and checking.
        if validity <= minimum + Duration::hours(1) {
            return Err(UnworkablePolicy::TooShort { validity, minimum });
        }
        let renew_before = self.threshold(
            OffsetDateTime::UNIX_EPOCH,
            OffsetDateTime::UNIX_EPOCH + validity,
        );
        if renew_before >= validity - Duration::hours(1) {
            return Err(UnworkablePolicy::AlwaysDue {
                validity,
                renew_before,
            });
        }
        Ok(())
    }

    /// The threshold for a certificate valid from `not_before` to `not_after`.
    pub fn threshold(&self, not_before: OffsetDateTime, not_after: OffsetDateTime) -> Duration {
        self.renew_before.unwrap_or_else(|| {
            let third: Duration = (not_after - not_before) / 3;
            third.max(MIN_RENEW_BEFORE)
        })
    }

    /// The verdict on a certificate valid from `not_before` to `not_after`, at `now`.
    pub fn judge(
        &self,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Verdict {
        let threshold = self.threshold(not_before, not_after);
        let remaining = not_after - now;
        if remaining < threshold {
            let reason = RenewReason::Due {
                remaining_hours: remaining.whole_hours(),
                renew_before_hours: threshold.whole_hours(),
            };
            Verdict::Renew {
                reason,
                not_after: Some(not_after),
            }
        } else {
            Verdict::Keep {
                not_after,
                renew_at: not_after - threshold,
            }
        }
    }
}

pub(crate) fn human_hours(h: i64) -> String {
    if h.abs() >= 48 {
        format!("{} days", h / 24)
    } else {
        format!("{h} h")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unworkable_policies_are_named_before_anything_is_issued() {
        let day = Duration::days(1);
        let default = RenewalPolicy::default();
        assert!(matches!(
            default.check(day, day),
            Err(UnworkablePolicy::TooShort { .. })
        ));
        let e = default.check(2 * day, day).unwrap_err();
        assert!(
            matches!(e, UnworkablePolicy::AlwaysDue { .. })
                && e.to_string().contains("renewed on every run"),
            "{e}"
        );
        assert_eq!(default.check(3 * day, day), Ok(()));
        let late = RenewalPolicy {
            renew_before: Some(day),
        };
        assert_eq!(
            late.check(2 * day, day),
            Ok(()),
            "renewing a day before a two-day certificate ends works"
        );
        let early = RenewalPolicy {
            renew_before: Some(30 * day),
        };
        assert!(matches!(
            early.check(30 * day, day),
            Err(UnworkablePolicy::AlwaysDue { .. })
        ));
        assert_eq!(early.check(365 * day, day), Ok(()));
    }
    use time::macros::datetime;

    const T0: OffsetDateTime = datetime!(2026-01-01 0:00 UTC);

    #[test]
    fn default_is_a_third_of_validity() {
        let p = RenewalPolicy::default();
        let end = T0 + Duration::days(300);
        assert_eq!(p.threshold(T0, end), Duration::days(100));
        assert!(matches!(
            p.judge(T0, end, T0 + Duration::days(199)),
            Verdict::Keep { .. }
        ));
        assert!(matches!(
            p.judge(T0, end, T0 + Duration::days(201)),
            Verdict::Renew {
                reason: RenewReason::Due { .. },
                ..
            }
        ));
        if let Verdict::Keep { renew_at, .. } = p.judge(T0, end, T0) {
            assert_eq!(renew_at, T0 + Duration::days(200));
        }
    }

    #[test]
    fn never_less_than_48_hours_for_short_lived() {
        let p = RenewalPolicy::default();
        // 3-day certificate: a third is 24 h, the floor lifts it to 48 h.
        let end = T0 + Duration::days(3);
        assert_eq!(p.threshold(T0, end), Duration::hours(48));
        assert!(matches!(
            p.judge(T0, end, T0 + Duration::hours(25)),
            Verdict::Renew { .. }
        ));
        // 7-day short-lived PCA certificate: a third is 56 h.
        assert_eq!(p.threshold(T0, T0 + SHORT_LIVED_MAX), Duration::hours(56));
    }

    #[test]
    fn explicit_threshold_wins() {
        let p = RenewalPolicy {
            renew_before: Some(Duration::days(10)),
        };
        let end = T0 + Duration::days(365);
        assert!(matches!(
            p.judge(T0, end, end - Duration::days(11)),
            Verdict::Keep { .. }
        ));
        let v = p.judge(T0, end, end - Duration::days(9));
        let Verdict::Renew { reason, .. } = v else {
            panic!("{v:?}")
        };
        assert_eq!(
            reason.to_string(),
            "9 days left, renewal is due 10 days before expiry"
        );
    }
}

//! A cluster's terms: the settings its certificate of one kind was issued with, recorded beside
//! it in escrow so that no later run changes them by accident.
//!
//! A rerun, a renewal, a rotation phase keeps a cluster's terms unless a person changes them on
//! purpose (`--force` with the new value) or the functions' configuration changes them, which
//! takes effect at each cluster's next renewal. Every change is kept in the record's history.

use std::net::IpAddr;

use time::{Duration, OffsetDateTime};

use crate::authority::Validity;
use crate::key::KeyAlgorithm;
use crate::renewal::RenewalPolicy;
use crate::settings::Settings;
use crate::timestamp::rfc3339;

/// What a certificate was issued with, beyond the authority (recorded in the bundle's record).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Terms {
    /// The key's algorithm.
    pub key_algorithm: KeyAlgorithm,
    /// The certificate's validity.
    pub validity: Validity,
    /// Renew when fewer days are left; `None`: a third of the validity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renew_before_days: Option<i64>,
    /// `None`: the kind's own common name for the cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub common_name: Option<String>,
    /// The subject's O.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization: Option<String>,
    /// The subject's OU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organizational_unit: Option<String>,
    /// Where the secret lands.
    pub namespace: String,
    /// The secret's name.
    pub secret: String,
    /// xcp-edge: the cluster's name in TSB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tsb_name: Option<String>,
    /// xcp-central: DNS SANs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns: Vec<String>,
    /// xcp-central: IP SANs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ips: Vec<IpAddr>,
}

/// One change of a cluster's terms, as its record's history keeps it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TermsChange {
    /// When the change was made.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// The generation issued with the new terms.
    pub generation: u64,
    /// Each change, `what: old → new`.
    pub changes: Vec<String>,
}

/// Terms asked for on a command line: `None` (or empty) is a flag not given, which means "as
/// recorded" for a cluster with a record and the default for one without.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Asked {
    /// `--key-algorithm`.
    pub key_algorithm: Option<KeyAlgorithm>,
    /// `--validity-days` or `--not-after`.
    pub validity: Option<Validity>,
    /// `--renew-before-days`.
    pub renew_before_days: Option<i64>,
    /// `--common-name`.
    pub common_name: Option<String>,
    /// `--organization`.
    pub organization: Option<String>,
    /// `--organizational-unit`.
    pub organizational_unit: Option<String>,
    /// `--namespace`.
    pub namespace: Option<String>,
    /// `--secret`.
    pub secret: Option<String>,
    /// `--tsb-name`.
    pub tsb_name: Option<String>,
    /// `--central-address` given as DNS names.
    pub dns: Vec<String>,
    /// `--central-address` given as IPs.
    pub ips: Vec<IpAddr>,
}

impl Terms {
    /// The terms `settings` would issue with.
    pub fn of(settings: &Settings) -> Terms {
        Terms {
            key_algorithm: settings.key_algorithm,
            validity: settings.validity,
            renew_before_days: settings.renewal.renew_before.map(|d| d.whole_days()),
            common_name: settings.common_name.clone(),
            organization: settings.organization.clone(),
            organizational_unit: settings.organizational_unit.clone(),
            namespace: settings.kind.namespace.clone(),
            secret: settings.kind.secret.clone(),
            tsb_name: settings.kind.tsb_name.clone(),
            dns: settings.kind.dns.clone(),
            ips: settings.kind.ips.clone(),
        }
    }

    /// `settings` with these terms in place of its own.
    pub fn apply(&self, settings: &Settings) -> Settings {
        let mut s = settings.clone();
        s.key_algorithm = self.key_algorithm;
        s.profile.key_algorithm = Some(self.key_algorithm);
        s.validity = self.validity;
        s.renewal = RenewalPolicy {
            renew_before: self.renew_before_days.map(Duration::days),
        };
        s.common_name.clone_from(&self.common_name);
        s.organization.clone_from(&self.organization);
        s.organizational_unit.clone_from(&self.organizational_unit);
        s.kind.namespace.clone_from(&self.namespace);
        s.kind.secret.clone_from(&self.secret);
        s.kind.tsb_name.clone_from(&self.tsb_name);
        s.kind.dns.clone_from(&self.dns);
        s.kind.ips.clone_from(&self.ips);
        s
    }

    /// Each difference from `before` to `self`, as `what: old → new`.
    pub fn changes_from(&self, before: &Terms) -> Vec<String> {
        self.described()
            .into_iter()
            .zip(before.described())
            .filter(|((_, new), (_, old))| new != old)
            .map(|((what, new), (_, old))| format!("{what}: {old} → {new}"))
            .collect()
    }

    /// Each term by its flag's name, written as the flag takes it.
    fn described(&self) -> Vec<(&'static str, String)> {
        let or_default = |v: &Option<String>| v.clone().unwrap_or_else(|| "(default)".into());
        let list = |v: Vec<String>| {
            if v.is_empty() {
                "(none)".to_string()
            } else {
                v.join(",")
            }
        };
        vec![
            ("key algorithm", self.key_algorithm.to_string()),
            ("validity", describe_validity(self.validity)),
            (
                "renew before",
                self.renew_before_days
                    .map_or("(a third of the validity)".into(), |d| format!("{d} days")),
            ),
            ("common name", or_default(&self.common_name)),
            ("organization", or_default(&self.organization)),
            ("organizational unit", or_default(&self.organizational_unit)),
            ("secret", format!("{}/{}", self.namespace, self.secret)),
            ("TSB name", or_default(&self.tsb_name)),
            ("central DNS names", list(self.dns.clone())),
            (
                "central IPs",
                list(self.ips.iter().map(ToString::to_string).collect()),
            ),
        ]
    }

    /// One line for people: `ec-p256, 365 days, renew at a third`.
    pub fn summary(&self) -> String {
        let renew = self
            .renew_before_days
            .map_or("renews with a third left".into(), |d| {
                format!("renews {d} days before")
            });
        format!(
            "{}, {}, {renew}",
            self.key_algorithm,
            describe_validity(self.validity)
        )
    }
}

fn describe_validity(v: Validity) -> String {
    match v {
        Validity::Days(d) => format!("{d} days"),
        Validity::EndDate(t) => format!("until {}", rfc3339(t)),
    }
}

impl Asked {
    /// The terms to issue with: each term asked for, else as `recorded`, else as `defaults`.
    pub fn over(&self, recorded: Option<&Terms>, defaults: &Terms) -> Terms {
        let base = recorded.unwrap_or(defaults);
        let pick = |asked: &Option<String>, base: &Option<String>| asked.clone().or(base.clone());
        Terms {
            key_algorithm: self.key_algorithm.unwrap_or(base.key_algorithm),
            validity: self.validity.unwrap_or(base.validity),
            renew_before_days: self.renew_before_days.or(base.renew_before_days),
            common_name: pick(&self.common_name, &base.common_name),
            organization: pick(&self.organization, &base.organization),
            organizational_unit: pick(&self.organizational_unit, &base.organizational_unit),
            namespace: self.namespace.clone().unwrap_or(base.namespace.clone()),
            secret: self.secret.clone().unwrap_or(base.secret.clone()),
            tsb_name: pick(&self.tsb_name, &base.tsb_name),
            dns: non_empty_or(&self.dns, &base.dns),
            ips: non_empty_or(&self.ips, &base.ips),
        }
    }

    /// Where what was asked differs from `recorded`: each `what: recorded → asked`. Empty when
    /// nothing was asked or all of it agrees.
    pub fn disagreements(&self, recorded: &Terms) -> Vec<String> {
        self.over(Some(recorded), recorded).changes_from(recorded)
    }
}

fn non_empty_or<T: Clone>(asked: &[T], base: &[T]) -> Vec<T> {
    if asked.is_empty() { base } else { asked }.to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recorded() -> Terms {
        Terms {
            validity: Validity::Days(90),
            key_algorithm: KeyAlgorithm::Rsa2048,
            renew_before_days: Some(20),
            ..Terms::of(&Settings::default())
        }
    }

    #[test]
    fn what_is_not_asked_stays_as_recorded() {
        let defaults = Terms::of(&Settings::default());
        assert_eq!(
            Asked::default().over(Some(&recorded()), &defaults),
            recorded()
        );
        assert_eq!(Asked::default().over(None, &defaults), defaults);
        assert!(Asked::default().disagreements(&recorded()).is_empty());
        // Asking for what is recorded is no disagreement either.
        let same = Asked {
            key_algorithm: Some(KeyAlgorithm::Rsa2048),
            validity: Some(Validity::Days(90)),
            ..Asked::default()
        };
        assert!(same.disagreements(&recorded()).is_empty());
    }

    #[test]
    fn each_disagreement_is_named_with_both_values() {
        let asked = Asked {
            key_algorithm: Some(KeyAlgorithm::EcP256),
            validity: Some(Validity::Days(365)),
            common_name: Some("x".into()),
            ..Asked::default()
        };
        assert_eq!(
            asked.disagreements(&recorded()),
            vec![
                "key algorithm: rsa-2048 → ec-p256",
                "validity: 90 days → 365 days",
                "common name: (default) → x",
            ]
        );
    }

    #[test]
    fn terms_applied_are_the_terms_read_back() {
        let t = Terms {
            common_name: Some("cn".into()),
            tsb_name: Some("edge-1".into()),
            dns: vec!["central.example".into()],
            ..recorded()
        };
        let s = t.apply(&Settings::default());
        assert_eq!(Terms::of(&s), t);
        assert_eq!(s.profile.key_algorithm, Some(KeyAlgorithm::Rsa2048));
        assert_eq!(s.renewal.renew_before, Some(Duration::days(20)));
    }
}

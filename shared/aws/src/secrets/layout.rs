//! Where each kind of a cluster lives inside the cluster's one secret: its staging labels, its
//! summary tags, and which kinds a listed secret holds. Pure: read from what ListSecrets and
//! DescribeSecret return, with no call of its own.
//!
//! A secret costs $0.40 a month whatever it holds, so a cluster's kinds share `<prefix>/<cluster>`
//! (istio-cacerts has always lived there). Each kind keeps its own compare-and-swap: its
//! generations are versions under labels of its own, so two kinds renewing at once never move
//! each other's labels. istio-cacerts keeps AWSCURRENT / AWSPENDING, which every record written
//! before kinds shared a secret already carries.

use std::collections::{BTreeMap, HashMap};

use meshca_core::escrow::Summary;
use meshca_core::{ClusterName, Kind};

pub(super) const CURRENT: &str = "AWSCURRENT";
pub(super) const PENDING: &str = "AWSPENDING";

/// The two staging labels of one kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Labels {
    pub current: String,
    pub pending: String,
}

impl Labels {
    pub fn of(kind: Kind) -> Self {
        match kind {
            Kind::IstioCacerts => Labels {
                current: CURRENT.into(),
                pending: PENDING.into(),
            },
            kind => Labels {
                current: format!("{}-current", kind.name()),
                pending: format!("{}-pending", kind.name()),
            },
        }
    }
}

/// The id of the version a secret is created with. Every secret must have an AWSCURRENT version
/// and Secrets Manager puts that label on the first version written; creating the secret with
/// this placeholder keeps AWSCURRENT off another kind's record until istio-cacerts moves it.
pub(super) fn placeholder_version(cluster: &ClusterName) -> String {
    meshca_core::escrow::GenerationToken::derive("meshca:placeholder", cluster, 0).to_string()
}

/// The kinds a secret holds, each with whether its pending label is set, read from its
/// versions' labels: a kind with either of its labels (istio-cacerts' AWSCURRENT counts only on a
/// record, not on the placeholder), unless the kind was retired and its labels have not moved
/// since.
pub(super) fn kinds_held(
    cluster: &ClusterName,
    versions: &HashMap<String, Vec<String>>,
    tags: &BTreeMap<String, String>,
) -> Vec<(Kind, bool)> {
    let placeholder = placeholder_version(cluster);
    Kind::ALL
        .into_iter()
        .filter_map(|kind| {
            let labels = Labels::of(kind);
            let pending = labelled(versions, &labels.pending).is_some();
            let current = labelled(versions, &labels.current).is_some_and(|id| *id != placeholder);
            let (tag, snapshot) = retired(kind, versions);
            let retired = tags.get(&tag) == Some(&snapshot);
            ((current || pending) && !retired).then_some((kind, pending))
        })
        .collect()
}

/// The version that carries `label`.
fn labelled<'v>(versions: &'v HashMap<String, Vec<String>>, label: &str) -> Option<&'v String> {
    versions
        .iter()
        .find(|(_, l)| l.iter().any(|s| s == label))
        .map(|(id, _)| id)
}

/// The tag that marks `kind` retired beside other kinds, and its value now: the versions its
/// two labels are on. A later generation moves a label, and the mark no longer matches.
pub(super) fn retired(kind: Kind, versions: &HashMap<String, Vec<String>>) -> (String, String) {
    let labels = Labels::of(kind);
    let at = |label: &str| {
        labelled(versions, label)
            .map_or("-", String::as_str)
            .to_string()
    };
    (
        format!("meshca:{}:retired", kind.name()),
        format!("{} {}", at(&labels.current), at(&labels.pending)),
    )
}

/// A secret's tags as a map.
pub(super) fn tag_map(tags: &[aws_sdk_secretsmanager::types::Tag]) -> BTreeMap<String, String> {
    tags.iter()
        .filter_map(|t| Some((t.key()?.to_string(), t.value()?.to_string())))
        .collect()
}

/// The summary's tags. istio-cacerts keeps the six it always had; every other kind packs its
/// figures into one tag beside its issuer, so six kinds and a deployment's own tags stay within
/// Secrets Manager's 50.
const GENERATION_TAG: &str = "meshca:generation";
const NOT_BEFORE_TAG: &str = "meshca:not-before";
const NOT_AFTER_TAG: &str = "meshca:not-after";
const ISSUER_TAG: &str = "meshca:issuer";
const ROOT_TAG: &str = "meshca:root-sha256";
const FILES_TAG: &str = "meshca:files-sha256";
/// Secrets Manager's limit on a tag value; a longer issuer id leaves the record unsummarised.
const MAX_TAG_VALUE: usize = 256;

fn packed_tag(kind: Kind) -> String {
    format!("meshca:{}:summary", kind.name())
}

fn issuer_tag(kind: Kind) -> String {
    match kind {
        Kind::IstioCacerts => ISSUER_TAG.into(),
        kind => format!("meshca:{}:issuer", kind.name()),
    }
}

fn time(t: time::OffsetDateTime) -> String {
    meshca_core::timestamp::rfc3339(t)
}

fn parse_time(s: &str) -> Option<time::OffsetDateTime> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()
}

/// The tags that carry `kind`'s summary.
pub(super) fn summary_tags(kind: Kind, s: &Summary) -> Vec<(String, String)> {
    let mut tags: Vec<(String, String)> = match kind {
        Kind::IstioCacerts => vec![
            (GENERATION_TAG.into(), s.generation.to_string()),
            (NOT_BEFORE_TAG.into(), time(s.not_before)),
            (NOT_AFTER_TAG.into(), time(s.not_after)),
            (ROOT_TAG.into(), s.root_sha256.clone()),
            (FILES_TAG.into(), s.files_sha256.clone()),
        ],
        kind => vec![(
            packed_tag(kind),
            format!(
                "{} {} {} {} {}",
                s.generation,
                time(s.not_before),
                time(s.not_after),
                s.root_sha256,
                s.files_sha256
            ),
        )],
    };
    if s.authority_id.len() <= MAX_TAG_VALUE {
        tags.push((issuer_tag(kind), s.authority_id.clone()));
    }
    tags
}

/// Every tag key `kind`'s summary may use: what retiring the kind removes.
pub(super) fn summary_tag_keys(kind: Kind) -> Vec<String> {
    match kind {
        Kind::IstioCacerts => [
            GENERATION_TAG,
            NOT_BEFORE_TAG,
            NOT_AFTER_TAG,
            ROOT_TAG,
            FILES_TAG,
            ISSUER_TAG,
        ]
        .map(String::from)
        .to_vec(),
        kind => vec![packed_tag(kind), issuer_tag(kind)],
    }
}

/// The tag whose removal makes `kind`'s record read, not kept from its summary: the one that
/// holds the files' hash.
pub(super) fn files_tag(kind: Kind) -> String {
    match kind {
        Kind::IstioCacerts => FILES_TAG.into(),
        kind => packed_tag(kind),
    }
}

/// `kind`'s summary from a secret's tags, if every figure is there and reads.
pub(super) fn summary_from(
    kind: Kind,
    tags: &BTreeMap<String, String>,
    pending: bool,
) -> Option<Summary> {
    let tag = |key: &str| tags.get(key).map(String::as_str);
    let authority_id = tag(&issuer_tag(kind))?.to_string();
    let (generation, not_before, not_after, root, files) = match kind {
        Kind::IstioCacerts => (
            tag(GENERATION_TAG)?,
            tag(NOT_BEFORE_TAG)?,
            tag(NOT_AFTER_TAG)?,
            tag(ROOT_TAG)?,
            tag(FILES_TAG)?,
        ),
        kind => {
            let mut parts = tag(&packed_tag(kind))?.split(' ');
            let mut next = || parts.next();
            (next()?, next()?, next()?, next()?, next()?)
        }
    };
    Some(Summary {
        generation: generation.parse().ok()?,
        not_before: parse_time(not_before)?,
        not_after: parse_time(not_after)?,
        authority_id,
        root_sha256: root.to_string(),
        files_sha256: files.to_string(),
        pending,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn summary() -> Summary {
        Summary {
            generation: 12,
            not_before: datetime!(2026-01-01 0:00 UTC),
            not_after: datetime!(2027-01-01 0:00 UTC),
            authority_id: "arn:aws:acm-pca:eu-west-1:111122223333:certificate-authority/0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0".into(),
            root_sha256: "a".repeat(64),
            files_sha256: "b".repeat(64),
            pending: false,
        }
    }

    fn tags_of(pairs: Vec<(String, String)>) -> BTreeMap<String, String> {
        pairs.into_iter().collect()
    }

    #[test]
    fn every_kind_reads_its_own_summary_back_and_no_other_kinds() {
        let mut all = Vec::new();
        for kind in Kind::ALL {
            let tags = summary_tags(kind, &summary());
            assert!(
                tags.iter().all(|(_, v)| v.len() <= MAX_TAG_VALUE),
                "{tags:?}"
            );
            all.extend(tags);
        }
        let tags = tags_of(all.clone());
        assert_eq!(tags.len(), all.len(), "no two kinds share a tag key");
        for kind in Kind::ALL {
            assert_eq!(summary_from(kind, &tags, false), Some(summary()), "{kind}");
            let mut without = tags.clone();
            without.remove(&files_tag(kind));
            assert_eq!(
                summary_from(kind, &without, false),
                None,
                "{kind}: files tag gone"
            );
        }
        // Every kind's summary and retired mark, and meshca's two own tags, leave at least 24 of
        // Secrets Manager's 50 to the deployment's tags.
        let used = all.len() + Kind::ALL.len() + 2;
        assert!(used <= 26, "{used} tags");
    }

    #[test]
    fn a_damaged_packed_summary_is_no_summary() {
        let kind = Kind::XcpEdge;
        for bad in [
            "",
            "12",
            "x 2026-01-01T00:00:00Z 2027-01-01T00:00:00Z a b",
            "12 yesterday 2027-01-01T00:00:00Z a b",
        ] {
            let mut tags = tags_of(summary_tags(kind, &summary()));
            tags.insert(packed_tag(kind), bad.into());
            assert_eq!(summary_from(kind, &tags, false), None, "{bad:?}");
        }
    }

    #[test]
    fn labels_are_distinct_for_every_kind_and_fit_the_limit_of_twenty() {
        let mut labels: Vec<String> = Kind::ALL
            .into_iter()
            .flat_map(|k| {
                let l = Labels::of(k);
                [l.current, l.pending]
            })
            .collect();
        labels.push("AWSPREVIOUS".into());
        let count = labels.len();
        labels.sort();
        labels.dedup();
        assert_eq!(labels.len(), count);
        assert!(count <= 20, "{count} staging labels");
    }

    #[test]
    fn the_kinds_held_are_read_from_labels_and_the_placeholder_is_none() {
        let c: ClusterName = "c1".parse().unwrap();
        let placeholder = placeholder_version(&c);
        let versions = |pairs: &[(&str, &[&str])]| -> HashMap<String, Vec<String>> {
            pairs
                .iter()
                .map(|(id, l)| (id.to_string(), l.iter().map(|s| s.to_string()).collect()))
                .collect()
        };
        // Made by another kind: AWSCURRENT is on the placeholder, so istio-cacerts is not held.
        let made = versions(&[
            (&placeholder, &["AWSCURRENT"]),
            ("v1", &["xcp-edge-pending"]),
        ]);
        let none = BTreeMap::new();
        assert_eq!(kinds_held(&c, &made, &none), vec![(Kind::XcpEdge, true)]);
        // A secret from before kinds shared one: AWSCURRENT on istio-cacerts' record.
        let old = versions(&[
            ("v1", &["AWSCURRENT"]),
            ("v2", &["cert-manager-ca-current"]),
        ]);
        assert_eq!(
            kinds_held(&c, &old, &none),
            vec![(Kind::IstioCacerts, false), (Kind::CertManagerCa, false)]
        );
        // istio-cacerts retired beside cert-manager-ca: not held while its labels stay put.
        let mark = BTreeMap::from([retired(Kind::IstioCacerts, &old)]);
        assert_eq!(mark["meshca:istio-cacerts:retired"], "v1 -");
        assert_eq!(
            kinds_held(&c, &old, &mark),
            vec![(Kind::CertManagerCa, false)]
        );
        // Its cluster came back: a new claim moves AWSPENDING, and it is held again.
        let back = versions(&[
            ("v1", &["AWSCURRENT"]),
            ("v2", &["cert-manager-ca-current"]),
            ("v3", &["AWSPENDING"]),
        ]);
        assert_eq!(
            kinds_held(&c, &back, &mark),
            vec![(Kind::IstioCacerts, true), (Kind::CertManagerCa, false)]
        );
        // istio-cacerts' first claim in a made secret: pending only.
        let first = versions(&[(&placeholder, &["AWSCURRENT"]), ("v1", &["AWSPENDING"])]);
        assert_eq!(
            kinds_held(&c, &first, &none),
            vec![(Kind::IstioCacerts, true)]
        );
        assert_eq!(
            kinds_held(&c, &versions(&[(&placeholder, &["AWSCURRENT"])]), &none),
            vec![]
        );
    }
}

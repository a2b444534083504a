//! How a deployment makes a kind of certificate: key, subject, validity, renewal, landing, and
//! whose terms a cluster's next generation follows. The reconciler reads these; a cluster's
//! record keeps what it was issued with (`terms`).

use crate::authority::Validity;
use crate::cluster::ClusterName;
use crate::csr::Subject;
use crate::key::KeyAlgorithm;
use crate::kind::KindSpec;
use crate::renewal::RenewalPolicy;
use crate::validate::Profile;

/// How intermediates are made for this deployment.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The algorithm of a new intermediate's key.
    pub key_algorithm: KeyAlgorithm,
    /// The subject's O (`None`: none).
    pub organization: Option<String>,
    /// The subject's OU (`None`: none).
    pub organizational_unit: Option<String>,
    /// `None`: `<cluster> istio intermediate CA`.
    pub common_name: Option<String>,
    /// How long a new certificate lives.
    pub validity: Validity,
    /// The rules a bundle is judged by (istiod's, or a kind's).
    pub profile: Profile,
    /// When a bundle is due for renewal.
    pub renewal: RenewalPolicy,
    /// Which kind of certificate, and where it lands (default: Istio's cacerts).
    pub kind: KindSpec,
    /// Where the cluster lives when its name alone does not tell it apart for the CA (a member
    /// account's `<account>/<region>`): part of every generation token, so two clusters of one
    /// name in two accounts never share a PCA idempotency token. `None` (meshca's own account)
    /// keeps the tokens records have always had.
    pub scope: Option<String>,
    /// Let a cluster move to an authority whose roots share none with its escrowed bundle's.
    /// Off: that move cuts the cluster off from its mesh, so it is refused (a forgotten
    /// `--ca-dir`, a changed CA in the functions' configuration); root changes belong to a
    /// rotation, whose bundles always overlap. On only for a lab (`meshca issue --new-root`).
    pub new_root: bool,
    /// Whose terms a new generation of a cluster with recorded terms is issued with.
    pub standing: Standing,
}

/// Whose terms a cluster's next generation is issued with, once it has a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Standing {
    /// The cluster's own recorded terms; these settings only for a cluster without a record.
    /// Rotation phases and reruns: nothing they do changes a cluster's key or validity.
    #[default]
    Recorded,
    /// These settings, at the cluster's next renewal (a healthy bundle is not re-issued for
    /// them): the functions' configuration, and the CLI once it settled its flags against the
    /// record. Each change is kept in the record's history and reported.
    Configured,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            key_algorithm: KeyAlgorithm::EcP256,
            organization: None,
            organizational_unit: None,
            common_name: None,
            validity: Validity::Days(365),
            profile: Profile {
                key_algorithm: Some(KeyAlgorithm::EcP256),
                ..Profile::default()
            },
            renewal: RenewalPolicy::default(),
            kind: KindSpec::default(),
            scope: None,
            new_root: false,
            standing: Standing::Recorded,
        }
    }
}

impl Settings {
    /// The subject a new CSR for `cluster` carries: the kind's common name unless one is set.
    pub fn subject(&self, cluster: &ClusterName) -> Subject {
        let common_name = self
            .common_name
            .clone()
            .unwrap_or_else(|| self.kind.common_name(cluster));
        Subject {
            common_name,
            organization: None,
            organizational_unit: None,
        }
        .with_organization(self.organization.clone(), self.organizational_unit.clone())
    }

    /// What a bundle of `cluster` must satisfy to be written into it: its shape and identity.
    /// Its key algorithm is the record's (the reconciler judged it by the cluster's terms), so a
    /// cluster keeps its recorded key through a changed configuration until its next renewal.
    pub fn delivery_profile(&self, cluster: &ClusterName) -> Profile {
        Profile {
            key_algorithm: None,
            ..self.profile_for(cluster)
        }
    }

    /// The profile a bundle of `cluster` is judged by: a TLS kind's identity is the cluster's own,
    /// and a kind whose mesh pins the key algorithm has that one.
    pub fn profile_for(&self, cluster: &ClusterName) -> Profile {
        let mut profile = self.profile.clone();
        if let Some(identity) = self.kind.identity(cluster) {
            profile.shape = crate::validate::Shape::Leaf(identity);
        }
        if let Some(pin) = self.kind.kind.profile().key_pin {
            profile.key_algorithm = Some(pin);
        }
        profile
    }

    /// The key algorithm a new generation gets: the kind's pin, else the configured one.
    pub fn key_algorithm_for_kind(&self) -> KeyAlgorithm {
        self.kind
            .kind
            .profile()
            .key_pin
            .unwrap_or(self.key_algorithm)
    }
}

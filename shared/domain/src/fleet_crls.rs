//! The fleet's `ca-crl.pem`: the authority's CRLs (what it revoked) and each cluster
//! intermediate's own, one bundle delivered to every istio-layout cluster alike. It grows with
//! the fleet, and Kubernetes caps what holds it, so its size is judged before it goes anywhere.

use time::OffsetDateTime;

use crate::crl::{self, CrlError, Listed};

/// A Secret (and the `istio-ca-crl` ConfigMap istiod copies into every namespace) holds 1 MiB.
const OBJECT_LIMIT: usize = 1024 * 1024;
/// Client-side `kubectl apply` keeps the whole object in an annotation capped at 256 KiB.
const ANNOTATION_LIMIT: usize = 256 * 1024;
/// The cacerts files beside the CRLs in the Secret.
const BESIDE: usize = 4096;

/// The fleet's CRLs, assembled and read once.
#[derive(Debug, Clone)]
pub struct FleetCrls {
    /// `ca-crl.pem` as delivered.
    pub text: String,
    /// What each CRL says, in order.
    pub listed: Vec<Listed>,
}

impl FleetCrls {
    /// `text` as a cluster holds it, judged for its intermediate `ca_cert_pem` as the data
    /// plane will: the intermediate's own CRL there (istiod's rule), and none lapsed at `now`.
    pub fn held(text: &str, ca_cert_pem: &str, now: OffsetDateTime) -> Result<Self, CrlError> {
        crl::signed_by_own(text, ca_cert_pem, now)?;
        let held = FleetCrls::assemble(text, Vec::new())?;
        match held.first_lapse().filter(|t| *t <= now) {
            Some(t) => Err(CrlError::Lapsed(crate::timestamp::rfc3339(t))),
            None => Ok(held),
        }
    }

    /// The authority's CRLs followed by the intermediates' own.
    pub fn assemble(
        authority: &str,
        own: impl IntoIterator<Item = String>,
    ) -> Result<Self, CrlError> {
        let mut text = authority.to_string();
        for crl in own {
            text.push_str(&crl);
        }
        let listed = crl::parse(&text)?;
        Ok(FleetCrls { text, listed })
    }

    /// How many revoked certificates the CRLs list.
    pub fn revoked(&self) -> usize {
        self.listed.iter().map(|l| l.serials.len()).sum()
    }

    /// Whether a CRL names `serial` (hex, in any case, with or without colons or leading zeros).
    pub fn lists(&self, serial: &str) -> bool {
        let plain = |s: &str| s.trim_start_matches('0').to_ascii_lowercase();
        let serial = plain(&serial.replace(':', ""));
        self.listed
            .iter()
            .any(|l| l.serials.iter().any(|s| plain(s) == serial))
    }

    /// When the first CRL lapses (`None`: none ever does): past it, every data plane holding
    /// these CRLs refuses every chain, so it is re-published well before.
    pub fn first_lapse(&self) -> Option<OffsetDateTime> {
        self.listed.iter().filter_map(|l| l.next_update).min()
    }

    /// Refuses CRLs that no longer fit a Secret, and warns, with the fleet size each limit
    /// allows at this size per CRL, once a client-side `kubectl apply` would overflow.
    pub fn fits(&self) -> Result<Option<String>, CrlError> {
        let (bytes, crls) = (self.text.len(), self.listed.len());
        // The Secret's data is base64 (4/3).
        let in_secret = bytes * 4 / 3 + BESIDE;
        let per_crl = bytes / crls.max(1);
        let clusters_at = |limit: usize| (limit - BESIDE) * 3 / 4 / per_crl.max(1);
        if in_secret > OBJECT_LIMIT {
            return Err(CrlError::TooLarge(format!(
                "the fleet's CRLs ({bytes} bytes, {crls} CRLs) no longer fit in a cacerts Secret (1 MiB): about {} clusters fit at {per_crl} bytes a CRL; split the fleet across roots",
                clusters_at(OBJECT_LIMIT)
            )));
        }
        Ok((in_secret * 2 > ANNOTATION_LIMIT).then(|| {
            format!(
                "note: the fleet's CRLs are {bytes} bytes; from about {} clusters a client-side `kubectl apply` of cacerts.yaml overflows its 256 KiB annotation: use `kubectl apply --server-side`",
                clusters_at(ANNOTATION_LIMIT)
            )
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bundle of `bytes` bytes holding `crls` CRLs, for judging its size alone.
    fn sized(bytes: usize, crls: usize) -> FleetCrls {
        let one = Listed {
            issuer: "CN=x".into(),
            next_update: None,
            serials: vec!["0a".into()],
        };
        FleetCrls {
            text: "x".repeat(bytes),
            listed: vec![one; crls],
        }
    }

    #[test]
    fn the_bundle_size_is_checked_against_what_kubernetes_holds() {
        // 20 clusters of EC P-256 intermediates, as measured: 7.6 KB, nothing to say.
        assert_eq!(sized(7611, 21).fits().unwrap(), None);
        // 400 of them: past half the annotation, a warning naming server-side apply.
        let warned = sized(357 * 400, 401).fits().unwrap().expect("a warning");
        assert!(warned.contains("--server-side"), "{warned}");
        assert!(warned.contains("from about 543 clusters"), "{warned}");
        // 3,000: no longer fits a Secret at all.
        let refused = sized(357 * 3000, 3001).fits().unwrap_err().to_string();
        assert!(
            refused.contains("no longer fit in a cacerts Secret"),
            "{refused}"
        );
    }

    #[test]
    fn serials_are_found_in_any_spelling_and_the_first_lapse_is_the_earliest() {
        let mut fleet = sized(10, 2);
        fleet.listed[1].serials = vec!["1f2e".into()];
        let soon = OffsetDateTime::now_utc();
        fleet.listed[1].next_update = Some(soon);
        assert!(fleet.lists("1F:2E") && fleet.lists("001f2e") && fleet.lists("0A"));
        assert!(!fleet.lists("1f2f"));
        assert_eq!(fleet.revoked(), 2);
        assert_eq!(fleet.first_lapse(), Some(soon));
    }
}

//! Pending generations as the reconciler makes them, for tests that stop a run half-way.

use time::OffsetDateTime;

/// The pending record a reconcile would claim for a cluster's first generation.
pub async fn first_pending(
    authority: &dyn meshca_core::Authority,
    cluster: &meshca_core::ClusterName,
    settings: &meshca_core::Settings,
) -> meshca_core::escrow::Pending {
    let info = authority.describe().await.unwrap();
    let key = meshca_core::PrivateKey::generate(settings.key_algorithm).unwrap();
    meshca_core::escrow::Pending {
        schema: meshca_core::escrow::SCHEMA,
        cluster: cluster.clone(),
        kind: meshca_core::Kind::IstioCacerts,
        generation: 1,
        token: meshca_core::escrow::GenerationToken::derive(&info.id, cluster, 1),
        authority_id: info.id,
        key_algorithm: settings.key_algorithm,
        csr: meshca_core::csr::build_csr(&key, &settings.subject(cluster)).unwrap(),
        ca_key: key.to_pkcs8_pem(),
        certificate_id: None,
        created_at: OffsetDateTime::now_utc(),
        validity: Some(settings.validity),
        refused: None,
    }
}

/// What the issue step sends for `pending`: its CSR under its generation token.
pub async fn issue_for(
    authority: &dyn meshca_core::Authority,
    pending: &meshca_core::escrow::Pending,
    validity: meshca_core::Validity,
) -> meshca_core::CertificateId {
    let request = meshca_core::authority::IssueRequest {
        csr_pem: &pending.csr,
        validity,
        idempotency_token: pending.token.as_str(),
        template: meshca_core::Template::SubordinateCaPathLen0,
        resumed: false,
    };
    authority.issue(&request).await.unwrap()
}

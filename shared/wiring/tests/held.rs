//! A held cluster through `Reconciler::apply`, the path every sweep, CreateCluster event and
//! rotation takes: after `revoke` nothing is issued or delivered for it, forced or not; after
//! `lift` the next run issues a new key and generation.

use meshca_core::authority::RevocationReason;
use meshca_core::{ClusterName, KindSpec, Outcome, Reconciler, RenewReason, Settings};
use meshca_local::{LocalCa, LocalEscrow, LocalRootSpec};
use meshca_wiring::FilesDelivery;
use time::OffsetDateTime;

#[tokio::test]
async fn a_held_cluster_is_neither_issued_nor_delivered_until_lifted() {
    let dir = tempfile::tempdir().unwrap();
    let ca = LocalCa::open_or_create(&dir.path().join("ca"), &LocalRootSpec::default()).unwrap();
    let escrow = LocalEscrow::new(dir.path().join("escrow"));
    let settings = Settings::default();
    let reconciler = Reconciler {
        authority: &ca,
        escrow: &escrow,
        settings: &settings,
    };
    let x: ClusterName = "x".parse().unwrap();
    let out = dir.path().join("out");
    let delivery = FilesDelivery::new(
        &out,
        KindSpec::default().landing(),
        settings.delivery_profile(&x),
    );
    let first = reconciler.apply(&x, &delivery, false).await;
    assert!(
        matches!(first, Outcome::Renewed { generation: 1, .. }),
        "{first:?}"
    );

    let revoked = reconciler
        .revoke(
            &x,
            RevocationReason::KeyCompromise,
            OffsetDateTime::now_utc(),
            "the held test",
        )
        .await
        .unwrap();
    assert_eq!(
        (revoked.generation, revoked.serials.len(), revoked.already),
        (1, 1, false)
    );
    std::fs::remove_dir_all(&out).unwrap();
    for force in [false, true] {
        let held = reconciler.apply(&x, &delivery, force).await;
        let Outcome::Skipped { reason } = &held else {
            panic!("a held cluster is skipped, not failed or issued: {held:?}");
        };
        assert!(
            reason.contains("held") && reason.contains("key-compromise"),
            "{reason}"
        );
        assert!(!out.exists(), "nothing delivered for a held cluster");
    }
    let issued = std::fs::read_dir(dir.path().join("ca/issued"))
        .unwrap()
        .count();

    assert_eq!(reconciler.lift(&x).await.unwrap(), 1);
    let after = reconciler.apply(&x, &delivery, false).await;
    assert!(
        matches!(
            &after,
            Outcome::Renewed {
                generation: 2,
                reason: RenewReason::Revoked,
                ..
            }
        ),
        "{after:?}"
    );
    assert!(
        std::fs::read_dir(dir.path().join("ca/issued"))
            .unwrap()
            .count()
            > issued
    );
}

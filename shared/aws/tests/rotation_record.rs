//! The root rotation record in emulated Secrets Manager: compare-and-swap by revision tokens.

use meshca_aws::SecretsRotationStore;
use meshca_aws::rotation::record_name;
use meshca_core::rotation::{Anchor, RootRotation, RotationStore, RotationStoreError};
use meshca_test_support::aws::AwsEmulator;
use time::{Duration, OffsetDateTime};

fn anchor(id: &str) -> Anchor {
    Anchor {
        authority_id: id.into(),
        locator: id.into(),
        root_bundle: format!("{id}\n"),
    }
}

#[tokio::test]
async fn racing_writers_of_one_revision_leave_one_winner() {
    let emu = AwsEmulator::start();
    let config = emu.sdk_config().await;
    let name = record_name("meshca/eu-west-1/");
    assert_eq!(name, "meshca/eu-west-1/_rotation");
    let store = SecretsRotationStore::from_config(&config, &name, None);
    assert!(store.load().await.unwrap().is_none());

    let started = RootRotation::start(
        anchor("a"),
        anchor("b"),
        Duration::ZERO,
        OffsetDateTime::now_utc(),
    )
    .unwrap();
    let saved = store.save(&started).await.unwrap();
    assert_eq!(saved.revision, 1);
    assert_eq!(store.load().await.unwrap().unwrap(), saved);
    assert!(
        matches!(
            store.save(&started).await,
            Err(RotationStoreError::Conflict)
        ),
        "a second start"
    );

    // Two runs read revision 1 and race to advance it: a stale read and a concurrent write.
    let now = OffsetDateTime::now_utc();
    let (mut one, mut two) = (saved.clone(), saved.clone());
    one.advance(Vec::new(), false, now).unwrap();
    two.abort(now).unwrap();
    let other = SecretsRotationStore::from_config(&config, &name, None);
    let (r1, r2) = tokio::join!(store.save(&one), other.save(&two));
    assert!(
        r1.is_ok() != r2.is_ok(),
        "exactly one of two writers of revision 2 wins: {r1:?} {r2:?}"
    );
    let stored = store.load().await.unwrap().unwrap();
    assert_eq!(stored.revision, 2);
    assert_eq!(stored.aborted, r2.is_ok());
    // A retry of the winning write is idempotent only as the record it wrote: anything else loses.
    assert!(matches!(
        store.save(&saved).await,
        Err(RotationStoreError::Conflict)
    ));
}

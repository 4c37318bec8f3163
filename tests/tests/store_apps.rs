//! Apps, plans and API keys against DynamoDB Local.

use chrono::Duration;
use retarget_shared::adapters::store::StoreError;
use retarget_shared::domain::{ApiKey, NewApp, Plan, TwilioConfig};
use retarget_shared::{Clock, keys};
use retarget_tests::World;

fn new_app(plan: Plan) -> NewApp {
    NewApp { name: "Acme".into(), plan, twilio: None, fcm: None, apns: None }
}

#[tokio::test]
async fn api_keys_are_stored_only_as_hashes_and_found_by_them() {
    let world = World::new().await;
    let app = world.store.create_app(new_app(Plan::Pro)).await.unwrap();
    let key = world.store.create_api_key(app.app_id).await.unwrap();

    let found = world.store.app_for_key_hash(&ApiKey::presented(key.reveal()).hash()).await.unwrap();
    assert_eq!(found.map(|a| a.app_id), Some(app.app_id));
    assert_eq!(world.store.app_for_key_hash(&ApiKey::generate().hash()).await.unwrap(), None);

    let dump = format!("{:?}", world.scan_all().await);
    assert!(!dump.contains(key.reveal()), "the clear API key was stored");
    assert!(dump.contains(&keys::api_key(key.hash().as_str())));
}

#[tokio::test]
async fn revoked_keys_stop_working_and_only_their_app_can_revoke_them() {
    let world = World::new().await;
    let app = world.store.create_app(new_app(Plan::Free)).await.unwrap();
    let other = world.store.create_app(new_app(Plan::Free)).await.unwrap();
    let key = world.store.create_api_key(app.app_id).await.unwrap();

    let err = world.store.revoke_api_key(other.app_id, &key).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err}");
    assert!(world.store.app_for_key_hash(&key.hash()).await.unwrap().is_some());

    world.store.revoke_api_key(app.app_id, &key).await.unwrap();
    assert!(world.store.app_for_key_hash(&key.hash()).await.unwrap().is_none());
    assert!(matches!(world.store.revoke_api_key(app.app_id, &key).await, Err(StoreError::NotFound)));
}

#[tokio::test]
async fn moving_to_a_paid_plan_stamps_retargeting_enabled_at() {
    let world = World::new().await;
    let app = world.store.create_app(new_app(Plan::Free)).await.unwrap();
    assert_eq!(app.retargeting_enabled_at, None);
    let before = world.clock.now();
    assert!(!app.retargetable_at(before));

    world.clock.advance(Duration::hours(1));
    let upgraded = world.store.set_plan(app.app_id, Plan::Pro).await.unwrap();
    assert_eq!(upgraded.retargeting_enabled_at, Some(world.clock.now()));
    assert!(!upgraded.retargetable_at(before), "messages from the free period stay unretargetable");
    assert!(upgraded.retargetable_at(world.clock.now()));

    // Pro → enterprise keeps the original stamp.
    world.clock.advance(Duration::hours(1));
    let enterprise = world.store.set_plan(app.app_id, Plan::Enterprise).await.unwrap();
    assert_eq!(enterprise.retargeting_enabled_at, upgraded.retargeting_enabled_at);
    assert_eq!(world.store.get_app(app.app_id).await.unwrap(), Some(enterprise));
}

#[tokio::test]
async fn paid_apps_retarget_from_creation_and_keep_their_provider_credentials() {
    let world = World::new().await;
    let twilio = TwilioConfig {
        account_sid: "AC123".into(),
        auth_token: "secret-token".into(),
        from: Some("+15550001111".into()),
        messaging_service_sid: None,
    };
    let app =
        world.store.create_app(NewApp { twilio: Some(twilio.clone()), ..new_app(Plan::Pro) }).await.unwrap();
    assert_eq!(app.retargeting_enabled_at, Some(world.clock.now()));
    let stored = world.store.get_app(app.app_id).await.unwrap().unwrap();
    assert_eq!(stored.twilio, Some(twilio));
    assert!(!format!("{stored:?}").contains("secret-token"), "Debug leaks the auth token");
    assert!(stored.push_webhook_secret.len() >= 32);
}

#[tokio::test]
async fn unknown_apps_are_not_found() {
    let world = World::new().await;
    let missing = retarget_shared::domain::AppId::new();
    assert!(world.store.get_app(missing).await.unwrap().is_none());
    assert!(matches!(world.store.set_plan(missing, Plan::Pro).await, Err(StoreError::NotFound)));
    assert!(matches!(world.store.create_api_key(missing).await, Err(StoreError::NotFound)));
}

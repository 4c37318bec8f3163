//! Apps, plans and API keys against DynamoDB Local.

use chrono::Duration;
use retarget_shared::adapters::store::StoreError;
use retarget_shared::domain::{
    ApiKey, Credentials, HookSecret, NewApp, Plan, PushSecret, SecretScope, SmsSecret,
};
use retarget_shared::{Clock, keys};
use retarget_tests::{World, placeholder_credentials};

fn new_app(plan: Plan) -> NewApp {
    NewApp { name: "Acme".into(), plan, credentials: Credentials::default() }
}

#[tokio::test]
async fn api_keys_are_stored_only_as_hashes_and_found_by_them() {
    let world = World::new().await;
    let app = world.store.create_app(new_app(Plan::Pro)).await.unwrap().app;
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
    let app = world.store.create_app(new_app(Plan::Free)).await.unwrap().app;
    let other = world.store.create_app(new_app(Plan::Free)).await.unwrap().app;
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
    let app = world.store.create_app(new_app(Plan::Free)).await.unwrap().app;
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

/// Issue 14: the app item holds no secret; each secret lives in the item of its scope (what
/// IAM's `dynamodb:LeadingKeys` conditions give only to the functions that need it).
#[tokio::test]
async fn paid_apps_retarget_from_creation_and_keep_their_secrets_apart() {
    let world = World::new().await;
    let credentials = placeholder_credentials();
    let twilio = credentials.twilio.clone().unwrap();
    let (fcm, apns) = (credentials.fcm.clone().unwrap(), credentials.apns.clone().unwrap());
    let created = world
        .store
        .create_app(NewApp { credentials: credentials.clone(), ..new_app(Plan::Pro) })
        .await
        .unwrap();
    let app = created.app.clone();
    assert_eq!(app.retargeting_enabled_at, Some(world.clock.now()));
    let stored = world.store.get_app(app.app_id).await.unwrap().unwrap();
    assert_eq!(stored, app);
    assert_eq!(stored.twilio.as_ref(), Some(&twilio.account));
    assert!(created.push_webhook_secret.len() >= 32);

    let sms: SmsSecret = world.store.get_secret(app.app_id).await.unwrap();
    let push: PushSecret = world.store.get_secret(app.app_id).await.unwrap();
    let hooks: HookSecret = world.store.get_secret(app.app_id).await.unwrap();
    assert_eq!(sms.twilio(&stored), Some(twilio.clone()));
    assert_eq!((push.fcm(&stored), push.apns(&stored)), (Some(fcm.clone()), Some(apns.clone())));
    assert_eq!(hooks.push_webhook_secret, created.push_webhook_secret);

    // Item by item: secrets only under SECRET#{app}#{scope}, each scope only its own.
    let secrets = [
        ("twilio", twilio.auth_token.as_str(), SecretScope::Sms),
        ("fcm", fcm.private_key.as_str(), SecretScope::Push),
        ("apns", apns.private_key_pem.as_str(), SecretScope::Push),
        ("hooks", created.push_webhook_secret.as_str(), SecretScope::Hooks),
    ];
    for item in world.scan_all().await {
        let pk = item.get("pk").and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
        let text = format!("{item:?}");
        for (what, secret, scope) in secrets {
            if text.contains(secret) {
                assert_eq!(pk, keys::secret(app.app_id, scope), "the {what} secret is stored in {pk}");
            }
        }
    }
    assert!(!format!("{stored:?} {created:?} {sms:?} {push:?} {hooks:?}").contains("placeholder-auth-token"));
}

/// Rotating one provider keeps the others, in the app item and in the secret items alike; an
/// unknown app is refused and nothing is written.
#[tokio::test]
async fn set_credentials_replaces_one_provider_and_keeps_the_rest() {
    let world = World::new().await;
    let credentials = placeholder_credentials();
    let app = world
        .store
        .create_app(NewApp { credentials: credentials.clone(), ..new_app(Plan::Pro) })
        .await
        .unwrap()
        .app;
    let mut fcm = credentials.fcm.clone().unwrap();
    fcm.private_key = "rotated-key".into();
    fcm.account.project_id = "rotated-project".into();
    let only_fcm = Credentials { fcm: Some(fcm.clone()), ..Credentials::default() };
    world.store.set_credentials(app.app_id, only_fcm.clone()).await.unwrap();

    let stored = world.store.get_app(app.app_id).await.unwrap().unwrap();
    let push: PushSecret = world.store.get_secret(app.app_id).await.unwrap();
    let sms: SmsSecret = world.store.get_secret(app.app_id).await.unwrap();
    assert_eq!(push.fcm(&stored), Some(fcm));
    assert_eq!(push.apns(&stored), credentials.apns, "APNs kept");
    assert_eq!(sms.twilio(&stored), credentials.twilio, "Twilio kept");

    let before = world.snapshot().await;
    let missing = retarget_shared::domain::AppId::new();
    let refused = world.store.set_credentials(missing, only_fcm).await;
    assert!(matches!(refused, Err(StoreError::NotFound)), "{refused:?}");
    assert_eq!(world.snapshot().await, before, "nothing written for an unknown app");
}

#[tokio::test]
async fn unknown_apps_are_not_found() {
    let world = World::new().await;
    let missing = retarget_shared::domain::AppId::new();
    assert!(world.store.get_app(missing).await.unwrap().is_none());
    assert!(matches!(world.store.set_plan(missing, Plan::Pro).await, Err(StoreError::NotFound)));
    assert!(matches!(world.store.create_api_key(missing).await, Err(StoreError::NotFound)));
}

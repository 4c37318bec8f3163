//! The operator CLI's commands against DynamoDB Local, parsed exactly as the binary parses them.

use clap::Parser;
use retarget_admin::{AdminError, Cli, run};
use retarget_shared::domain::{ApiKey, AppId};
use retarget_tests::World;
use serde_json::Value;

async fn admin(world: &World, args: &[&str]) -> Result<Value, AdminError> {
    let cli = Cli::try_parse_from(std::iter::once("retarget-admin").chain(args.iter().copied()))
        .map_err(|e| AdminError::Invalid(e.to_string()))?;
    run(&world.store, cli).await
}

#[tokio::test]
async fn app_create_prints_the_contracts_fields_and_a_working_key() {
    let world = World::new().await;
    let out = admin(
        &world,
        &[
            "app",
            "create",
            "--name",
            "Acme",
            "--plan",
            "pro",
            "--twilio-account-sid",
            "AC1",
            "--twilio-auth-token",
            "tok",
            "--twilio-from",
            "+15550001111",
        ],
    )
    .await
    .unwrap();
    let mut fields: Vec<_> = out.as_object().unwrap().keys().cloned().collect();
    fields.sort();
    assert_eq!(fields, ["api_key", "app_id", "plan", "push_webhook_secret"]);
    assert_eq!(out["plan"], "pro");

    let app_id = AppId::parse(out["app_id"].as_str().unwrap()).unwrap();
    let key = ApiKey::presented(out["api_key"].as_str().unwrap());
    let app = world.store.app_for_key_hash(&key.hash()).await.unwrap().unwrap();
    assert_eq!(app.app_id, app_id);
    assert_eq!(app.push_webhook_secret, out["push_webhook_secret"].as_str().unwrap());
    assert_eq!(app.twilio.unwrap().from.as_deref(), Some("+15550001111"));
}

#[tokio::test]
async fn set_plan_key_create_and_key_revoke() {
    let world = World::new().await;
    let created = admin(&world, &["app", "create", "--name", "Free Co", "--plan", "free"]).await.unwrap();
    let app_id = created["app_id"].as_str().unwrap().to_owned();

    let upgraded =
        admin(&world, &["app", "set-plan", "--app-id", &app_id, "--plan", "enterprise"]).await.unwrap();
    assert_eq!(upgraded["plan"], "enterprise");
    assert!(upgraded["retargeting_enabled_at"].as_str().unwrap().ends_with('Z'));

    let second = admin(&world, &["key", "create", "--app-id", &app_id]).await.unwrap();
    let second_key = second["api_key"].as_str().unwrap().to_owned();
    assert_ne!(second_key, created["api_key"].as_str().unwrap());

    admin(&world, &["key", "revoke", "--app-id", &app_id, "--api-key", &second_key]).await.unwrap();
    assert!(world.store.app_for_key_hash(&ApiKey::presented(&second_key).hash()).await.unwrap().is_none());
    let first = ApiKey::presented(created["api_key"].as_str().unwrap());
    assert!(
        world.store.app_for_key_hash(&first.hash()).await.unwrap().is_some(),
        "revoking one key kept the other"
    );

    let again = admin(&world, &["key", "revoke", "--app-id", &app_id, "--api-key", &second_key]).await;
    assert!(matches!(again, Err(AdminError::UnknownKey)));
}

#[tokio::test]
async fn bad_arguments_are_refused_before_anything_is_written() {
    let world = World::new().await;
    let pro = ["app", "create", "--name", "X", "--plan", "pro"];
    let twilio_without_from =
        [&pro[..], &["--twilio-account-sid", "AC1", "--twilio-auth-token", "t"]].concat();
    for args in [
        vec!["app", "create", "--name", "X", "--plan", "gold"],
        twilio_without_from.clone(),
        [&twilio_without_from[..], &["--twilio-from", "5550001111"]].concat(),
        [&pro[..], &["--fcm-service-account", "/nonexistent.json"]].concat(),
        vec!["app", "set-plan", "--app-id", "not-an-id", "--plan", "pro"],
    ] {
        assert!(admin(&world, &args).await.is_err(), "{args:?} was accepted");
    }
    assert!(world.scan_all().await.is_empty());
    let missing = AppId::new().to_string();
    assert!(matches!(
        admin(&world, &["key", "create", "--app-id", &missing]).await,
        Err(AdminError::UnknownApp)
    ));
}

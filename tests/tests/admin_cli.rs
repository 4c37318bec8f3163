//! The operator CLI's commands against DynamoDB Local, parsed exactly as the binary parses them.

use clap::Parser;
use retarget_admin::{AdminError, Cli, run};
use retarget_shared::domain::{ApiKey, AppId, HookSecret, PushSecret, SmsSecret};
use retarget_tests::World;
use serde_json::Value;

async fn admin(world: &World, args: &[&str]) -> Result<Value, AdminError> {
    admin_with_stdin(world, args, "").await
}

/// As the binary runs with `stdin` on its standard input.
async fn admin_with_stdin(world: &World, args: &[&str], stdin: &str) -> Result<Value, AdminError> {
    let cli = Cli::try_parse_from(std::iter::once("retarget-admin").chain(args.iter().copied()))
        .map_err(|e| AdminError::Invalid(e.to_string()))?;
    run(&world.store, cli, &mut stdin.as_bytes()).await
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
    let hooks: HookSecret = world.store.get_secret(app_id).await.unwrap();
    assert_eq!(hooks.push_webhook_secret, out["push_webhook_secret"].as_str().unwrap());
    assert_eq!(app.twilio.as_ref().unwrap().from.as_deref(), Some("+15550001111"));
    let sms: SmsSecret = world.store.get_secret(app_id).await.unwrap();
    assert_eq!(sms.twilio(&app).unwrap().auth_token, "tok");
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
        [&pro[..], &["--ses-from", "not an address"]].concat(),
        [&pro[..], &["--ses-from", "Shop <shop@localhost>"]].concat(),
        [&pro[..], &["--ses-from", "Shop <shop@example.com>\r\nBcc: eve@example.com"]].concat(),
        [&pro[..], &["--ses-from", "shop@example.com", "--ses-configuration-set", "has space"]].concat(),
        [&pro[..], &["--ses-configuration-set", "events"]].concat(),
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

/// Issue 14: `app set-credentials` adds or replaces only the providers it is given; secrets come
/// from a flag, a file or standard input (out of shell history); bad input writes nothing.
#[tokio::test]
async fn set_credentials_adds_and_replaces_only_what_it_is_given() {
    let world = World::new().await;
    let created = admin(&world, &["app", "create", "--name", "Later Co", "--plan", "pro"]).await.unwrap();
    let app_id = created["app_id"].as_str().unwrap().to_owned();
    let id = AppId::parse(&app_id).unwrap();
    let app = || async { world.store.get_app(id).await.unwrap().unwrap() };
    let store = &world.store;
    let twilio_of = |app: retarget_shared::domain::App| async move {
        store.get_secret::<SmsSecret>(app.app_id).await.unwrap().twilio(&app)
    };
    assert!(app().await.twilio.is_none() && app().await.fcm.is_none());

    // Twilio, its token on standard input.
    let set = ["app", "set-credentials", "--app-id", &app_id];
    let twilio = [
        &set[..],
        &["--twilio-account-sid", "AC9", "--twilio-auth-token-file", "-", "--twilio-from", "+15550002222"],
    ]
    .concat();
    let out = admin_with_stdin(&world, &twilio, "token-from-stdin\n").await.unwrap();
    assert_eq!(out, serde_json::json!({ "app_id": app_id }));
    let t = twilio_of(app().await).await.unwrap();
    assert_eq!((t.account.account_sid.as_str(), t.auth_token.as_str()), ("AC9", "token-from-stdin"));

    // FCM from a file: Twilio is kept.
    let dir = std::env::temp_dir().join(format!("admin-{}", ulid::Ulid::new()));
    std::fs::create_dir_all(&dir).unwrap();
    let sa = dir.join("sa.json");
    let key = serde_json::json!({"project_id": "p1", "client_email": "a@p1.iam.gserviceaccount.com",
        "private_key": "-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n", "token_uri": "https://oauth2.googleapis.com/token"});
    std::fs::write(&sa, key.to_string()).unwrap();
    admin(&world, &[&set[..], &["--fcm-service-account", sa.to_str().unwrap()]].concat()).await.unwrap();
    let now = app().await;
    assert_eq!(now.fcm.as_ref().map(|f| f.project_id.as_str()), Some("p1"));
    let push: PushSecret = world.store.get_secret(id).await.unwrap();
    assert_eq!(push.fcm(&now).map(|f| f.private_key), Some(key["private_key"].as_str().unwrap().to_owned()));
    assert_eq!(twilio_of(now).await.map(|t| t.auth_token), Some("token-from-stdin".into()), "kept");

    // Rotating the Twilio token replaces Twilio only; FCM is kept.
    let rotate = [
        &set[..],
        &[
            "--twilio-account-sid",
            "AC9",
            "--twilio-auth-token",
            "rotated",
            "--twilio-messaging-service-sid",
            "MG1",
        ],
    ]
    .concat();
    admin(&world, &rotate).await.unwrap();
    let now = app().await;
    assert!(now.fcm.is_some(), "kept");
    let push: PushSecret = world.store.get_secret(id).await.unwrap();
    assert!(push.fcm(&now).is_some(), "kept");
    let t = twilio_of(now).await.unwrap();
    assert_eq!(
        (t.auth_token.as_str(), t.account.from, t.account.messaging_service_sid.as_deref()),
        ("rotated", None, Some("MG1"))
    );

    // SES: a from address (with its display name) and a configuration set, no secret; the
    // other providers are kept.
    admin(
        &world,
        &[
            &set[..],
            &[
                "--ses-from",
                "Later Co <news@later.example.com>",
                "--ses-configuration-set",
                "retarget-events",
            ],
        ]
        .concat(),
    )
    .await
    .unwrap();
    let now = app().await;
    let ses = now.ses.as_ref().expect("SES settings kept on the app");
    assert_eq!(
        (ses.from.as_str(), ses.configuration_set.as_deref()),
        ("Later Co <news@later.example.com>", Some("retarget-events"))
    );
    assert!(now.fcm.is_some() && now.twilio.is_some(), "kept");

    // Refused, nothing written.
    let before = world.snapshot().await;
    let missing = AppId::new().to_string();
    let unknown = [
        "app",
        "set-credentials",
        "--app-id",
        &missing,
        "--twilio-account-sid",
        "AC1",
        "--twilio-auth-token",
        "t",
        "--twilio-from",
        "+15550001111",
    ];
    assert!(matches!(admin(&world, &unknown).await, Err(AdminError::UnknownApp)));
    let token_on_stdin = [
        &set[..],
        &["--twilio-account-sid", "AC1", "--twilio-auth-token-file", "-", "--twilio-from", "+15550001111"],
    ]
    .concat();
    for (args, stdin) in [
        (set.to_vec(), ""),
        ([&set[..], &["--twilio-account-sid", "AC1", "--twilio-from", "+15550001111"]].concat(), ""),
        (token_on_stdin.clone(), "  \n"),
        ([&token_on_stdin[..], &["--fcm-service-account", "-"]].concat(), "x"),
        ([&set[..], &["--fcm-service-account", "-"]].concat(), "{not json"),
    ] {
        assert!(admin_with_stdin(&world, &args, stdin).await.is_err(), "{args:?} was accepted");
    }
    assert_eq!(world.snapshot().await, before, "nothing written");
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn the_tracking_keyring_exists_from_the_first_app_and_rotates_without_showing_a_key() {
    let world = World::new().await;
    assert!(world.store.tracking_keyring().await.unwrap().is_none());
    admin(&world, &["app", "create", "--name", "Acme", "--plan", "pro"]).await.unwrap();
    let ring = world.store.tracking_keyring().await.unwrap().expect("made with the first app");
    assert_eq!(ring.keys().iter().map(|k| k.kid).collect::<Vec<_>>(), [1]);
    admin(&world, &["app", "create", "--name", "Beta", "--plan", "pro"]).await.unwrap();
    assert_eq!(
        world.store.tracking_keyring().await.unwrap(),
        Some(ring.clone()),
        "one keyring per deployment"
    );

    let out = admin(&world, &["tracking-key", "rotate"]).await.unwrap();
    let kids: Vec<u64> = out["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_u64().unwrap()).collect();
    assert_eq!(kids, [1, 2]);
    assert!(out["keys"][0]["retired_at"].is_string() && out["keys"][1]["retired_at"].is_null(), "{out}");
    let printed = out.to_string();
    let stored = world.store.tracking_keyring().await.unwrap().unwrap();
    use base64::Engine as _;
    for key in stored.keys() {
        for spelling in [
            base64::engine::general_purpose::STANDARD.encode(key.secret()),
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key.secret()),
            key.secret().iter().map(|b| format!("{b:02x}")).collect::<String>(),
        ] {
            assert!(!printed.contains(&spelling), "a key was printed");
        }
    }
}

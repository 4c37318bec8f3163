//! The one set of provider credentials the stand-ins accept, and the `retarget-admin` flags of
//! an app wired to them: what the demo passes to `app create` and what `make dev-app` runs it
//! with. The keys are throwaway ones committed under `tools/demo/fixtures/` (see its README;
//! the integration tests read them there too).

use std::path::Path;

use anyhow::Context as _;
use serde_json::Value;

pub const TWILIO_ACCOUNT_SID: &str = "AC5ca1ab1e5ca1ab1e5ca1ab1e5ca1ab1e";
pub const TWILIO_AUTH_TOKEN: &str = "standin-twilio-auth-token";
pub const TWILIO_FROM: &str = "+15550009999";

/// The OAuth access token the token endpoint hands out and the FCM stand-in requires.
pub const FCM_ACCESS_TOKEN: &str = "standin-access-token";
/// Google's service-account JSON (`project_id`, `client_email`, `private_key`); `token_uri` is
/// set by [`service_account`].
pub const FCM_SERVICE_ACCOUNT: &str = include_str!("../../demo/fixtures/fcm-demo-service-account.json");
/// The public half of the service account's key: the token endpoint checks assertions with it.
pub const FCM_PUBLIC_KEY_PEM: &str = include_str!("../../demo/fixtures/fcm-demo-service-account.pub.pem");

pub const APNS_KEY_P8: &str = include_str!("../../demo/fixtures/apns-demo-key.p8");
/// The public half of the `.p8` key: the APNs stand-in checks provider tokens with it.
pub const APNS_PUBLIC_KEY_PEM: &str = include_str!("../../demo/fixtures/apns-demo-key.pub.pem");
pub const APNS_KEY_ID: &str = "STANDIN123";
pub const APNS_TEAM_ID: &str = "STANDINTM1";
pub const APNS_TOPIC: &str = "com.example.retarget";

/// The service-account JSON, its `token_uri` the token endpoint of the stand-ins at
/// `standin_url` (e.g. `http://127.0.0.1:4000`).
pub fn service_account(standin_url: &str) -> anyhow::Result<Value> {
    let mut account: Value =
        serde_json::from_str(FCM_SERVICE_ACCOUNT).context("the stand-in service account fixture")?;
    account["token_uri"] = format!("{}/token", standin_url.trim_end_matches('/')).into();
    Ok(account)
}

/// `project_id` and `client_email` of the service account.
pub fn fcm_project_and_email() -> anyhow::Result<(String, String)> {
    let account: Value = serde_json::from_str(FCM_SERVICE_ACCOUNT)?;
    let field = |name: &str| account[name].as_str().map(str::to_owned).context(name.to_owned());
    Ok((field("project_id")?, field("client_email")?))
}

/// Writes `fcm-service-account.json` (for the stand-ins at `standin_url`) and `apns-key.p8` into
/// `dir` and returns the provider flags of `retarget-admin app create` (or `app
/// set-credentials`) for an app whose Twilio, FCM and APNs are these stand-ins.
pub fn write_app_flags(dir: &Path, standin_url: &str) -> anyhow::Result<Vec<String>> {
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let account_file = dir.join("fcm-service-account.json");
    let key_file = dir.join("apns-key.p8");
    std::fs::write(&account_file, service_account(standin_url)?.to_string())
        .with_context(|| format!("write {}", account_file.display()))?;
    std::fs::write(&key_file, APNS_KEY_P8).with_context(|| format!("write {}", key_file.display()))?;
    let path = |p: &Path| p.display().to_string();
    Ok([
        ("--twilio-account-sid", TWILIO_ACCOUNT_SID.to_owned()),
        ("--twilio-auth-token", TWILIO_AUTH_TOKEN.to_owned()),
        ("--twilio-from", TWILIO_FROM.to_owned()),
        ("--fcm-service-account", path(&account_file)),
        ("--apns-key", path(&key_file)),
        ("--apns-key-id", APNS_KEY_ID.to_owned()),
        ("--apns-team-id", APNS_TEAM_ID.to_owned()),
        ("--apns-topic", APNS_TOPIC.to_owned()),
    ]
    .into_iter()
    .flat_map(|(flag, value)| [flag.to_owned(), value])
    .collect())
}

//! Fixtures shared by the provider tests: test-only keys (generated once with `openssl genpkey`
//! for these tests, never used anywhere else) and an app, subscriptions and a message.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use chrono::Utc;
use retarget_push_sender::{PushCredentials, PushProvider};
use retarget_shared::TestClock;
use retarget_shared::domain::{
    ApnsAccount, ApnsConfig, App, AppId, Channel, Contents, FcmAccount, FcmConfig, Message, Plan, Platform,
    Subscription, SubscriptionId, SubscriptionStatus,
};
use retarget_shared::services::provider::{Accepted, Provider, SendError};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, Request, Respond};

/// `openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048` (PKCS#8). Test only.
pub const RSA_PRIVATE_PEM: &str = "\
-----BEGIN PRIVATE KEY-----
MIIEvwIBADANBgkqhkiG9w0BAQEFAASCBKkwggSlAgEAAoIBAQDITvCG52z3Se3E
nBb5/gfwlIRmjfAuZ5JGBf1UHp+VbTa6Dgu2xOVmvQsqFunDGa80kwbBdmFxi8rZ
EnEcPMVVvgfrbpGnMoZP3tFLfUO7mYzH5VOojgr8gZGq9ktBj3jqpusxHk25u05F
YIphZ3UyHkkhH37IyDulCBjvHEqg2DnZP2JNm2tW5TWpnGUJO+DWgz7frmXqwm1V
uYo/hDUWngNnbI9bS2jAc7onV8sCXau/mWFJNFBaTQRfpnVWah4vj3eLVOXLyedL
qdZI1Tr83mg99vt1AzPCJ5C4DfvEqHCd6ek8dLk/CQWy22RbLKy/5O1013S3MrnL
XhM9wxtxAgMBAAECggEASJtQlV3SwipijMdVjsV1hE+ZVIEzo+Z3/3jRVEoLZ4Mg
eL15ooTpcF2q69VFY6puNzzqEHtEI//bheao6Gbg0s0gmsbH9haa1924+MeNozUr
8hNeyTS/p7qhnhpLuhZy6n+ZtgK5gs7xtrUhQ+BX+1Q+BssfTlFCSXZPb3DOXlGO
LynLSyGz6VJDosG8+EL1fuQWYVxnkl6iLxVuvWM7wwWnUULIz7+3RekTw/KOv3L3
WMKjOQW2PRwocuGpTqfbPIqvTPXdBwLJr/YFpSL3nESutZTQFlDnmi/+AThpvwMm
l6zUHJ+dqmufv+LCbHTfVsoe4NNyxymXZRcz1+ofPwKBgQDj16yvUk3OTggbM6FT
Vt9OQgNY3bLXLEM3XDwkO1Wv52M0/PNjVGzhsgbVHi91stqSoZO5+niHvE5Th7TY
OAcwEXkrLrUatnKZ6lWQUFuwuoP80SUPVDqv/T7M5w92CaSk784thESkn3Epbepq
Kp9ACkIvXTdoie8GorvNp/aIrwKBgQDhECjBnet866hZAzZ/soYml0NLTpQe3CxN
N4+aEYt4jp+vuFknhDs+Fm8TM6rL1zkZMhaHlzo4kJszs5laQherJ1xwQxJLENwp
uqBBxt/71ygcKVOsp0M/pRR43SakutPNM5NWiNVo5neAlqoY5ROM8g3oO/L3Qi7W
BMINYntl3wKBgQCGDHg+1i+Mt4AxcNjzjWLoShJqEFWOHy6UvaFst7QcQAiwPjp8
MEm3J+S5Mn89wjKynnmpq+GKCpIStv8BT0V7VGxzqZFH3Bvkzmf09jJb8gCBmBMz
x5yXumleaHtCOT4zBBvLz8wLBvuvIkoOmHEFXoO+FhvpV23X+5p+ztlPZQKBgQDb
5e78ZjDtKE+fUP1RvXtHf2m3zbn5gQQkGhJL5bKRA0FQ7lzluFQt8LtsVoIdklbu
oDrVFlRDaj7KQEOopYT8rIOsCEx6XanPd9IXEppMNUeyZEqmGfMh30hmYyXbs9M3
3pmp5h4l1XCTiiH+GuyEPQiLjO9y2Q5r+9AiRcPtnwKBgQCPgFCeu4v6FsHsuBUW
F31gcHcHzKkYGr/xT34sNpAnRWm+Xm+VtjDi5Uv7c/HxHJHLzjL3WWkOFkbsxEGk
qMcwrhG2eYmUroNJ4KHxKcPnIA3LPH1AKx9wvFJ1eKJuE2OwvZhdgTFyvuMigkhr
O6Z+x+chwGh9+pg/Yg9Zcpln3w==
-----END PRIVATE KEY-----
";
pub const RSA_PUBLIC_PEM: &str = "\
-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAyE7whuds90ntxJwW+f4H
8JSEZo3wLmeSRgX9VB6flW02ug4LtsTlZr0LKhbpwxmvNJMGwXZhcYvK2RJxHDzF
Vb4H626RpzKGT97RS31Du5mMx+VTqI4K/IGRqvZLQY946qbrMR5NubtORWCKYWd1
Mh5JIR9+yMg7pQgY7xxKoNg52T9iTZtrVuU1qZxlCTvg1oM+365l6sJtVbmKP4Q1
Fp4DZ2yPW0towHO6J1fLAl2rv5lhSTRQWk0EX6Z1VmoeL493i1Tly8nnS6nWSNU6
/N5oPfb7dQMzwieQuA37xKhwnenpPHS5PwkFsttkWyysv+TtdNd0tzK5y14TPcMb
cQIDAQAB
-----END PUBLIC KEY-----
";

/// `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256` (PKCS#8). Test only.
pub const EC_PRIVATE_PEM: &str = "\
-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgWG+J+/OzF5fCJjRH
j+tt2HeP1dAafWpSWUOjvMgtrIShRANCAAS6E3ioQM0avlq8hNvtYPmIW9h1Oxwj
Rk4rh9digMUAAM1stHuyUx1ZRtxsdeXK3G+ULApUPQkxL4gBJlidI5s5
-----END PRIVATE KEY-----
";
pub const EC_PUBLIC_PEM: &str = "\
-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEuhN4qEDNGr5avITb7WD5iFvYdTsc
I0ZOK4fXYoDFAADNbLR7slMdWUbcbHXlytxvlCwKVD0JMS+IASZYnSObOQ==
-----END PUBLIC KEY-----
";

pub const PROJECT_ID: &str = "demo-project";
pub const CLIENT_EMAIL: &str = "sender@demo-project.iam.gserviceaccount.com";
pub const KEY_ID: &str = "ABC123DEFG";
pub const TEAM_ID: &str = "DEF123GHIJ";
pub const TOPIC: &str = "com.example.app";
pub const ANDROID_TOKEN: &str = "fcm-registration-token-1";
pub const IOS_TOKEN: &str = "740f4707bebcf74f9b7c25d48e3358945f6aa01da5ddb387462c7eaf61bb78ad";
/// FCM's `messages:send` for [`PROJECT_ID`].
pub const FCM_SEND_PATH: &str = "/v1/projects/demo-project/messages:send";

pub fn fcm_config(server: &MockServer) -> FcmConfig {
    FcmConfig {
        account: FcmAccount {
            project_id: PROJECT_ID.into(),
            client_email: CLIENT_EMAIL.into(),
            token_uri: format!("{}/token", server.uri()),
        },
        private_key: RSA_PRIVATE_PEM.into(),
    }
}

pub fn apns_config() -> ApnsConfig {
    ApnsConfig {
        account: ApnsAccount { key_id: KEY_ID.into(), team_id: TEAM_ID.into(), topic: TOPIC.into() },
        private_key_pem: EC_PRIVATE_PEM.into(),
    }
}

/// An app with the credentials the sender would have joined from its item and its secrets.
pub struct PushApp {
    pub app: App,
    pub credentials: PushCredentials,
}

impl std::ops::Deref for PushApp {
    type Target = App;
    fn deref(&self) -> &App {
        &self.app
    }
}

pub fn app(fcm: Option<FcmConfig>, apns: Option<ApnsConfig>) -> PushApp {
    let now = Utc::now();
    let app = App {
        app_id: AppId::new(),
        name: "demo".into(),
        plan: Plan::Pro,
        created_at: now,
        retargeting_enabled_at: Some(now),
        twilio: None,
        fcm: fcm.as_ref().map(|f| f.account.clone()),
        apns: apns.as_ref().map(|a| a.account.clone()),
        ses: None,
        delivery_policy: Default::default(),
    };
    PushApp { app, credentials: PushCredentials { fcm, apns } }
}

/// `Provider::send` with the app's credentials.
pub trait SendAs {
    fn send_as(
        &self,
        app: &PushApp,
        subscription: &Subscription,
        message: &Message,
    ) -> impl std::future::Future<Output = Result<Accepted, SendError>>;
}

impl SendAs for PushProvider {
    async fn send_as(
        &self,
        app: &PushApp,
        subscription: &Subscription,
        message: &Message,
    ) -> Result<Accepted, SendError> {
        self.send(&app.app, &app.credentials, subscription, message).await
    }
}

pub fn subscription(app: &App, platform: Option<Platform>, token: Option<&str>) -> Subscription {
    let now = Utc::now();
    Subscription {
        subscription_id: SubscriptionId::new(),
        app_id: app.app_id,
        channel: Channel::Push,
        platform,
        token: token.map(str::to_owned),
        phone_number: None,
        email: None,
        external_user_id: None,
        status: SubscriptionStatus::Active,
        unsubscribed_reason: None,
        timezone: None,
        created_at: now,
        updated_at: now,
    }
}

pub fn android(app: &App) -> Subscription {
    subscription(app, Some(Platform::Android), Some(ANDROID_TOKEN))
}

pub fn ios(app: &App) -> Subscription {
    subscription(app, Some(Platform::Ios), Some(IOS_TOKEN))
}

pub fn message(app: &App, title: Option<&str>, url: Option<&str>) -> Message {
    let contents = Contents {
        title: title.map(str::to_owned),
        body: "Your cart misses you".into(),
        url: url.map(str::to_owned),
        html: None,
    };
    Message::new(app.app_id, Channel::Push, contents, Utc::now())
}

/// A clock standing still at the present until the test advances it: what the token caches
/// read, so a token ages without the test waiting.
/// The tests' tracking keyring (one fixed key, no table).
pub fn keyring() -> retarget_shared::domain::Keyring {
    let key = retarget_shared::domain::TrackingKey::new(1, [7; 32], Utc::now(), Utc::now(), None);
    retarget_shared::domain::Keyring::new(vec![key]).expect("a keyring")
}

pub fn tracking() -> retarget_shared::services::tracking::TrackingKeys {
    retarget_shared::services::tracking::TrackingKeys::fixed(keyring())
}

/// The tracking token the provider must give `subscription` for `message`.
pub fn rt(message: &Message, subscription: &Subscription) -> String {
    let tracked = retarget_shared::domain::Tracked {
        app_id: message.app_id,
        message_id: message.message_id,
        subscription_id: subscription.subscription_id,
    };
    keyring().mint(&tracked, Utc::now())
}

pub fn frozen_clock() -> Arc<TestClock> {
    Arc::new(TestClock::frozen_at(Utc::now()))
}

pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_secs()
}

/// The stand-in answers every POST to `path` with `response`.
pub async fn answer_posts(server: &MockServer, path: &str, response: impl Respond + 'static) {
    Mock::given(method("POST"))
        .and(wiremock::matchers::path(path))
        .respond_with(response)
        .mount(server)
        .await;
}

/// The stand-in answers only the first POST to `path` with `response`; the next ones go to the
/// mocks mounted after this one.
pub async fn answer_first_post(server: &MockServer, path: &str, response: impl Respond + 'static) {
    Mock::given(method("POST"))
        .and(wiremock::matchers::path(path))
        .respond_with(response)
        .up_to_n_times(1)
        .mount(server)
        .await;
}

/// The requests the stand-in received on one path.
pub async fn requests_to(server: &MockServer, path: &str) -> Vec<Request> {
    let all = server.received_requests().await.expect("request recording is on");
    all.into_iter().filter(|r| r.url.path() == path).collect()
}

pub fn assert_permanent(error: &SendError, want_code: &str, want_dead: bool) {
    match error {
        SendError::Permanent { code, dead_address, .. } => {
            assert_eq!(code, want_code, "{error:?}");
            assert_eq!(*dead_address, want_dead, "{error:?}");
        }
        other => panic!("expected a permanent {want_code}, got {other:?}"),
    }
}

pub fn header_of<'a>(request: &'a Request, name: &str) -> &'a str {
    request.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default()
}

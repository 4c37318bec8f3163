//! Tracking tokens: what lets a device (or a web page) report what became of one push —
//! delivered, clicked, converted — without holding any secret of the app.
//!
//! A token names exactly one (app, message, subscription) and is signed by the service:
//!
//! ```text
//! token = base64url( kid ‖ app_id ‖ message_id ‖ subscription_id ‖ mac )     87 characters
//!          1 byte     16 bytes  16 bytes     16 bytes          16 bytes   = 65 bytes
//! mac   = HMAC-SHA256(app_key, "rt1" ‖ kid ‖ app_id ‖ message_id ‖ subscription_id)[..16]
//! app_key = HMAC-SHA256(deployment_key[kid], "retarget tracking key v1" ‖ app_id)
//! ```
//!
//! The email unsubscribe links (`/u/{token}`) are the same tokens with `"ru1"` in place of
//! `"rt1"` ([`TokenPurpose`]): one keyring, two purposes that never verify as each other.
//!
//! - **Stateless.** Verifying is two HMACs over the token itself: no table read, so a forged,
//!   truncated or altered token costs one hash and nothing else.
//! - **Per app.** Each app signs with its own key, derived from the deployment's key: a token of
//!   app A never verifies as app B's (the app id is inside the MAC, and the keys differ), and an
//!   app's key, were it ever to leak, reveals neither the deployment key nor another app's.
//! - **Rotation.** The deployment keeps a [`Keyring`]: one key signs, every key of the ring
//!   verifies. Rotating adds a key (the next `kid`) that verifies at once and signs
//!   [`ACTIVATION_DELAY_SECONDS`] later (by then every verifier holds it); the previous ones
//!   stay in the ring, retired, for [`RETIRED_KEY_LIFETIME_DAYS`] — longer than any message
//!   lives (30 days), so no token already out stops working — and are dropped after that.
//! - **Short and URL-safe.** 87 characters of `[A-Za-z0-9_-]` (no padding); the MAC is SHA-256
//!   truncated to 128 bits (NIST SP 800-107 allows truncation to 64 bits and more).
//!
//! Pure: no I/O, no clock (times are given). Key material never shows in `Debug`.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as BASE64URL;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::{AppId, MessageId, SubscriptionId};

type HmacSha256 = Hmac<Sha256>;

/// Bytes of the MAC kept in a token.
const MAC_LEN: usize = 16;
/// Bytes of a decoded token: kid, three ids, MAC.
const RAW_LEN: usize = 1 + 16 * 3 + MAC_LEN;
/// Characters of an encoded token (base64url without padding).
pub const TOKEN_LEN: usize = RAW_LEN.div_ceil(3) * 4 - (3 - RAW_LEN % 3) % 3;
/// How long a retired key still verifies: longer than the 30 days a message (and so any token
/// that names it) lives.
pub const RETIRED_KEY_LIFETIME_DAYS: i64 = 31;

/// What a token is for: the MAC's domain separator differs, so a token of one purpose never
/// verifies as the other (a device's tracking token cannot unsubscribe, an email's unsubscribe
/// link cannot report a click).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenPurpose {
    /// `POST /v1/track`: reports what happened on the device (push).
    Track,
    /// `/u/{token}`: the email's one-click unsubscribe (`List-Unsubscribe`).
    Unsubscribe,
}

impl TokenPurpose {
    fn domain(self) -> &'static [u8] {
        match self {
            TokenPurpose::Track => b"rt1",
            TokenPurpose::Unsubscribe => b"ru1",
        }
    }
}
const APP_KEY_DOMAIN: &[u8] = b"retarget tracking key v1";

/// What a valid token authenticates: one recipient of one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Tracked {
    pub app_id: AppId,
    pub message_id: MessageId,
    pub subscription_id: SubscriptionId,
}

/// Why a token does not verify. Callers answer each the same way (401 `invalid_token`); the
/// variants exist for tests and for the verifier's cache (an unknown key may be a new one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is not {TOKEN_LEN} characters of base64url")]
    Malformed,
    #[error("the token was signed with a key this service does not hold")]
    UnknownKey(u8),
    #[error("the token's signature does not verify")]
    BadSignature,
}

/// One deployment key. `kid` 0 is never used (a token starting with 0 is malformed).
#[derive(Clone, PartialEq, Eq)]
pub struct TrackingKey {
    pub kid: u8,
    secret: [u8; 32],
    pub created_at: DateTime<Utc>,
    /// From when it signs (until a newer key does); it verifies as soon as it is in the ring.
    pub signs_from: DateTime<Utc>,
    /// When a newer key replaced it as the signing key; it still verifies until
    /// [`RETIRED_KEY_LIFETIME_DAYS`] after that.
    pub retired_at: Option<DateTime<Utc>>,
}

impl TrackingKey {
    pub fn new(
        kid: u8,
        secret: [u8; 32],
        created_at: DateTime<Utc>,
        signs_from: DateTime<Utc>,
        retired_at: Option<DateTime<Utc>>,
    ) -> Self {
        Self { kid, secret, created_at, signs_from, retired_at }
    }

    pub fn secret(&self) -> &[u8; 32] {
        &self.secret
    }

    fn app_key(&self, app_id: AppId) -> HmacSha256 {
        let mut derive = HmacSha256::new_from_slice(&self.secret).unwrap_or_else(|_| unreachable!());
        derive.update(APP_KEY_DOMAIN);
        derive.update(&app_id.to_bytes());
        let app_key = derive.finalize().into_bytes();
        HmacSha256::new_from_slice(&app_key).unwrap_or_else(|_| unreachable!())
    }
}

impl fmt::Debug for TrackingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrackingKey")
            .field("kid", &self.kid)
            .field("secret", &"***")
            .field("created_at", &self.created_at)
            .field("signs_from", &self.signs_from)
            .field("retired_at", &self.retired_at)
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyringError {
    #[error("a keyring holds at least one key, each kid once, none 0")]
    Invalid,
    #[error("every key id is in use: wait until retired keys age out ({RETIRED_KEY_LIFETIME_DAYS} days)")]
    Full,
}

/// How long after a rotation the new key starts signing. Every verifier holds it by then: one
/// whose copy of the ring predates the rotation has had that copy longer than the verifiers'
/// reload interval (`services::tracking::VERIFIER_RELOAD`), so the first token naming the new
/// key makes it reload.
pub const ACTIVATION_DELAY_SECONDS: i64 = 600;

/// The deployment's tracking keys: the newest active one signs, all verify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keyring {
    /// In the order they were added.
    keys: Vec<TrackingKey>,
}

impl Keyring {
    /// A first keyring: one fresh random key, kid 1, signing at once (no verifier can hold an
    /// older ring: there was none).
    pub fn generate(now: DateTime<Utc>) -> Self {
        Self { keys: vec![TrackingKey::new(1, rand::random(), now, now, None)] }
    }

    /// A stored keyring (keys in the order they were added).
    pub fn new(keys: Vec<TrackingKey>) -> Result<Self, KeyringError> {
        let mut kids: Vec<u8> = keys.iter().map(|k| k.kid).collect();
        kids.sort_unstable();
        kids.dedup();
        if keys.is_empty() || kids.len() != keys.len() || kids.first() == Some(&0) {
            return Err(KeyringError::Invalid);
        }
        Ok(Self { keys })
    }

    pub fn keys(&self) -> &[TrackingKey] {
        &self.keys
    }

    pub fn holds(&self, kid: u8) -> bool {
        self.key(kid).is_some()
    }

    fn key(&self, kid: u8) -> Option<&TrackingKey> {
        self.keys.iter().find(|k| k.kid == kid)
    }

    /// The key that signs at `now`: the last added whose `signs_from` has come (the first
    /// one, were the clock ever behind every key).
    pub fn signing_key(&self, now: DateTime<Utc>) -> &TrackingKey {
        let first = &self.keys[0];
        self.keys.iter().rev().find(|k| k.signs_from <= now).unwrap_or(first)
    }

    /// This keyring with a fresh key (the next free kid) that signs from
    /// [`ACTIVATION_DELAY_SECONDS`] on: the keys before it are retired then (they keep
    /// verifying), and keys retired more than [`RETIRED_KEY_LIFETIME_DAYS`] ago are dropped.
    pub fn rotated(&self, now: DateTime<Utc>) -> Result<Self, KeyringError> {
        let cutoff = now - chrono::Duration::days(RETIRED_KEY_LIFETIME_DAYS);
        let signs_from = now + chrono::Duration::seconds(ACTIVATION_DELAY_SECONDS);
        let mut keys: Vec<TrackingKey> =
            self.keys.iter().filter(|k| k.retired_at.is_none_or(|at| at > cutoff)).cloned().collect();
        for key in &mut keys {
            key.retired_at.get_or_insert(signs_from);
        }
        let last = self.keys.last().map_or(0, |k| k.kid);
        // The next kid after the newest one that no kept key holds (1..=255, wrapping).
        let kid = (1..=255u16)
            .map(|step| ((u16::from(last.max(1)) - 1 + step) % 255 + 1) as u8)
            .find(|kid| !keys.iter().any(|k| k.kid == *kid))
            .ok_or(KeyringError::Full)?;
        keys.push(TrackingKey::new(kid, rand::random(), now, signs_from, None));
        Ok(Self { keys })
    }

    /// The tracking token of one recipient, signed with the key that signs at `now`.
    pub fn mint(&self, tracked: &Tracked, now: DateTime<Utc>) -> String {
        self.mint_for(TokenPurpose::Track, tracked, now)
    }

    /// The tracking token's recipient ([`Keyring::verify_for`] of [`TokenPurpose::Track`]).
    pub fn verify(&self, token: &str) -> Result<Tracked, TokenError> {
        self.verify_for(TokenPurpose::Track, token)
    }

    /// The token of one recipient for `purpose`, signed with the key that signs at `now`.
    pub fn mint_for(&self, purpose: TokenPurpose, tracked: &Tracked, now: DateTime<Utc>) -> String {
        let key = self.signing_key(now);
        let mut raw = [0u8; RAW_LEN];
        raw[0] = key.kid;
        raw[1..17].copy_from_slice(&tracked.app_id.to_bytes());
        raw[17..33].copy_from_slice(&tracked.message_id.to_bytes());
        raw[33..49].copy_from_slice(&tracked.subscription_id.to_bytes());
        let mac = mac(key, purpose, tracked.app_id, &raw[..49]);
        raw[49..].copy_from_slice(&mac.finalize().into_bytes()[..MAC_LEN]);
        BASE64URL.encode(raw)
    }

    /// The recipient a token of `purpose` authenticates, by any key of the ring. The MAC is
    /// compared in constant time.
    pub fn verify_for(&self, purpose: TokenPurpose, token: &str) -> Result<Tracked, TokenError> {
        let raw = decode(token)?;
        let key = self.key(raw[0]).ok_or(TokenError::UnknownKey(raw[0]))?;
        let tracked = fields(&raw);
        mac(key, purpose, tracked.app_id, &raw[..49])
            .verify_truncated_left(&raw[49..])
            .map_err(|_| TokenError::BadSignature)?;
        Ok(tracked)
    }
}

/// The kid a token names, if it has the shape of one (what a verifier needs to know whether its
/// keyring may be stale).
pub fn token_kid(token: &str) -> Result<u8, TokenError> {
    decode(token).map(|raw| raw[0])
}

fn decode(token: &str) -> Result<[u8; RAW_LEN], TokenError> {
    if token.len() != TOKEN_LEN {
        return Err(TokenError::Malformed);
    }
    let mut raw = [0u8; RAW_LEN];
    match BASE64URL.decode_slice(token, &mut raw) {
        // A canonical encoding only: base64's last character may carry unused bits, and two
        // spellings of one token would be two tokens.
        Ok(RAW_LEN) if raw[0] != 0 && BASE64URL.encode(raw) == token => Ok(raw),
        _ => Err(TokenError::Malformed),
    }
}

fn fields(raw: &[u8; RAW_LEN]) -> Tracked {
    let id = |at: usize| {
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&raw[at..at + 16]);
        bytes
    };
    Tracked {
        app_id: AppId::from_bytes(id(1)),
        message_id: MessageId::from_bytes(id(17)),
        subscription_id: SubscriptionId::from_bytes(id(33)),
    }
}

fn mac(key: &TrackingKey, purpose: TokenPurpose, app_id: AppId, signed: &[u8]) -> HmacSha256 {
    let mut mac = key.app_key(app_id);
    mac.update(purpose.domain());
    mac.update(signed);
    mac
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-12-01T10:00:00Z").unwrap().with_timezone(&Utc)
    }

    fn tracked() -> Tracked {
        Tracked { app_id: AppId::new(), message_id: MessageId::new(), subscription_id: SubscriptionId::new() }
    }

    #[test]
    fn a_token_is_short_url_safe_and_names_its_recipient() {
        let ring = Keyring::generate(now());
        let t = tracked();
        let token = ring.mint(&t, now());
        assert_eq!(token.len(), TOKEN_LEN);
        assert_eq!(TOKEN_LEN, 87);
        assert!(token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'), "{token}");
        assert_eq!(ring.verify(&token), Ok(t));
        assert_eq!(token_kid(&token), Ok(1));
        assert_ne!(ring.mint(&tracked(), now()), token, "each recipient its own");
    }

    /// A token computed from the definition by another implementation (fuzz/seeds.py, Python's
    /// hmac): the layout and both HMACs are as documented.
    #[test]
    fn a_token_verifies_for_its_own_purpose_only() {
        let ring = Keyring::generate(now());
        let t = tracked();
        let track = ring.mint(&t, now());
        let unsubscribe = ring.mint_for(TokenPurpose::Unsubscribe, &t, now());
        assert_ne!(track, unsubscribe);
        assert_eq!(ring.verify_for(TokenPurpose::Unsubscribe, &unsubscribe), Ok(t));
        assert_eq!(ring.verify(&unsubscribe), Err(TokenError::BadSignature));
        assert_eq!(ring.verify_for(TokenPurpose::Unsubscribe, &track), Err(TokenError::BadSignature));
    }

    #[test]
    fn known_answer() {
        let key: [u8; 32] = std::array::from_fn(|i| i as u8);
        let ring = Keyring::new(vec![TrackingKey::new(1, key, now(), now(), None)]).unwrap();
        let tracked = Tracked {
            app_id: AppId::parse("01JDQ8ZP3X5VY8M7K2T4N6R9WA").unwrap(),
            message_id: MessageId::parse("01JDQ90A1B2C3D4E5F6G7H8J9K").unwrap(),
            subscription_id: SubscriptionId::parse("01JDQ91M2N3P4Q5R6S7T8V9W0X").unwrap(),
        };
        let expected =
            "AQGTbo_YfS78ih5i0SpsJ4oBk26QKCsTBtI4rzQPFEkzAZNukNBVHYly4Nk-kbTwHThjLCfUBLQqOxnCtsm5GNE";
        assert_eq!(ring.mint(&tracked, now()), expected);
        assert_eq!(ring.verify(expected), Ok(tracked));
    }

    #[test]
    fn another_keyring_never_verifies_it() {
        let token = Keyring::generate(now()).mint(&tracked(), now());
        assert_eq!(Keyring::generate(now()).verify(&token), Err(TokenError::BadSignature));
    }

    #[test]
    fn malformed_tokens() {
        let ring = Keyring::generate(now());
        let token = ring.mint(&tracked(), now());
        for bad in [
            String::new(),
            token[..TOKEN_LEN - 1].to_owned(),
            format!("{token}A"),
            token.replace(['-', '_'], "+"),
            format!("{}=", &token[..TOKEN_LEN - 1]),
        ] {
            if bad != token {
                assert!(ring.verify(&bad).is_err(), "{bad}");
            }
        }
        let mut zero_kid = BASE64URL.decode(&token).unwrap();
        zero_kid[0] = 0;
        assert_eq!(ring.verify(&BASE64URL.encode(zero_kid)), Err(TokenError::Malformed));
    }

    #[test]
    fn a_new_key_verifies_at_once_signs_later_and_old_tokens_keep_working() {
        let ring = Keyring::generate(now());
        let old = ring.mint(&tracked(), now());
        let rotated = ring.rotated(now()).unwrap();
        let soon = now() + chrono::Duration::seconds(ACTIVATION_DELAY_SECONDS - 1);
        let then = now() + chrono::Duration::seconds(ACTIVATION_DELAY_SECONDS);
        assert_eq!(token_kid(&rotated.mint(&tracked(), soon)), Ok(1), "not before its activation");
        let new = rotated.mint(&tracked(), then);
        assert_eq!(token_kid(&new), Ok(2));
        assert!(rotated.verify(&old).is_ok(), "a token already out still verifies");
        assert!(rotated.verify(&new).is_ok());
        assert_eq!(
            ring.verify(&new),
            Err(TokenError::UnknownKey(2)),
            "an older ring does not know the new key"
        );
        assert_eq!(rotated.keys()[0].retired_at, Some(then));
        // A rotation more than 31 days after key 1 was retired drops it.
        let later = rotated.rotated(then + chrono::Duration::days(RETIRED_KEY_LIFETIME_DAYS + 1)).unwrap();
        assert_eq!(later.keys().iter().map(|k| k.kid).collect::<Vec<_>>(), vec![2, 3]);
        assert_eq!(later.verify(&old), Err(TokenError::UnknownKey(1)));
        assert!(later.verify(&new).is_ok());
    }

    #[test]
    fn kids_wrap_and_skip_those_still_held() {
        let mut ring = Keyring::generate(now());
        for _ in 0..254 {
            ring = ring.rotated(now()).unwrap();
        }
        assert_eq!(ring.keys().len(), 255);
        assert_eq!(ring.rotated(now()), Err(KeyringError::Full));
        let later = ring.rotated(now() + chrono::Duration::days(40)).unwrap();
        assert_eq!(
            later.signing_key(now() + chrono::Duration::days(41)).kid,
            1,
            "255 wraps to 1 once 1 is free"
        );
    }

    #[test]
    fn stored_keyrings_are_checked() {
        assert_eq!(Keyring::new(vec![]), Err(KeyringError::Invalid));
        let key = |kid| TrackingKey::new(kid, [7; 32], now(), now(), None);
        assert_eq!(Keyring::new(vec![key(1), key(1)]), Err(KeyringError::Invalid));
        assert_eq!(Keyring::new(vec![key(0)]), Err(KeyringError::Invalid));
        assert!(Keyring::new(vec![key(1), key(2)]).is_ok());
    }

    #[test]
    fn debug_hides_the_key() {
        let ring = Keyring::generate(now());
        let shown = format!("{ring:?}");
        assert!(shown.contains("secret: \"***\""), "{shown}");
        assert!(!shown.contains(&format!("{:?}", ring.keys()[0].secret())));
    }
}

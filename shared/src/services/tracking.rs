//! The tracking keyring as the functions hold it: read from the table once, kept in memory, so
//! signing a token (push sender) and verifying one (`POST /v1/track`) cost no table read.
//!
//! - The signer refreshes its copy every [`SIGNER_REFRESH_SECONDS`]; a rotated-in key signs only
//!   once it is active (`domain::ACTIVATION_DELAY_SECONDS`), tokens of the old key stay valid.
//! - The verifier reloads only for a well-formed token naming a key it does not hold (one
//!   rotated in since it loaded), and at most once per [`VERIFIER_RELOAD_SECONDS`]: malformed
//!   and forged tokens never reach the table, whatever their number. A verifier whose copy
//!   predates a rotation has held it longer than that by the time the new key signs, so the
//!   first token of the new key always makes it reload.
//!
//! Times are the store's clock (the test clock locally).

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use tokio::sync::Mutex;

use crate::Store;
use crate::adapters::store::StoreError;
use crate::domain::{ACTIVATION_DELAY_SECONDS, Keyring, TokenError, TokenPurpose, Tracked};

pub const SIGNER_REFRESH_SECONDS: i64 = 300;
pub const VERIFIER_RELOAD_SECONDS: i64 = 30;
const _: () =
    assert!(VERIFIER_RELOAD_SECONDS < ACTIVATION_DELAY_SECONDS, "a new key is known before it signs");

#[derive(Clone)]
pub struct TrackingKeys {
    inner: Arc<Inner>,
}

struct Inner {
    /// `None`: a fixed keyring (tests, benches), never reloaded.
    store: Option<Store>,
    cache: Mutex<Cached>,
}

#[derive(Default)]
struct Cached {
    ring: Option<Arc<Keyring>>,
    loaded: Option<DateTime<Utc>>,
}

impl Cached {
    fn older_than(&self, now: DateTime<Utc>, seconds: i64) -> bool {
        self.loaded.is_none_or(|at| now - at >= Duration::seconds(seconds))
    }
}

impl std::fmt::Debug for TrackingKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TrackingKeys { *** }")
    }
}

impl TrackingKeys {
    /// The deployment's keyring, read from (and, for a first signer, created in) the table.
    pub fn new(store: Store) -> Self {
        Self { inner: Arc::new(Inner { store: Some(store), cache: Mutex::new(Cached::default()) }) }
    }

    /// A keyring held in memory only.
    pub fn fixed(ring: Keyring) -> Self {
        let cache = Cached { ring: Some(Arc::new(ring)), loaded: None };
        Self { inner: Arc::new(Inner { store: None, cache: Mutex::new(cache) }) }
    }

    /// The keyring to sign with (created on first use).
    pub async fn signer(&self) -> Result<Arc<Keyring>, StoreError> {
        let mut cache = self.inner.cache.lock().await;
        if let Some(store) = &self.inner.store {
            let now = store.clock().now();
            if cache.ring.is_none() || cache.older_than(now, SIGNER_REFRESH_SECONDS) {
                cache.ring = Some(Arc::new(store.tracking_keyring_or_create().await?));
                cache.loaded = Some(now);
            }
        }
        cache.ring.clone().ok_or(StoreError::NotFound)
    }

    /// The tracking token of one recipient, signed with the key that signs now.
    pub async fn mint(&self, tracked: &Tracked) -> Result<String, StoreError> {
        self.mint_for(TokenPurpose::Track, tracked).await
    }

    /// The token of one recipient for `purpose`, signed with the key that signs now.
    pub async fn mint_for(&self, purpose: TokenPurpose, tracked: &Tracked) -> Result<String, StoreError> {
        let ring = self.signer().await?;
        let now = self.inner.store.as_ref().map_or_else(Utc::now, |s| s.clock().now());
        Ok(ring.mint_for(purpose, tracked, now))
    }

    /// The recipient a tracking token authenticates ([`TrackingKeys::verify_for`]).
    pub async fn verify(&self, token: &str) -> Result<Result<Tracked, TokenError>, StoreError> {
        self.verify_for(TokenPurpose::Track, token).await
    }

    /// The recipient `token` authenticates, or why it does not verify. A table read happens only
    /// for a well-formed token of an unknown key, at most once per [`VERIFIER_RELOAD_SECONDS`].
    pub async fn verify_for(
        &self,
        purpose: TokenPurpose,
        token: &str,
    ) -> Result<Result<Tracked, TokenError>, StoreError> {
        let kid = match crate::domain::token_kid(token) {
            Ok(kid) => kid,
            Err(e) => return Ok(Err(e)),
        };
        let mut cache = self.inner.cache.lock().await;
        let held = cache.ring.as_ref().is_some_and(|ring| ring.holds(kid));
        if !held
            && let Some(store) = &self.inner.store
            && cache.older_than(store.clock().now(), VERIFIER_RELOAD_SECONDS)
        {
            cache.ring = store.tracking_keyring().await?.map(Arc::new);
            cache.loaded = Some(store.clock().now());
        }
        let ring = cache.ring.clone();
        drop(cache);
        Ok(match ring {
            Some(ring) => ring.verify_for(purpose, token),
            None => Err(TokenError::UnknownKey(kid)),
        })
    }
}

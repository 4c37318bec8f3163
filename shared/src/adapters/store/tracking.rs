//! The deployment's tracking keyring: one item, read by the push sender (to sign) and the
//! webhooks function (to verify), written when first needed and by `retarget-admin tracking-key
//! rotate`. Each write is conditional on the version it read, so two racing writers never
//! lose a key: the loser re-reads and sees the winner's ring.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::batch::key;
use super::{Store, StoreError};
use crate::domain::{Keyring, TrackingKey};
use crate::keys;

#[derive(Serialize, Deserialize)]
struct KeyringItem {
    pk: String,
    sk: String,
    keys: Vec<KeyEntry>,
    /// Bumped by every write; the condition of the next one.
    version: u64,
}

#[derive(Serialize, Deserialize)]
struct KeyEntry {
    kid: u8,
    /// The 32 key bytes, base64.
    secret: String,
    created_at: DateTime<Utc>,
    signs_from: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    retired_at: Option<DateTime<Utc>>,
}

impl KeyringItem {
    fn of(ring: &Keyring, version: u64) -> Self {
        KeyringItem {
            pk: keys::TRACKING_KEYRING.into(),
            sk: keys::SK_SECRET.into(),
            keys: ring
                .keys()
                .iter()
                .map(|k| KeyEntry {
                    kid: k.kid,
                    secret: BASE64.encode(k.secret()),
                    created_at: k.created_at,
                    signs_from: k.signs_from,
                    retired_at: k.retired_at,
                })
                .collect(),
            version,
        }
    }

    fn keyring(&self) -> Result<Keyring, StoreError> {
        let corrupt = |what: &str| StoreError::Corrupt(format!("tracking keyring: {what}"));
        let keys = self
            .keys
            .iter()
            .map(|k| {
                let bytes = BASE64.decode(&k.secret).map_err(|_| corrupt("a key is not base64"))?;
                let secret: [u8; 32] = bytes.try_into().map_err(|_| corrupt("a key is not 32 bytes"))?;
                Ok(TrackingKey::new(k.kid, secret, k.created_at, k.signs_from, k.retired_at))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Keyring::new(keys).map_err(|e| corrupt(&e.to_string()))
    }
}

impl Store {
    /// The keyring and its version, read consistently (a rotation is seen at once); `None`
    /// before anything was ever signed.
    async fn keyring_item(&self) -> Result<Option<(Keyring, u64)>, StoreError> {
        let output = self
            .client()
            .get_item()
            .table_name(self.table())
            .set_key(Some(key(keys::TRACKING_KEYRING, keys::SK_SECRET)))
            .consistent_read(true)
            .send()
            .await
            .map_err(StoreError::dynamo("GetItem tracking keyring"))?;
        match output.item {
            Some(item) => {
                let item: KeyringItem = serde_dynamo::from_item(item)?;
                Ok(Some((item.keyring()?, item.version)))
            }
            None => Ok(None),
        }
    }

    /// The keyring, or `None` when none exists yet (then no token was ever minted).
    pub async fn tracking_keyring(&self) -> Result<Option<Keyring>, StoreError> {
        Ok(self.keyring_item().await?.map(|(ring, _)| ring))
    }

    /// The keyring, created with a first random key if there is none. Racing creators agree:
    /// the put is conditional, and the loser returns the winner's ring.
    pub async fn tracking_keyring_or_create(&self) -> Result<Keyring, StoreError> {
        if let Some(ring) = self.tracking_keyring().await? {
            return Ok(ring);
        }
        let ring = Keyring::generate(self.clock().now());
        let item = serde_dynamo::to_item(KeyringItem::of(&ring, 1))?;
        match self.put_new(item, "PutItem tracking keyring").await {
            Ok(()) => Ok(ring),
            Err(e) if e.is_condition_failed() => self.tracking_keyring().await?.ok_or(StoreError::NotFound),
            Err(e) => Err(e),
        }
    }

    /// Rotates the keyring ([`Keyring::rotated`]): a new key that verifies at once and signs
    /// a few minutes later; the others keep verifying until they age out. Creates the keyring if there is none. Conditional on
    /// the version read: a concurrent rotation makes this one fail (`AlreadyExists`) rather
    /// than silently drop the other's key.
    pub async fn rotate_tracking_key(&self) -> Result<Keyring, StoreError> {
        let Some((ring, version)) = self.keyring_item().await? else {
            return self.tracking_keyring_or_create().await;
        };
        let rotated = ring.rotated(self.clock().now()).map_err(|e| StoreError::Request(e.to_string()))?;
        let item = serde_dynamo::to_item(KeyringItem::of(&rotated, version + 1))?;
        let result = self
            .client()
            .put_item()
            .table_name(self.table())
            .set_item(Some(item))
            .condition_expression("version = :v")
            .expression_attribute_values(
                ":v",
                aws_sdk_dynamodb::types::AttributeValue::N(version.to_string()),
            )
            .send()
            .await
            .map_err(StoreError::dynamo("PutItem tracking keyring"));
        match result {
            Ok(_) => Ok(rotated),
            Err(e) if e.is_condition_failed() => Err(StoreError::AlreadyExists),
            Err(e) => Err(e),
        }
    }
}

//! Tracked SMS links: written by the SMS sender before the send that carries them, read by
//! `GET /r/{code}`. Each carries the message's `expires_at` (TTL).

use serde::{Deserialize, Serialize};

use super::batch::{key, put_request};
use super::{Store, StoreError};
use crate::domain::{AppId, Link, LinkCode, MessageId, SubscriptionId};
use crate::keys;

#[derive(Serialize, Deserialize)]
struct LinkItem {
    pk: String,
    sk: String,
    code: LinkCode,
    app_id: AppId,
    message_id: MessageId,
    subscription_id: SubscriptionId,
    url: String,
    /// The table's TTL attribute (epoch seconds): the message's data expiry.
    expires_at: i64,
}

impl LinkItem {
    fn link(self) -> Result<Link, StoreError> {
        let expires_at = chrono::DateTime::from_timestamp(self.expires_at, 0)
            .ok_or_else(|| StoreError::Corrupt("link expires_at out of range".into()))?;
        Ok(Link {
            code: self.code,
            app_id: self.app_id,
            message_id: self.message_id,
            subscription_id: self.subscription_id,
            url: self.url,
            expires_at,
        })
    }
}

impl Store {
    /// Stores these links (BatchWriteItem, unprocessed items retried).
    pub async fn put_links(&self, links: &[Link]) -> Result<(), StoreError> {
        let requests = links
            .iter()
            .map(|link| {
                let item = serde_dynamo::to_item(LinkItem {
                    pk: keys::link(&link.code),
                    sk: keys::SK_LINK.into(),
                    code: link.code.clone(),
                    app_id: link.app_id,
                    message_id: link.message_id,
                    subscription_id: link.subscription_id,
                    url: link.url.clone(),
                    expires_at: link.expires_at.timestamp(),
                })?;
                put_request(item)
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        self.batch_write(requests).await
    }

    /// The link, unless unknown or past its message's expiry (by the store's clock).
    pub async fn get_link(&self, code: &LinkCode) -> Result<Option<Link>, StoreError> {
        let output = self
            .client()
            .get_item()
            .table_name(self.table())
            .set_key(Some(key(keys::link(code), keys::SK_LINK)))
            .send()
            .await
            .map_err(StoreError::dynamo("GetItem link"))?;
        let Some(item) = output.item else { return Ok(None) };
        let link = serde_dynamo::from_item::<_, LinkItem>(item)?.link()?;
        Ok((!link.is_expired_at(self.clock().now())).then_some(link))
    }
}

//! Apps (tenants) and their API keys.

use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::batch::{key, s};
use super::{Store, StoreError};
use crate::domain::{ApiKey, ApiKeyHash, ApnsConfig, App, AppId, FcmConfig, NewApp, Plan, TwilioConfig};
use crate::keys;

#[derive(Serialize, Deserialize)]
struct AppItem {
    pk: String,
    sk: String,
    #[serde(flatten)]
    app: App,
}

#[derive(Serialize, Deserialize)]
struct KeyItem {
    pk: String,
    sk: String,
    app_id: AppId,
    created_at: DateTime<Utc>,
}

/// A webhook signing secret: 32 random bytes, hex.
fn new_secret() -> String {
    format!("whsec_{}", hex::encode(rand::random::<[u8; 32]>()))
}

impl Store {
    pub async fn create_app(&self, new: NewApp) -> Result<App, StoreError> {
        let now = self.clock().now();
        let app = App {
            app_id: AppId::at(now),
            name: new.name,
            plan: new.plan,
            created_at: now,
            retargeting_enabled_at: new.plan.allows_retargeting().then_some(now),
            push_webhook_secret: new_secret(),
            twilio: new.twilio,
            fcm: new.fcm,
            apns: new.apns,
        };
        let item = AppItem { pk: keys::app(app.app_id), sk: keys::SK_APP.into(), app: app.clone() };
        self.put_new(serde_dynamo::to_item(&item)?, "PutItem app").await?;
        Ok(app)
    }

    pub async fn get_app(&self, app_id: AppId) -> Result<Option<App>, StoreError> {
        let output = self
            .client()
            .get_item()
            .table_name(self.table())
            .set_key(Some(key(keys::app(app_id), keys::SK_APP)))
            .send()
            .await
            .map_err(StoreError::dynamo("GetItem app"))?;
        match output.item {
            Some(item) => Ok(Some(serde_dynamo::from_item::<_, AppItem>(item)?.app)),
            None => Ok(None),
        }
    }

    /// Changes the plan. Moving from free to a paid plan stamps `retargeting_enabled_at`;
    /// the condition on the old plan makes two racing changes apply one after the other.
    pub async fn set_plan(&self, app_id: AppId, plan: Plan) -> Result<App, StoreError> {
        let current = self.get_app(app_id).await?.ok_or(StoreError::NotFound)?;
        let now = self.clock().now();
        let stamps = !current.plan.allows_retargeting() && plan.allows_retargeting();
        let mut update = self
            .client()
            .update_item()
            .table_name(self.table())
            .set_key(Some(key(keys::app(app_id), keys::SK_APP)))
            .condition_expression("attribute_exists(pk) AND #plan = :old")
            .expression_attribute_names("#plan", "plan")
            .expression_attribute_values(":old", s(current.plan.as_str()))
            .expression_attribute_values(":new", s(plan.as_str()))
            .return_values(ReturnValue::AllNew);
        update = if stamps {
            update
                .update_expression("SET #plan = :new, retargeting_enabled_at = :now")
                .expression_attribute_values(":now", AttributeValue::S(crate::clock::rfc3339(now)))
        } else {
            update.update_expression("SET #plan = :new")
        };
        let output = update.send().await.map_err(StoreError::dynamo("UpdateItem plan"))?;
        let item = output.attributes.ok_or(StoreError::NotFound)?;
        Ok(serde_dynamo::from_item::<_, AppItem>(item)?.app)
    }

    /// Adds or replaces the given providers' credentials of an app (the others are kept), in one
    /// conditional update: `NotFound` for an unknown app, nothing written then.
    pub async fn set_credentials(
        &self,
        app_id: AppId,
        twilio: Option<TwilioConfig>,
        fcm: Option<FcmConfig>,
        apns: Option<ApnsConfig>,
    ) -> Result<App, StoreError> {
        let mut sets = Vec::new();
        let mut update = self
            .client()
            .update_item()
            .table_name(self.table())
            .set_key(Some(key(keys::app(app_id), keys::SK_APP)))
            .condition_expression("attribute_exists(pk)")
            .return_values(ReturnValue::AllNew);
        if let Some(twilio) = &twilio {
            sets.push("twilio = :twilio");
            update = update.expression_attribute_values(":twilio", serde_dynamo::to_attribute_value(twilio)?);
        }
        if let Some(fcm) = &fcm {
            sets.push("fcm = :fcm");
            update = update.expression_attribute_values(":fcm", serde_dynamo::to_attribute_value(fcm)?);
        }
        if let Some(apns) = &apns {
            sets.push("apns = :apns");
            update = update.expression_attribute_values(":apns", serde_dynamo::to_attribute_value(apns)?);
        }
        if sets.is_empty() {
            return self.get_app(app_id).await?.ok_or(StoreError::NotFound);
        }
        let result = update
            .update_expression(format!("SET {}", sets.join(", ")))
            .send()
            .await
            .map_err(StoreError::dynamo("UpdateItem app credentials"));
        let output = match result {
            Err(e) if e.is_condition_failed() => return Err(StoreError::NotFound),
            other => other?,
        };
        let item = output.attributes.ok_or(StoreError::NotFound)?;
        Ok(serde_dynamo::from_item::<_, AppItem>(item)?.app)
    }

    /// Creates an API key for an app; the clear key is returned once and never stored.
    pub async fn create_api_key(&self, app_id: AppId) -> Result<ApiKey, StoreError> {
        self.get_app(app_id).await?.ok_or(StoreError::NotFound)?;
        let api_key = ApiKey::generate();
        let item = KeyItem {
            pk: keys::api_key(api_key.hash().as_str()),
            sk: keys::SK_KEY.into(),
            app_id,
            created_at: self.clock().now(),
        };
        self.put_new(serde_dynamo::to_item(&item)?, "PutItem api key").await?;
        Ok(api_key)
    }

    /// Revokes a key of this app. A key of another app (or no key) is `NotFound`.
    pub async fn revoke_api_key(&self, app_id: AppId, api_key: &ApiKey) -> Result<(), StoreError> {
        let result = self
            .client()
            .delete_item()
            .table_name(self.table())
            .set_key(Some(key(keys::api_key(api_key.hash().as_str()), keys::SK_KEY)))
            .condition_expression("app_id = :app")
            .expression_attribute_values(":app", s(app_id.to_string()))
            .send()
            .await
            .map_err(StoreError::dynamo("DeleteItem api key"));
        match result {
            Err(e) if e.is_condition_failed() => Err(StoreError::NotFound),
            other => other.map(|_| ()),
        }
    }

    /// The app an API key belongs to, looked up by the key's hash.
    pub async fn app_for_key_hash(&self, hash: &ApiKeyHash) -> Result<Option<App>, StoreError> {
        let output = self
            .client()
            .get_item()
            .table_name(self.table())
            .set_key(Some(key(keys::api_key(hash.as_str()), keys::SK_KEY)))
            .send()
            .await
            .map_err(StoreError::dynamo("GetItem api key"))?;
        let Some(item) = output.item else { return Ok(None) };
        let key_item: KeyItem = serde_dynamo::from_item(item)?;
        self.get_app(key_item.app_id).await
    }
}

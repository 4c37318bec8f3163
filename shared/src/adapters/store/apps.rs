//! Apps (tenants) and their API keys.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, TransactWriteItem, Update};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::batch::{key, s};
use super::{Store, StoreError};
use crate::domain::{
    ApiKey, ApiKeyHash, App, AppId, CreatedApp, Credentials, DeliveryPolicy, HookSecret, NewApp, Plan,
    PushSecret, Secret, SecretScope, SmsSecret,
};
use crate::keys;

#[derive(Serialize, Deserialize)]
struct AppItem {
    pk: String,
    sk: String,
    #[serde(flatten)]
    app: App,
}

/// One scope of an app's secrets, in its own item (see [`SecretScope`]).
#[derive(Serialize, Deserialize)]
struct SecretItem<S> {
    pk: String,
    sk: String,
    #[serde(flatten)]
    secret: S,
}

impl<S: Secret> SecretItem<S> {
    fn of(app_id: AppId, secret: S) -> Self {
        SecretItem { pk: keys::secret(app_id, S::SCOPE), sk: keys::SK_SECRET.into(), secret }
    }
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
    /// Stores a new app: its secret-free item and one item per scope of secrets it has, in one
    /// transaction (all or nothing; the request token makes the SDK's retries of a transaction
    /// whose answer was lost succeed instead of failing on their own first write).
    pub async fn create_app(&self, new: NewApp) -> Result<CreatedApp, StoreError> {
        let now = self.clock().now();
        let Credentials { twilio, fcm, apns, ses } = new.credentials;
        let app = App {
            app_id: AppId::at(now),
            name: new.name,
            plan: new.plan,
            created_at: now,
            retargeting_enabled_at: new.plan.allows_retargeting().then_some(now),
            twilio: twilio.as_ref().map(|t| t.account.clone()),
            fcm: fcm.as_ref().map(|f| f.account.clone()),
            apns: apns.as_ref().map(|a| a.account.clone()),
            ses,
            delivery_policy: Default::default(),
        };
        let push_webhook_secret = new_secret();
        let app_id = app.app_id;
        let mut puts = vec![
            serde_dynamo::to_item(AppItem {
                pk: keys::app(app_id),
                sk: keys::SK_APP.into(),
                app: app.clone(),
            })?,
            serde_dynamo::to_item(SecretItem::of(
                app_id,
                HookSecret { push_webhook_secret: push_webhook_secret.clone() },
            ))?,
        ];
        if let Some(twilio) = twilio {
            let secret = SmsSecret { twilio_auth_token: Some(twilio.auth_token) };
            puts.push(serde_dynamo::to_item(SecretItem::of(app_id, secret))?);
        }
        if fcm.is_some() || apns.is_some() {
            let secret = PushSecret {
                fcm_private_key: fcm.map(|f| f.private_key),
                apns_private_key_pem: apns.map(|a| a.private_key_pem),
            };
            puts.push(serde_dynamo::to_item(SecretItem::of(app_id, secret))?);
        }
        let items =
            puts.into_iter().map(|item| self.transact_put_new(item)).collect::<Result<Vec<_>, _>>()?;
        self.client()
            .transact_write_items()
            .set_transact_items(Some(items))
            .client_request_token(super::new_write_token())
            .send()
            .await
            .map_err(StoreError::dynamo("TransactWriteItems app"))?;
        Ok(CreatedApp { app, push_webhook_secret })
    }

    /// The app, without any secret: what authentication, dispatch and the API read.
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

    /// One scope of an app's secrets; the scope's default (nothing configured) when it has none.
    /// Only the functions whose IAM policy allows `S::SCOPE` can make this call succeed.
    pub async fn get_secret<S: Secret>(&self, app_id: AppId) -> Result<S, StoreError> {
        let output = self
            .client()
            .get_item()
            .table_name(self.table())
            .set_key(Some(key(keys::secret(app_id, S::SCOPE), keys::SK_SECRET)))
            .send()
            .await
            .map_err(StoreError::dynamo("GetItem app secret"))?;
        match output.item {
            Some(item) => Ok(serde_dynamo::from_item::<_, SecretItem<S>>(item)?.secret),
            None => Ok(S::default()),
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

    /// Replaces an app's delivery policy; `NotFound` for an unknown app (nothing written).
    pub async fn set_delivery_policy(
        &self,
        app_id: AppId,
        policy: &DeliveryPolicy,
    ) -> Result<App, StoreError> {
        let value = serde_dynamo::to_attribute_value(policy)?;
        let result = self
            .client()
            .update_item()
            .table_name(self.table())
            .set_key(Some(key(keys::app(app_id), keys::SK_APP)))
            .condition_expression("attribute_exists(pk)")
            .update_expression("SET delivery_policy = :policy")
            .expression_attribute_values(":policy", value)
            .return_values(ReturnValue::AllNew)
            .send()
            .await
            .map_err(StoreError::dynamo("UpdateItem delivery policy"));
        let output = super::unless_condition_failed(result)?.ok_or(StoreError::NotFound)?;
        let item = output.attributes.ok_or(StoreError::NotFound)?;
        Ok(serde_dynamo::from_item::<_, AppItem>(item)?.app)
    }

    /// Adds or replaces the given providers' credentials of an app (the others are kept): the
    /// accounts on the app item, the secrets in their scopes' items, in one transaction
    /// conditional on the app: `NotFound` for an unknown app, nothing written then.
    pub async fn set_credentials(&self, app_id: AppId, credentials: Credentials) -> Result<(), StoreError> {
        let Credentials { twilio, fcm, apns, ses } = credentials;
        let mut app_sets = Vec::new();
        let mut app_values = HashMap::new();
        let mut updates = Vec::new();
        if let Some(twilio) = twilio {
            app_sets.push("twilio = :twilio");
            app_values.insert(":twilio".to_owned(), serde_dynamo::to_attribute_value(&twilio.account)?);
            updates.push(self.set_secret_attributes(
                app_id,
                SecretScope::Sms,
                [("twilio_auth_token", twilio.auth_token)],
            )?);
        }
        let mut push_secrets = Vec::new();
        if let Some(fcm) = fcm {
            app_sets.push("fcm = :fcm");
            app_values.insert(":fcm".to_owned(), serde_dynamo::to_attribute_value(&fcm.account)?);
            push_secrets.push(("fcm_private_key", fcm.private_key));
        }
        if let Some(apns) = apns {
            app_sets.push("apns = :apns");
            app_values.insert(":apns".to_owned(), serde_dynamo::to_attribute_value(&apns.account)?);
            push_secrets.push(("apns_private_key_pem", apns.private_key_pem));
        }
        if let Some(ses) = ses {
            // No secret: the SES sender signs with the deployment's IAM role.
            app_sets.push("ses = :ses");
            app_values.insert(":ses".to_owned(), serde_dynamo::to_attribute_value(&ses)?);
        }
        if app_sets.is_empty() {
            return match self.get_app(app_id).await? {
                Some(_) => Ok(()),
                None => Err(StoreError::NotFound),
            };
        }
        if !push_secrets.is_empty() {
            updates.push(self.set_secret_attributes(app_id, SecretScope::Push, push_secrets)?);
        }
        let update_app = StoreError::request(
            Update::builder()
                .table_name(self.table())
                .set_key(Some(key(keys::app(app_id), keys::SK_APP)))
                .condition_expression("attribute_exists(pk)")
                .update_expression(format!("SET {}", app_sets.join(", ")))
                .set_expression_attribute_values(Some(app_values))
                .build(),
        )?;
        let mut items = vec![TransactWriteItem::builder().update(update_app).build()];
        items.extend(updates);
        let result = self
            .client()
            .transact_write_items()
            .set_transact_items(Some(items))
            .client_request_token(super::new_write_token())
            .send()
            .await
            .map_err(StoreError::dynamo("TransactWriteItems app credentials"));
        match result {
            // The app's update is the transaction's first item: its condition is the one that can fail.
            Err(StoreError::Dynamo { source, .. })
                if matches!(&*source, aws_sdk_dynamodb::Error::TransactionCanceledException(t)
                    if t.cancellation_reasons().first().and_then(|r| r.code()) == Some("ConditionalCheckFailed")) =>
            {
                Err(StoreError::NotFound)
            }
            other => other.map(|_| ()),
        }
    }

    /// A transaction's update setting these attributes of one scope's secret item (created if
    /// it does not exist, its other attributes kept).
    fn set_secret_attributes(
        &self,
        app_id: AppId,
        scope: SecretScope,
        attributes: impl IntoIterator<Item = (&'static str, String)>,
    ) -> Result<TransactWriteItem, StoreError> {
        let mut sets = Vec::new();
        let mut update = Update::builder()
            .table_name(self.table())
            .set_key(Some(key(keys::secret(app_id, scope), keys::SK_SECRET)));
        for (i, (name, value)) in attributes.into_iter().enumerate() {
            sets.push(format!("#a{i} = :v{i}"));
            update = update
                .expression_attribute_names(format!("#a{i}"), name)
                .expression_attribute_values(format!(":v{i}"), s(value));
        }
        let update =
            StoreError::request(update.update_expression(format!("SET {}", sets.join(", "))).build())?;
        Ok(TransactWriteItem::builder().update(update).build())
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

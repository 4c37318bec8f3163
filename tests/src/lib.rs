//! The integration-test harness: [`World::new`] gives each test a fresh, isolated world — its
//! own uniquely named table in DynamoDB Local and a test clock frozen at a known instant — so
//! tests run in parallel and never see each other's data.
//!
//! `make test` starts DynamoDB Local and the SQS/EventBridge emulator and exports their
//! endpoints (`AWS_ENDPOINT_URL_DYNAMODB`, …); running `cargo test` without them fails with a
//! message saying so.

use std::sync::Arc;

use aws_config::SdkConfig;
use chrono::{DateTime, Utc};
use retarget_shared::{Store, TestClock, aws, resources};
use tokio::sync::OnceCell;

static SDK: OnceCell<SdkConfig> = OnceCell::const_new();

/// The SDK configuration pointed at the local stand-ins, loaded once per test binary.
pub async fn sdk() -> &'static SdkConfig {
    SDK.get_or_init(|| async {
        assert!(
            std::env::var_os("AWS_ENDPOINT_URL_DYNAMODB").is_some(),
            "integration tests need DynamoDB Local and the emulator: run them with `make test`"
        );
        aws::load().await
    })
    .await
}

/// 2026-11-28T14:00:00Z: where every test clock starts.
pub fn epoch() -> DateTime<Utc> {
    DateTime::from_timestamp(1_795_874_400, 0).expect("valid timestamp")
}

pub struct World {
    pub store: Store,
    pub clock: Arc<TestClock>,
    pub table: String,
    pub dynamodb: aws_sdk_dynamodb::Client,
}

impl World {
    pub async fn new() -> Self {
        let sdk = sdk().await;
        let dynamodb = aws::dynamodb(sdk);
        let table = format!("test-{}", ulid::Ulid::new().to_string().to_lowercase());
        resources::create_table(&dynamodb, &table).await.expect("create test table in DynamoDB Local");
        let clock = Arc::new(TestClock::frozen_at(epoch()));
        let store = Store::new(dynamodb.clone(), table.clone(), clock.clone());
        Self { store, clock, table, dynamodb }
    }

    /// Every item in the table (small test tables only).
    pub async fn scan_all(
        &self,
    ) -> Vec<std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>> {
        let mut items = Vec::new();
        let mut pages = self.dynamodb.scan().table_name(&self.table).into_paginator().send();
        while let Some(page) = pages.next().await {
            items.extend(page.expect("scan test table").items.unwrap_or_default());
        }
        items
    }
}

//! A process that dies part-way, seen from the outside: an SDK interceptor that lets `n`
//! requests through and fails every later one before it is sent — every request, or only one
//! operation (`DeleteItem`, `SendMessageBatch`). One interceptor serves every AWS client (the
//! SDKs share the trait).

use std::sync::atomic::{AtomicI64, Ordering};

use aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::error::BoxError;

#[derive(Debug)]
pub struct FailAfter {
    remaining: AtomicI64,
    /// Only requests of this operation count and fail (the `X-Amz-Target` header's last part).
    operation: Option<&'static str>,
}

impl FailAfter {
    /// Every request after the first `n` fails.
    pub fn new(n: i64) -> Self {
        Self { remaining: AtomicI64::new(n), operation: None }
    }

    /// Every `operation` request after the first `n` fails; others go through.
    pub fn only(operation: &'static str, n: i64) -> Self {
        Self { remaining: AtomicI64::new(n), operation: Some(operation) }
    }

    /// A DynamoDB client like `sdk`'s through this interceptor.
    pub fn dynamodb(self, sdk: &aws_config::SdkConfig) -> aws_sdk_dynamodb::Client {
        aws_sdk_dynamodb::Client::from_conf(
            aws_sdk_dynamodb::config::Builder::from(sdk).interceptor(self).build(),
        )
    }

    /// An SQS client like `sdk`'s through this interceptor.
    pub fn sqs(self, sdk: &aws_config::SdkConfig) -> aws_sdk_sqs::Client {
        aws_sdk_sqs::Client::from_conf(aws_sdk_sqs::config::Builder::from(sdk).interceptor(self).build())
    }
}

impl Intercept for FailAfter {
    fn name(&self) -> &'static str {
        "FailAfter"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(operation) = self.operation {
            let target = context.request().headers().get("x-amz-target").unwrap_or_default();
            if target.rsplit('.').next() != Some(operation) {
                return Ok(());
            }
        }
        if self.remaining.fetch_sub(1, Ordering::SeqCst) > 0 {
            Ok(())
        } else {
            Err("injected crash: the process is gone".into())
        }
    }
}

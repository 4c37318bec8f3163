//! Adapters: the AWS services behind the domain — DynamoDB ([`store`]), SQS ([`queue`]),
//! EventBridge ([`bus`]), the SDK configuration ([`aws`]) and the resource definitions the
//! local stack creates and `infra/template.yaml` is checked against ([`resources`]).

pub mod aws;
#[cfg(feature = "eventbridge")]
pub mod bus;
#[cfg(feature = "sqs")]
pub mod queue;
#[cfg(feature = "dispatch")]
pub mod resources;
pub mod store;

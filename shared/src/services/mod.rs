//! Services: the use cases, built on the domain and the adapters — recording interaction
//! events ([`ingest`]), audiences ([`audience`]), the scheduler's dispatch ([`dispatch`]) and
//! the senders' SQS pipeline ([`sender`]) around a channel [`provider`], and the stats
//! aggregator counting the table stream's inserts ([`stats`]).

pub mod audience;
#[cfg(feature = "dispatch")]
pub mod dispatch;
pub mod ingest;
pub mod provider;
#[cfg(feature = "sqs")]
pub mod sender;
pub mod stats;
pub mod tracking;

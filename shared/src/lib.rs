//! The retarget common crate: everything more than one function needs.
//!
//! - [`domain`]: values that parse (ids, channels, event kinds, phone numbers, API keys);
//!   once one exists it is valid.
//! - [`keys`]: the single-table key schema — every item shape and access pattern lives there.
//! - [`store`]: the DynamoDB adapter built on those keys.
//! - [`resources`]: the table, queue and bus definitions the local stack creates (and that
//!   `infra/template.yaml` is checked against).
//! - [`clock`]: the only source of "now".
//! - [`config`], [`aws`], [`telemetry`]: process wiring used by every `main.rs`.
//! - [`problem`]: the one place errors become RFC 9457 problem+json responses.

pub mod audience;
pub mod aws;
pub mod bus;
pub mod clock;
pub mod config;
pub mod contents;
pub mod dispatch;
pub mod domain;
pub mod ingest;
pub mod keys;
pub mod problem;
pub mod queue;
pub mod request;
pub mod resources;
pub mod routes;
pub mod sender;
pub mod sending;
pub mod signatures;
pub mod store;
pub mod telemetry;

pub use clock::{Clock, SharedClock, SystemClock, TestClock};
pub use problem::{ApiError, ErrorCode};
pub use store::{Store, StoreError};

//! The retarget common crate: everything more than one function needs, in layers that only
//! look down (a line of code knows its room by what it touches):
//!
//! - [`domain`]: values that parse (ids, channels, event kinds, phone numbers, API keys), the
//!   entities and their state machines, message contents, audience predicates, and the domain's
//!   own errors. No I/O, no HTTP.
//! - [`keys`]: the single-table key schema — every key shape, bound and parser.
//! - [`adapters`]: DynamoDB (`store`), SQS (`queue`), EventBridge (`bus`), SDK config, resources.
//! - [`services`]: the use cases — ingest, audiences, dispatch, the sender pipeline.
//! - [`edge`]: HTTP — routes, request helpers, webhook signatures, and `problem`, the one place
//!   errors become RFC 9457 problem+json responses.
//! - [`bootstrap`]: the composition root — every function's dependencies from its environment.
//! - [`retry`]: the one retry policy. [`clock`]: the only source of "now". [`config`],
//!   [`telemetry`]: process wiring.

pub mod adapters;
pub mod bootstrap;
pub mod clock;
pub mod config;
pub mod domain;
pub mod edge;
pub mod keys;
#[cfg(feature = "provider-http")]
pub mod provider_http;
pub mod retry;
pub mod services;
pub mod telemetry;

pub use adapters::store::{Store, StoreError};
pub use clock::{Clock, SharedClock, SystemClock, TestClock};
pub use edge::problem::{ApiError, ErrorCode};

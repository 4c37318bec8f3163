//! The fault-injecting proxy, router and SDK helpers of the end-to-end tests: their home is the
//! `retarget-proxy` crate (`tools/proxy`), which the benchmarks' latency model shares.

pub use retarget_proxy::*;

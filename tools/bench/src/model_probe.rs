//! The latency proxy's counters, read between the phases of a measurement, to estimate how much
//! of each phase's wall time was the emulator's rather than the model's.
//!
//! Under the model every DynamoDB request spends `modelled` in the proxy, or longer when
//! DynamoDB Local itself took longer (`excess`). Summed over a phase, `busy = modelled + excess`
//! is the request time of the phase and `busy / wall` the mean number of requests in flight
//! (Little's law). Taking the excess out shortens the wall by about `excess / in_flight`:
//! `adjusted = wall × modelled / (modelled + excess)`. An estimate: it assumes the excess is spread
//! like the rest of the phase's requests over its parallel chains, and it scales the client's
//! own CPU time with the rest.

use anyhow::Context as _;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// Set by `scripts/bench.sh` to the latency proxy's address in runs under the model.
pub const ENV: &str = "BENCH_LATENCY_PROXY";

#[derive(Debug, Clone, Copy, Default)]
pub struct Counters {
    pub modelled_ms: f64,
    pub excess_ms: f64,
}

#[derive(Debug, Clone)]
pub struct ModelProbe {
    /// `host:port` of the proxy.
    authority: String,
}

impl ModelProbe {
    pub fn from_env() -> Option<Self> {
        let url = std::env::var(ENV).ok()?;
        let authority = url.trim_start_matches("http://").trim_end_matches('/').to_owned();
        Some(Self { authority })
    }

    pub async fn counters(&self) -> anyhow::Result<Counters> {
        let mut stream = TcpStream::connect(&self.authority).await.context("the latency proxy")?;
        let request =
            format!("GET /_proxy/stats HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", self.authority);
        stream.write_all(request.as_bytes()).await?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await?;
        let text = String::from_utf8_lossy(&answer);
        let body = text.split_once("\r\n\r\n").map(|(_, b)| b).context("no body from the proxy")?;
        let stats: Value = serde_json::from_str(body).context("the proxy's stats")?;
        let field = |name: &str| stats["latency"][name].as_f64().context("latency counters");
        Ok(Counters { modelled_ms: field("modelled_ms")?, excess_ms: field("emulator_excess_ms")? })
    }
}

/// One phase's share of the counters and its wall time with the emulator's excess taken out.
#[derive(Debug, Clone, Copy)]
pub struct Phase {
    pub wall_s: f64,
    pub modelled_ms: f64,
    pub excess_ms: f64,
}

impl Phase {
    pub fn between(before: Counters, after: Counters, wall_s: f64) -> Self {
        Self {
            wall_s,
            modelled_ms: after.modelled_ms - before.modelled_ms,
            excess_ms: after.excess_ms - before.excess_ms,
        }
    }

    pub fn adjusted_s(&self) -> f64 {
        let busy = self.modelled_ms + self.excess_ms;
        if busy <= 0.0 { self.wall_s } else { self.wall_s * self.modelled_ms / busy }
    }

    pub fn json(&self) -> Value {
        json!({"wall_s": self.wall_s, "modelled_ms": self.modelled_ms, "excess_ms": self.excess_ms,
               "adjusted_s": self.adjusted_s()})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_excess_comes_off_in_proportion_to_the_requests_in_flight() {
        // 10 s of wall, 40 s of request time (4 in flight), 20 s of it the emulator's: 5 s.
        let p = Phase { wall_s: 10.0, modelled_ms: 20_000.0, excess_ms: 20_000.0 };
        assert!((p.adjusted_s() - 5.0).abs() < 1e-9);
        // Nothing emulator-bound: unchanged; no requests at all: unchanged.
        assert_eq!(Phase { wall_s: 3.0, modelled_ms: 100.0, excess_ms: 0.0 }.adjusted_s(), 3.0);
        assert_eq!(Phase { wall_s: 3.0, modelled_ms: 0.0, excess_ms: 0.0 }.adjusted_s(), 3.0);
    }
}

//! The stats aggregator's share of a run: the table's stream read into the aggregator as
//! Lambda's event source mapping would while the bench's events were written (the local
//! stack's own stand-in for it, `retarget_local::streams`), with the aggregator's DynamoDB
//! requests counted in a tally of their own — what the counters cost — and the stream API's
//! calls apart (a Lambda trigger's reads of a DynamoDB stream are not billed).

use std::sync::Arc;

use retarget_local::streams::{StreamSource, streams_client};
use retarget_shared::services::stats::StatsDeps;
use retarget_shared::{Store, SystemClock};
use serde_json::{Value, json};

use crate::counting::{Clients, Counting, Snapshot, Tally};
use crate::sys::Stopwatch;

pub struct Aggregator {
    tally: Arc<Tally>,
    deps: StatsDeps,
    stream: StreamSource,
}

/// What one catch-up of the stream did and cost.
pub struct Drained {
    pub invocations: usize,
    pub records_read: usize,
    pub records_delivered: usize,
    pub failed_batches: usize,
    pub wall_seconds: f64,
    pub cpu_seconds: f64,
    /// The aggregator's own DynamoDB requests (counter updates, reads after a replay).
    pub dynamodb: Snapshot,
    /// The event source mapping's calls to the stream API.
    pub stream: Value,
}

impl Aggregator {
    /// The aggregator on `table`, its DynamoDB client counted apart from the bench's.
    pub fn new(clients: &Clients, table: &str) -> Self {
        let tally = Arc::new(Tally::default());
        let config = aws_sdk_dynamodb::config::Builder::from(&clients.sdk)
            .interceptor(Counting(tally.clone()))
            .build();
        let store = Store::new(aws_sdk_dynamodb::Client::from_conf(config), table, Arc::new(SystemClock));
        let region = clients.sdk.region().map_or_else(|| "us-east-1".to_owned(), ToString::to_string);
        // The mapping's DescribeTable is not the function's: an uncounted client.
        let stream = StreamSource::with_clients(
            retarget_shared::adapters::aws::dynamodb(&clients.sdk),
            streams_client(&clients.sdk),
            table,
            region,
        );
        Self { tally, deps: StatsDeps { store }, stream }
    }

    /// Counts only what is written from now on (the table's earlier records are not the run's).
    pub async fn count_from_now_on(&self) -> anyhow::Result<()> {
        Ok(self.stream.skip_to_latest().await?)
    }

    /// The aggregator's most written item since the last call.
    pub fn take_hottest(&self) -> crate::counting::Hottest {
        self.tally.take_hottest()
    }

    /// Reads the stream to its end into the aggregator.
    pub async fn drain(&self) -> anyhow::Result<Drained> {
        let before = self.tally.snapshot();
        let watch = Stopwatch::start();
        let round = self.stream.drain(&self.deps).await?;
        let (wall_seconds, cpu_seconds) = watch.stop();
        Ok(Drained {
            invocations: round.invocations,
            records_read: round.read,
            records_delivered: round.delivered,
            failed_batches: round.failed,
            wall_seconds,
            cpu_seconds,
            dynamodb: self.tally.snapshot().since(&before),
            stream: self.stream.counts.json(),
        })
    }
}

impl Drained {
    /// The figures, with the counters' cost per `per` (events, recipients).
    pub fn json(&self, per: f64) -> Value {
        let per = per.max(1.0);
        json!({
            "invocations": self.invocations,
            "records_read": self.records_read,
            "records_delivered": self.records_delivered,
            "failed_batches": self.failed_batches,
            "wall_seconds": self.wall_seconds,
            "cpu_seconds": self.cpu_seconds,
            "dynamodb_requests": self.dynamodb.dynamodb_requests(),
            "dynamodb_requests_per_event": self.dynamodb.dynamodb_requests() as f64 / per,
            "write_units_per_event": self.dynamodb.write_units() / per,
            "billed_read_units_per_event": self.dynamodb.billed_read_units() / per,
            "invocations_per_event": self.invocations as f64 / per,
            "dynamodb": self.dynamodb.json(),
            "stream_api": self.stream,
        })
    }
}

//! `retarget-proxy`: one latency-model proxy in front of DynamoDB Local or the SQS emulator, as
//! its own process (the benchmarks point `AWS_ENDPOINT_URL_DYNAMODB` / `AWS_ENDPOINT_URL_SQS`
//! at it, so the measuring process's CPU and memory are its own). Prints one JSON line with
//! its URL once it listens, then serves until killed; its figures are at `GET /_proxy/stats`.

use clap::{Parser, ValueEnum};
use retarget_proxy::latency::LatencyModel;
use retarget_proxy::{FaultProxy, Service};

#[derive(Clone, Copy, ValueEnum)]
enum Which {
    Dynamodb,
    Sqs,
}

#[derive(Parser)]
#[command(about = "A latency-model proxy in front of DynamoDB Local or the SQS emulator")]
struct Args {
    #[arg(long, value_enum)]
    service: Which,
    /// Where requests go on to, e.g. http://127.0.0.1:8000.
    #[arg(long)]
    upstream: String,
    /// The port to listen on (0: any free one).
    #[arg(long, default_value_t = 0)]
    port: u16,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Median of a single-item read or write, ms.
    #[arg(long, default_value_t = LatencyModel::default().item_ms)]
    item_ms: f64,
    /// Median of a BatchGetItem, BatchWriteItem or transaction, ms.
    #[arg(long, default_value_t = LatencyModel::default().batch_ms)]
    batch_ms: f64,
    /// Median of a Query or Scan page, ms (plus its size).
    #[arg(long, default_value_t = LatencyModel::default().query_ms)]
    query_ms: f64,
    /// Added per KiB of request and response body, ms.
    #[arg(long, default_value_t = LatencyModel::default().per_kib_ms)]
    per_kib_ms: f64,
    /// Median of any SQS call, ms.
    #[arg(long, default_value_t = LatencyModel::default().sqs_ms)]
    sqs_ms: f64,
    /// σ of the log-normal spread (0: always the median).
    #[arg(long, default_value_t = LatencyModel::default().sigma)]
    sigma: f64,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let model = LatencyModel {
        item_ms: args.item_ms,
        batch_ms: args.batch_ms,
        query_ms: args.query_ms,
        per_kib_ms: args.per_kib_ms,
        sqs_ms: args.sqs_ms,
        sigma: args.sigma,
    };
    let service = match args.service {
        Which::Dynamodb => Service::DynamoDb,
        Which::Sqs => Service::Sqs,
    };
    let proxy = FaultProxy::with_latency(service, &args.upstream, model, args.seed, args.port).await;
    println!(
        "{}",
        serde_json::json!({"url": proxy.url, "upstream": args.upstream, "model": format!("{model:?}")})
    );
    std::future::pending::<()>().await;
}

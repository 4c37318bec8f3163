//! `retarget-bench`: figures, not assertions. Each subcommand prints one JSON line. Run them
//! through `scripts/bench.sh`, which starts its own DynamoDB Local and SQS/EventBridge emulator
//! and runs seeding and each measurement as separate processes, so a peak RSS reported is that
//! of the process doing the measured work alone.
//!
//! Everything that matters is a ratio of two things measured side by side in one process
//! (ours against the store's raw limit, or against the naive design), or a count of requests
//! and capacity units — never an absolute time of the emulators.

mod aggregator;
mod audience;
mod cold_start;
mod cost;
mod counting;
mod fanout;
mod ingest;
mod model_probe;
mod quiet;
mod report;
mod seed;
mod ses_standin;
mod sys;
mod track;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use retarget_shared::domain::{AppId, Channel, MessageId};
use retarget_shared::{Store, SystemClock, adapters::resources};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Seeds a push message with N recipients: all sent, 80 % delivered, 10 % clicked; half of
    /// them linked to an SMS subscription of the same person.
    SeedAudience {
        #[arg(long)]
        recipients: usize,
        /// `email`: email subscriptions of an app sending through SES, an email message.
        #[arg(long, default_value = "push")]
        channel: Channel,
    },
    /// Records N events through the events handler, then the same events the naive way.
    Ingest {
        #[arg(long)]
        events: usize,
        #[arg(long, default_value_t = retarget_events::MAX_EVENTS)]
        per_request: usize,
        /// UpdateItem calls in flight for the naive ingest (the store's own batch concurrency);
        /// 0 skips it.
        #[arg(long, default_value_t = 8)]
        naive_concurrency: usize,
        /// Concurrent writers (Lambda instances), each taking one request at a time.
        #[arg(long, default_value_t = 1)]
        writers: usize,
    },
    /// POST /v1/track: forged and genuine tokens through the webhooks handler, and the same
    /// reports through POST /v1/events one per request.
    Track {
        #[arg(long, default_value_t = 2000)]
        requests: usize,
        /// Requests in flight (concurrent Lambda instances).
        #[arg(long, default_value_t = 16)]
        lanes: usize,
    },
    /// Counts and exports an audience against a raw parallel Query and a naive Scan.
    Audience {
        #[arg(long)]
        app_id: AppId,
        #[arg(long)]
        message_id: MessageId,
        #[arg(long, default_value = "not_clicked")]
        action: String,
        #[arg(long)]
        channel: Option<Channel>,
        #[arg(long, default_value_t = 1000)]
        page_size: usize,
        #[arg(long, default_value_t = 2)]
        rounds: usize,
        #[arg(long)]
        skip_naive: bool,
        /// No naive Scan above this many recipients (DynamoDB Local's Scan paging is quadratic).
        #[arg(long, default_value_t = 200_000)]
        naive_max_recipients: u64,
    },
    /// Dispatches a retarget of the message through the scheduler into the SQS emulator.
    Fanout {
        #[arg(long)]
        app_id: AppId,
        #[arg(long)]
        message_id: MessageId,
        #[arg(long, default_value = "sent")]
        action: String,
        /// Queued jobs then run through the senders' pipeline to count their DynamoDB use.
        #[arg(long, default_value_t = 2)]
        sender_jobs: usize,
    },
    /// Quiet hours at scale: an SMS retarget of N recipients over ten zones, all inside their
    /// quiet hours, deferred by the sender and released by the scheduler on a test clock.
    QuietHours {
        #[arg(long)]
        app_id: AppId,
        #[arg(long)]
        message_id: MessageId,
    },
    /// Seeds the quiet-hours bench: an app with quiet hours on SMS and an SMS message sent to
    /// N recipients over ten zones.
    QuietHoursSeed {
        #[arg(long)]
        recipients: usize,
    },
    /// Spawns each function's x86_64 release binary against a local Runtime API stub: time from
    /// process start to its first poll for an invocation, over N starts.
    ColdStart {
        /// Where `cargo build --release` left the binaries.
        #[arg(long, default_value = "target/release")]
        bin_dir: PathBuf,
        /// Where `cargo lambda build --release --arm64` left the zips (sizes only, if present).
        #[arg(long, default_value = "target/lambda")]
        zip_dir: PathBuf,
        #[arg(long, default_value_t = 20)]
        starts: usize,
        /// Functions (directory names under functions/); all thirteen by default.
        #[arg(long, value_delimiter = ',')]
        functions: Vec<String>,
    },
    /// Deletes the table (frees DynamoDB Local's memory between sizes).
    DropTable,
    /// Reads a run's JSON lines: prints the table of figures, draws the plots.
    Report {
        #[arg(long)]
        results: PathBuf,
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        no_plots: bool,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Command::Report { results, out, no_plots } = &cli.command {
        return report::run(results, out, !no_plots);
    }
    if let Command::ColdStart { bin_dir, zip_dir, starts, functions } = cli.command {
        let functions = if functions.is_empty() {
            cold_start::FUNCTIONS.iter().map(|f| (*f).to_owned()).collect()
        } else {
            functions
        };
        return cold_start::run(cold_start::Options { bin_dir, zip_dir, functions, starts });
    }
    let table = std::env::var("TABLE_NAME").context("TABLE_NAME")?;
    let clients = counting::Clients::load().await;
    let store = Store::new(clients.dynamodb.clone(), table.clone(), Arc::new(SystemClock));
    let ensure_table = async {
        if clients.dynamodb.describe_table().table_name(&table).send().await.is_err() {
            resources::create_table(&clients.dynamodb, &table).await?;
        }
        Ok::<_, anyhow::Error>(())
    };
    match cli.command {
        Command::SeedAudience { recipients, channel } => {
            ensure_table.await?;
            seed::audience(&store, recipients, channel).await?;
        }
        Command::Ingest { events, per_request, naive_concurrency, writers } => {
            ensure_table.await?;
            let options = ingest::Options { events, per_request, naive_concurrency, writers };
            ingest::run(&clients, &store, options).await?;
        }
        Command::Track { requests, lanes } => {
            ensure_table.await?;
            track::run(&clients, &store, requests, lanes).await?;
        }
        Command::Audience {
            app_id,
            message_id,
            action,
            channel,
            page_size,
            rounds,
            skip_naive,
            naive_max_recipients,
        } => {
            let opts = audience::Options {
                app_id,
                message_id,
                action,
                channel,
                page_size,
                rounds,
                naive: !skip_naive,
                naive_max_recipients,
            };
            audience::run(&clients, &store, opts).await?;
        }
        Command::Fanout { app_id, message_id, action, sender_jobs } => {
            fanout::run(&clients, &store, fanout::Options { app_id, message_id, action, sender_jobs })
                .await?;
        }
        Command::QuietHoursSeed { recipients } => {
            ensure_table.await?;
            quiet::seed(&clients, &table, recipients).await?;
        }
        Command::QuietHours { app_id, message_id } => {
            quiet::run(&clients, &table, quiet::Options { app_id, message_id }).await?;
        }
        Command::DropTable => {
            clients.dynamodb.delete_table().table_name(&table).send().await?;
        }
        Command::Report { .. } | Command::ColdStart { .. } => unreachable!("handled above"),
    }
    Ok(())
}

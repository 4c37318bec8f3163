//! `retarget-standin`: the local Twilio, FCM and APNs stand-ins as a process (`make dev` runs
//! it), and the provider flags of an app wired to them (`make dev-app`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use retarget_standin::{Options, StandIn, credentials};
use tokio::signal::unix::{SignalKind, signal};

#[derive(Debug, Parser)]
#[command(name = "retarget-standin", about = "Local Twilio, FCM and APNs stand-ins")]
enum Cli {
    /// Serve the stand-ins on 127.0.0.1 until SIGINT or SIGTERM; `GET /received` lists what
    /// they got.
    Serve {
        /// 0: any free port.
        #[arg(long, env = "STANDIN_PORT", default_value_t = 0)]
        port: u16,
        /// Post Twilio's status callbacks to this origin (the local API) instead of the
        /// StatusCallback URL's own.
        #[arg(long, env = "STANDIN_CALLBACK_ORIGIN")]
        callback_origin: Option<String>,
        /// Make no Twilio status callbacks.
        #[arg(long)]
        no_status_callbacks: bool,
    },
    /// Write the FCM service account (its token_uri the stand-ins') and the APNs key into DIR,
    /// and print the provider flags of `retarget-admin app create`, one per line.
    AppFlags {
        /// The stand-ins' address, e.g. http://127.0.0.1:4000 (STANDIN_URL in .local/stack.env).
        #[arg(long, env = "STANDIN_URL")]
        standin_url: String,
        #[arg(long)]
        dir: PathBuf,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("retarget-standin: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli {
        Cli::Serve { port, callback_origin, no_status_callbacks } => {
            let options = Options { status_callbacks: !no_status_callbacks, callback_origin, echo: true };
            let standin = StandIn::new(options)?;
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
            let url = format!("http://{}", listener.local_addr()?);
            eprintln!(
                "retarget-standin: Twilio, FCM and APNs stand-ins on {url}; what they received: GET {url}/received"
            );
            let mut terminate = signal(SignalKind::terminate())?;
            tokio::select! {
                () = standin.serve(listener) => {}
                _ = tokio::signal::ctrl_c() => {}
                _ = terminate.recv() => {}
            }
            Ok(())
        }
        Cli::AppFlags { standin_url, dir } => {
            for flag in credentials::write_app_flags(&dir, &standin_url)? {
                println!("{flag}");
            }
            Ok(())
        }
    }
}

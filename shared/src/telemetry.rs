//! Logging set-up, once per process: JSON on Lambda (`AWS_LAMBDA_LOG_FORMAT=JSON`, set by the
//! template's LoggingConfig), readable text locally, level from `RUST_LOG` (default `info`).

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, fmt};

/// Libraries that print whole requests and responses, bodies included (phone numbers,
/// credentials, table items), at TRACE: held at DEBUG whatever `RUST_LOG` asks for.
const BODY_LOGGERS: [&str; 9] = [
    "aws_smithy_runtime",
    "aws_smithy_runtime_api",
    "aws_smithy_http",
    "aws_smithy_http_client",
    "aws_sigv4",
    "hyper",
    "hyper_util",
    "h2",
    "reqwest",
];

fn no_bodies() -> Targets {
    Targets::new()
        .with_default(LevelFilter::TRACE)
        .with_targets(BODY_LOGGERS.iter().map(|target| (*target, LevelFilter::DEBUG)))
}

/// The formatter Lambda's JSON log format gets: one flat JSON object per event.
fn json_layer<S, W>(writer: W) -> impl Layer<S>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    fmt::layer().json().flatten_event(true).without_time().with_target(false).with_writer(writer)
}

/// The readable formatter for local runs.
fn text_layer<S, W>(writer: W, ansi: bool) -> impl Layer<S>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    fmt::layer().with_target(false).with_ansi(ansi).with_writer(writer)
}

pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json"));
    let registry = tracing_subscriber::registry().with(filter).with(no_bodies());
    // try_init: a second call (tests, the local stack hosting several functions) is harmless.
    let _ = if json {
        registry.with(json_layer(std::io::stdout)).try_init()
    } else {
        let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
        registry.with(text_layer(std::io::stderr, ansi)).try_init()
    };
}

/// For tests: silent unless `TEST_LOG` is set.
pub fn init_for_tests() {
    if std::env::var_os("TEST_LOG").is_some() {
        init();
    }
}

/// Everything this process logs from the moment [`capture`] is first called.
#[derive(Clone, Default)]
pub struct CapturedLogs(Arc<Mutex<Vec<u8>>>);

impl CapturedLogs {
    /// The captured text so far (both formats, interleaved).
    pub fn contents(&self) -> String {
        let bytes = self.0.lock().map(|b| b.clone()).unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

struct CaptureWriter(Arc<Mutex<Vec<u8>>>);

impl Write for CaptureWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut b) = self.0.lock() {
            b.extend_from_slice(buf);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// For tests that assert on what is logged: installs, as the process's subscriber, both of
/// [`init`]'s formatters (JSON as on Lambda, and text) at every level (bar [`BODY_LOGGERS`]'
/// TRACE, as in `init`), writing into a buffer.
/// Call it before anything else installs a subscriber; later calls return the same buffer.
pub fn capture() -> CapturedLogs {
    static CAPTURED: OnceLock<CapturedLogs> = OnceLock::new();
    CAPTURED
        .get_or_init(|| {
            let logs = CapturedLogs::default();
            let (json, text) = (logs.0.clone(), logs.0.clone());
            let _ = tracing_subscriber::registry()
                .with(LevelFilter::TRACE)
                .with(no_bodies())
                .with(json_layer(move || CaptureWriter(json.clone())))
                .with(text_layer(move || CaptureWriter(text.clone()), false))
                .try_init();
            logs
        })
        .clone()
}

//! Cold start: the time from spawning a function's release binary to its first poll of the
//! Lambda Runtime API (`GET /2018-06-01/runtime/invocation/next`), against a stub of that API
//! served here on 127.0.0.1. The stub never answers the poll; the process is killed once it
//! has asked, and the next start begins.
//!
//! The binaries are built elsewhere (`cargo build --release -p retarget-<fn>`); this only runs
//! them. Their environment is what Lambda gives a function (runtime variables, region, session
//! credentials) plus the function's own configuration from the template. Every AWS endpoint
//! points at a closed local port: start-up must make no network call, and if one did, the
//! process would fail or stall here instead of silently reaching AWS.
//!
//! One JSON line per function: median and p90 over the starts (one warm-up start of the
//! binary first, so the page cache holds it as it would on a warm Lambda host), the binary's
//! size, and the arm64 zip's size when `cargo lambda build --release --arm64` has left one.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::json;

/// The thirteen functions, each run as its binary `retarget-<name>`: one package per directory
/// under `functions/`, except the audience export, the audiences package's second binary.
pub const FUNCTIONS: [&str; 13] = [
    "audiences",
    "audience-export",
    "email-events",
    "email-sender",
    "events",
    "messages",
    "push-sender",
    "retargets",
    "scheduler",
    "sms-sender",
    "stats",
    "subscriptions",
    "webhooks",
];

pub struct Options {
    /// Where the x86_64 release binaries are (`target/release`).
    pub bin_dir: PathBuf,
    /// Where `cargo lambda build` leaves `<package>/bootstrap.zip` (`target/lambda`).
    pub zip_dir: PathBuf,
    pub functions: Vec<String>,
    pub starts: usize,
}

/// What the stub saw on one connection.
enum Seen {
    /// The first poll for an invocation, at this instant.
    Poll(Instant),
    /// Anything else (an init error report, say): method and path.
    Other(String),
}

/// Serves the Runtime API stub: every connection gets its own thread; a poll is reported and
/// left hanging (the reader holds the socket until the process dies), anything else is
/// reported and answered 202.
fn serve(listener: TcpListener, seen: mpsc::Sender<Seen>) {
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let seen = seen.clone();
        std::thread::spawn(move || connection(stream, &seen));
    }
}

fn connection(stream: TcpStream, seen: &mpsc::Sender<Seen>) {
    let _ = stream.set_nodelay(true);
    let Ok(read_half) = stream.try_clone() else { return };
    let mut reader = BufReader::new(read_half);
    let mut writer = stream;
    loop {
        let mut request_line = String::new();
        match reader.read_line(&mut request_line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let at = Instant::now();
        let mut length = 0usize;
        loop {
            let mut header = String::new();
            match reader.read_line(&mut header) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length.min(1 << 20)];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let mut parts = request_line.split_whitespace();
        let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        if method == "GET" && path == "/2018-06-01/runtime/invocation/next" {
            let _ = seen.send(Seen::Poll(at));
            // Hang: read until the process is killed and the socket closes.
            let mut sink = [0u8; 512];
            while matches!(reader.read(&mut sink), Ok(n) if n > 0) {}
            return;
        }
        let _ = seen.send(Seen::Other(format!("{method} {path}: {}", String::from_utf8_lossy(&body))));
        let answer = "HTTP/1.1 202 Accepted\r\ncontent-length: 2\r\ncontent-type: application/json\r\n\r\n{}";
        if writer.write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
}

/// The environment Lambda and the template give `function`; AWS endpoints point at `closed`.
fn environment(function: &str, runtime_api: &str, closed: &str, home: &Path) -> Vec<(String, String)> {
    let mut env: Vec<(&str, String)> = vec![
        ("PATH", "/usr/bin:/bin".into()),
        ("HOME", home.display().to_string()),
        ("AWS_LAMBDA_RUNTIME_API", runtime_api.into()),
        ("AWS_LAMBDA_FUNCTION_NAME", format!("retarget-{function}")),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256".into()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".into()),
        ("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/retarget-{function}")),
        ("AWS_LAMBDA_LOG_STREAM_NAME", "2026/11/28/[$LATEST]cold-start".into()),
        ("AWS_LAMBDA_LOG_FORMAT", "JSON".into()),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_DEFAULT_REGION", "us-east-1".into()),
        ("AWS_ACCESS_KEY_ID", "AKIDCOLDSTART".into()),
        ("AWS_SECRET_ACCESS_KEY", "cold-start-secret".into()),
        ("AWS_SESSION_TOKEN", "cold-start-token".into()),
        ("AWS_ENDPOINT_URL", closed.into()),
        ("TABLE_NAME", "retarget".into()),
        ("RUST_LOG", "info".into()),
    ];
    let queue = |name: &str| format!("{closed}/000000000000/retarget-{name}");
    match function {
        "messages" => {
            env.push(("PUSH_QUEUE_URL", queue("push")));
            env.push(("SMS_QUEUE_URL", queue("sms")));
            env.push(("EMAIL_QUEUE_URL", queue("email")));
        }
        "scheduler" => {
            env.push(("PUSH_QUEUE_URL", queue("push")));
            env.push(("SMS_QUEUE_URL", queue("sms")));
            env.push(("EMAIL_QUEUE_URL", queue("email")));
            env.push(("EVENT_BUS_NAME", "retarget".into()));
        }
        "email-sender" => {
            env.push(("PUBLIC_BASE_URL", "https://retarget.example.com".into()));
            env.push(("EMAIL_QUEUE_URL", queue("email")));
            env.push(("EMAIL_DEAD_LETTER_QUEUE_URL", queue("email-dlq")));
        }
        "webhooks" => env.push(("PUBLIC_BASE_URL", "https://retarget.example.com".into())),
        // Where audiences too big for a Lambda response are streamed from (the export URL).
        "audiences" => env.push(("AUDIENCE_EXPORT_URL", "https://export.lambda-url.us-east-1.on.aws".into())),
        "sms-sender" => {
            env.push(("PUBLIC_BASE_URL", "https://retarget.example.com".into()));
            env.push(("SMS_QUEUE_URL", queue("sms")));
            env.push(("SMS_DEAD_LETTER_QUEUE_URL", queue("sms-dlq")));
        }
        "push-sender" => {
            env.push(("PUSH_QUEUE_URL", queue("push")));
            env.push(("PUSH_DEAD_LETTER_QUEUE_URL", queue("push-dlq")));
        }
        _ => {}
    }
    env.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

/// A port nothing listens on: bound, then released.
fn closed_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// One start: spawn, wait for the first poll, kill. Milliseconds from spawn to poll.
fn start_once(binary: &Path, env: &[(String, String)], seen: &mpsc::Receiver<Seen>) -> anyhow::Result<f64> {
    while seen.try_recv().is_ok() {} // nothing left over from the previous process
    let started = Instant::now();
    let mut child = Command::new(binary)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("spawning {}", binary.display()))?;
    let deadline = started + Duration::from_secs(10);
    let outcome = loop {
        match seen.recv_timeout(Duration::from_millis(50)) {
            Ok(Seen::Poll(at)) => break Ok(at.duration_since(started).as_secs_f64() * 1000.0),
            Ok(Seen::Other(what)) => {
                break Err(anyhow::anyhow!("the function reported instead of polling: {what}"));
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if let Some(status) = child.try_wait()? {
                    break Err(anyhow::anyhow!("exited with {status} before polling"));
                }
                if Instant::now() > deadline {
                    break Err(anyhow::anyhow!("no poll within 10 s"));
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break Err(anyhow::anyhow!("stub stopped")),
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    outcome.map_err(|e| {
        let mut stderr = String::new();
        if let Some(mut pipe) = child.stderr.take() {
            let _ = pipe.read_to_string(&mut stderr);
        }
        e.context(format!("{}: {}", binary.display(), stderr.trim()))
    })
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    // Nearest rank: the smallest sample with at least q of the samples at or below it.
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

pub fn run(opts: Options) -> anyhow::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let runtime_api = format!("127.0.0.1:{}", listener.local_addr()?.port());
    let closed = format!("http://127.0.0.1:{}", closed_port()?);
    let home = std::env::temp_dir().join(format!("retarget-cold-start-{}", std::process::id()));
    std::fs::create_dir_all(&home)?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || serve(listener, tx));

    for function in &opts.functions {
        let package = format!("retarget-{function}");
        let binary = opts.bin_dir.join(&package);
        if !binary.is_file() {
            let built_by = if *function == "audience-export" { "retarget-audiences" } else { &package };
            bail!("{} is missing: cargo build --release -p {built_by}", binary.display());
        }
        let env = environment(function, &runtime_api, &closed, &home);
        start_once(&binary, &env, &rx)?; // warm-up: page cache, not counted
        let mut samples = Vec::with_capacity(opts.starts);
        for _ in 0..opts.starts.max(1) {
            samples.push(start_once(&binary, &env, &rx)?);
        }
        let mut sorted = samples.clone();
        sorted.sort_by(f64::total_cmp);
        let median = quantile(&sorted, 0.5);
        let zip = opts.zip_dir.join(&package).join("bootstrap.zip");
        let line = json!({
            "bench": "cold_start",
            "function": function,
            "starts": samples.len(),
            "median_ms": median,
            "p90_ms": quantile(&sorted, 0.9),
            "min_ms": sorted.first(),
            "max_ms": sorted.last(),
            "samples_ms": samples,
            "binary_bytes": std::fs::metadata(&binary)?.len(),
            "arm64_zip_bytes": std::fs::metadata(&zip).ok().map(|m| m.len()),
        });
        println!("{line}");
    }
    let _ = std::fs::remove_dir_all(&home);
    Ok(())
}

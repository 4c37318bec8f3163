//! The SMS sender: an SQS consumer (the shared pipeline in `retarget_shared::sender`) whose
//! provider is Twilio's Messages API.

pub mod twilio;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use retarget_shared::config::{EnvReader, TableConfig};

pub use twilio::{TwilioProvider, sms_body, status_callback_url};

/// Twilio's production API.
pub const DEFAULT_TWILIO_API_BASE: &str = "https://api.twilio.com";

/// One Twilio request, connect to response. The function's own timeout (60 s) covers a batch.
pub const TWILIO_TIMEOUT: Duration = Duration::from_secs(10);

/// The sender's configuration, read once at cold start.
#[derive(Debug, Clone)]
pub struct Config {
    pub table: TableConfig,
    /// `TWILIO_API_BASE`, without a trailing slash.
    pub twilio_api_base: String,
    /// `PUBLIC_BASE_URL`, without a trailing slash: the prefix of every StatusCallback.
    pub public_base_url: String,
}

impl Config {
    pub fn read(env: &mut EnvReader) -> Self {
        Self {
            table: TableConfig::read(env),
            twilio_api_base: env.url("TWILIO_API_BASE", Some(DEFAULT_TWILIO_API_BASE)),
            public_base_url: env.url("PUBLIC_BASE_URL", None),
        }
    }
}

/// The invocation's deadline (Lambda's `deadline`, epoch milliseconds) as an `Instant`:
/// `now_instant` plus what remains of it at `now_wall`. `None` when Lambda gave none (0).
pub fn deadline_instant(
    deadline_epoch_ms: u64,
    now_wall: SystemTime,
    now_instant: Instant,
) -> Option<Instant> {
    if deadline_epoch_ms == 0 {
        return None;
    }
    let now_ms = u64::try_from(now_wall.duration_since(UNIX_EPOCH).ok()?.as_millis()).ok()?;
    Some(now_instant + Duration::from_millis(deadline_epoch_ms.saturating_sub(now_ms)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_defaults_and_requirements() {
        let mut env =
            EnvReader::from_pairs([("TABLE_NAME", "t"), ("PUBLIC_BASE_URL", "https://hooks.example.com/")]);
        let config = Config::read(&mut env);
        env.finish().unwrap();
        assert_eq!(config.table.table_name, "t");
        assert_eq!(config.twilio_api_base, "https://api.twilio.com");
        assert_eq!(config.public_base_url, "https://hooks.example.com");

        let mut env = EnvReader::from_pairs([("TWILIO_API_BASE", "http://127.0.0.1:4010")]);
        let config = Config::read(&mut env);
        assert_eq!(config.twilio_api_base, "http://127.0.0.1:4010");
        let err = env.finish().unwrap_err().to_string();
        assert!(
            err.contains("TABLE_NAME is required") && err.contains("PUBLIC_BASE_URL is required"),
            "{err}"
        );

        let mut env = EnvReader::from_pairs([("TABLE_NAME", "t"), ("PUBLIC_BASE_URL", "hooks.example.com")]);
        let _ = Config::read(&mut env);
        assert!(env.finish().unwrap_err().to_string().contains("PUBLIC_BASE_URL must be an http(s) URL"));
    }

    #[test]
    fn deadline_is_what_remains_from_now() {
        let wall = UNIX_EPOCH + Duration::from_millis(1_700_000_000_000);
        let now = Instant::now();
        assert_eq!(deadline_instant(1_700_000_042_000, wall, now), Some(now + Duration::from_secs(42)));
        assert_eq!(deadline_instant(1_699_999_999_000, wall, now), Some(now));
        assert_eq!(deadline_instant(0, wall, now), None);
    }
}

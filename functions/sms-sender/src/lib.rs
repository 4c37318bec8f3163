//! The SMS sender: an SQS consumer (the shared pipeline in `retarget_shared::services::sender`)
//! whose provider is Twilio's Messages API.

pub mod links;
pub mod twilio;

use std::time::Duration;

use retarget_shared::bootstrap::{Error, Infra, ProviderFromEnv};
use retarget_shared::config::EnvReader;
use retarget_shared::domain::Channel;

pub use twilio::{TwilioProvider, sms_body, status_callback_url};

/// Twilio's production API.
pub const DEFAULT_TWILIO_API_BASE: &str = "https://api.twilio.com";

/// One Twilio request, connect to response. The function's own timeout (60 s) covers a batch.
pub const TWILIO_TIMEOUT: Duration = Duration::from_secs(10);

impl ProviderFromEnv for TwilioProvider {
    const CHANNEL: Channel = Channel::Sms;

    /// `TWILIO_API_BASE` (default Twilio's API) and `PUBLIC_BASE_URL`, the prefix of every
    /// StatusCallback and tracked link; both without a trailing slash. Links are stored in the
    /// table (`TABLE_NAME`).
    fn from_env(env: &mut EnvReader, infra: &Infra) -> Result<Self, Error> {
        let api_base = env.url("TWILIO_API_BASE", Some(DEFAULT_TWILIO_API_BASE));
        let provider = TwilioProvider::new(api_base, env.url("PUBLIC_BASE_URL", None), TWILIO_TIMEOUT);
        Ok(provider.with_links(infra.store(env)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn infra() -> Infra {
        let sdk =
            aws_config::SdkConfig::builder().behavior_version(aws_config::BehaviorVersion::latest()).build();
        Infra::new(sdk, std::sync::Arc::new(retarget_shared::SystemClock))
    }

    #[test]
    fn config_defaults_and_requirements() {
        let mut env = EnvReader::from_pairs([
            ("PUBLIC_BASE_URL", "https://hooks.example.com/"),
            ("TABLE_NAME", "retarget"),
        ]);
        let provider = TwilioProvider::from_env(&mut env, &infra()).unwrap();
        env.finish().unwrap();
        assert_eq!(provider.api_base(), "https://api.twilio.com");
        assert_eq!(provider.public_base_url(), "https://hooks.example.com");

        let mut env =
            EnvReader::from_pairs([("TWILIO_API_BASE", "http://127.0.0.1:4010"), ("TABLE_NAME", "retarget")]);
        let provider = TwilioProvider::from_env(&mut env, &infra()).unwrap();
        assert_eq!(provider.api_base(), "http://127.0.0.1:4010");
        let err = env.finish().unwrap_err().to_string();
        assert!(err.contains("PUBLIC_BASE_URL is required"), "{err}");

        let mut env =
            EnvReader::from_pairs([("PUBLIC_BASE_URL", "hooks.example.com"), ("TABLE_NAME", "retarget")]);
        let _ = TwilioProvider::from_env(&mut env, &infra());
        assert!(env.finish().unwrap_err().to_string().contains("PUBLIC_BASE_URL must be an http(s) URL"));
    }
}

//! Message contents, checked per channel. Messages and retargets follow the same rules; the
//! stored shape is the shape clients send.

use serde::{Deserialize, Serialize};

use super::Channel;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Contents {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    pub body: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// Why contents do not fit a channel; each names the field, as the API reports it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContentsError {
    #[error("contents.body: must be 1 to {limit} characters for {channel}")]
    Body { limit: usize, channel: Channel },
    #[error("contents.title: at most {MAX_TITLE} characters")]
    Title,
    #[error("contents.url: must be an http(s) URL of at most {MAX_URL} characters")]
    Url,
}

const MAX_TITLE: usize = 200;
const MAX_URL: usize = 2048;

impl Contents {
    /// A body within the channel's limit, a short title, an http(s) url.
    pub fn check(&self, channel: Channel) -> Result<(), ContentsError> {
        let limit = match channel {
            // Twilio's own limit on a message body.
            Channel::Sms => 1600,
            Channel::Push => 4000,
        };
        if self.body.trim().is_empty() || self.body.chars().count() > limit {
            return Err(ContentsError::Body { limit, channel });
        }
        if self.title.as_ref().is_some_and(|t| t.chars().count() > MAX_TITLE) {
            return Err(ContentsError::Title);
        }
        if let Some(url) = &self.url {
            let ok = (url.starts_with("https://") || url.starts_with("http://"))
                && url.len() <= MAX_URL
                && !url.chars().any(|c| c.is_whitespace() || c.is_control());
            if !ok {
                return Err(ContentsError::Url);
            }
        }
        Ok(())
    }
}

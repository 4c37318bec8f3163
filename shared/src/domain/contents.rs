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
    /// Email only: the HTML part (`body` is the text part, `title` the subject).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub html: Option<String>,
}

/// Why contents do not fit a channel; each names the field, as the API reports it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContentsError {
    #[error("contents.body: must be 1 to {limit} characters for {channel}")]
    Body { limit: usize, channel: Channel },
    #[error("contents.title: at most {MAX_TITLE} characters")]
    Title,
    #[error("contents.title: an email needs a subject (1 to {MAX_TITLE} characters, one line)")]
    Subject,
    #[error("contents.html: email only, 1 to {MAX_HTML} characters")]
    Html,
    #[error("contents.url: must be an http(s) URL of at most {MAX_URL} characters")]
    Url,
}

const MAX_TITLE: usize = 200;
const MAX_URL: usize = 2048;
/// The HTML part of an email. SES takes messages up to 40 MB; a retargeting email is far smaller.
const MAX_HTML: usize = 500_000;

impl Contents {
    /// A body within the channel's limit, a short title, an http(s) url.
    pub fn check(&self, channel: Channel) -> Result<(), ContentsError> {
        let limit = match channel {
            // Twilio's own limit on a message body.
            Channel::Sms => 1600,
            Channel::Push => 4000,
            Channel::Email => 100_000,
        };
        if self.body.trim().is_empty() || self.body.chars().count() > limit {
            return Err(ContentsError::Body { limit, channel });
        }
        if self.title.as_ref().is_some_and(|t| t.chars().count() > MAX_TITLE) {
            return Err(ContentsError::Title);
        }
        if channel == Channel::Email {
            // The subject becomes a header: one line, not blank.
            let subject_ok =
                self.title.as_ref().is_some_and(|t| !t.trim().is_empty() && !t.contains(['\r', '\n']));
            if !subject_ok {
                return Err(ContentsError::Subject);
            }
        }
        match &self.html {
            Some(html)
                if channel != Channel::Email || html.trim().is_empty() || html.chars().count() > MAX_HTML =>
            {
                return Err(ContentsError::Html);
            }
            _ => {}
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

//! Message contents as clients send them, checked per channel. Shared by messages and
//! retargets, whose contents follow the same rules.

use serde::Deserialize;

use crate::adapters::store::Contents;
use crate::domain::Channel;
use crate::edge::problem::ApiError;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContentsIn {
    #[serde(default)]
    pub title: Option<String>,
    pub body: String,
    #[serde(default)]
    pub url: Option<String>,
}

/// Checks message contents for a channel: a body within the channel's limit, a short title,
/// an http(s) url. Shared with retargets, whose contents follow the same rules.
pub fn validate_contents(channel: Channel, contents: ContentsIn) -> Result<Contents, ApiError> {
    let body_limit = match channel {
        // Twilio's own limit on a message body.
        Channel::Sms => 1600,
        Channel::Push => 4000,
    };
    let body_len = contents.body.chars().count();
    if contents.body.trim().is_empty() || body_len > body_limit {
        return Err(ApiError::invalid_request(format!(
            "contents.body: must be 1 to {body_limit} characters for {channel}"
        )));
    }
    if contents.title.as_ref().is_some_and(|t| t.chars().count() > 200) {
        return Err(ApiError::invalid_request("contents.title: at most 200 characters"));
    }
    if let Some(url) = &contents.url {
        let ok = (url.starts_with("https://") || url.starts_with("http://"))
            && url.len() <= 2048
            && !url.chars().any(|c| c.is_whitespace() || c.is_control());
        if !ok {
            return Err(ApiError::invalid_request(
                "contents.url: must be an http(s) URL of at most 2048 characters",
            ));
        }
    }
    Ok(Contents { title: contents.title, body: contents.body, url: contents.url })
}

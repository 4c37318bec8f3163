//! Tracked SMS links: every `http(s)://` URL of an SMS body is sent, per recipient, as
//! `{PUBLIC_BASE_URL}/r/{code}`; opening it answers 302 to the original URL and records
//! `clicked` for that recipient.
//!
//! A code is [`LinkCode::LEN`] characters of base64url (`[A-Za-z0-9_-]`): 60 random bits, so a
//! guess hits one of a hundred million live links about once in 10¹⁰ tries. In an SMS, a link
//! costs `len(PUBLIC_BASE_URL) + 3 + 10` characters (`https://go.example.co/r/AbCdEfGhIj` is
//! 34 of a GSM-7 segment's 160).

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as BASE64URL;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{AppId, MessageId, SubscriptionId};

/// A link code, well formed (not necessarily one that exists).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LinkCode(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a link code")]
pub struct LinkCodeError;

impl LinkCode {
    /// Characters of a code this service makes (the contract allows 6 to 12).
    pub const LEN: usize = 10;

    /// A fresh, random code.
    pub fn generate() -> Self {
        // 8 random bytes encode to 11 characters; the first 10 carry 60 random bits.
        let mut code = BASE64URL.encode(rand::random::<[u8; 8]>());
        code.truncate(Self::LEN);
        Self(code)
    }

    /// A code as received in a path: 6 to 12 characters of `[A-Za-z0-9_-]`.
    pub fn parse(s: &str) -> Result<Self, LinkCodeError> {
        let ok = (6..=12).contains(&s.len())
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if ok { Ok(Self(s.to_owned())) } else { Err(LinkCodeError) }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for LinkCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for LinkCode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for LinkCode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// One recipient's tracked link: where it goes and whose click it records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub code: LinkCode,
    pub app_id: AppId,
    pub message_id: MessageId,
    pub subscription_id: SubscriptionId,
    /// The original URL, as it was in the body.
    pub url: String,
    /// The message's data expiry: the link answers 404 from then on.
    pub expires_at: DateTime<Utc>,
}

impl Link {
    pub fn is_expired_at(&self, now: DateTime<Utc>) -> bool {
        now >= self.expires_at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_codes_are_short_url_safe_and_distinct() {
        let codes: std::collections::HashSet<String> = (0..10_000).map(|_| LinkCode::generate().0).collect();
        assert_eq!(codes.len(), 10_000);
        for code in codes.iter().take(100) {
            assert_eq!(code.len(), LinkCode::LEN);
            assert_eq!(LinkCode::parse(code).unwrap().as_str(), code);
        }
    }

    #[test]
    fn parse_takes_6_to_12_url_safe_characters() {
        for ok in ["abcdef", "AbC-_9xyzQWE", "0123456789"] {
            assert!(LinkCode::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "abcde", "abcdefghijklm", "abc/def", "abc def", "abc.def", "ab%20cd", "ééééé"] {
            assert!(LinkCode::parse(bad).is_err(), "{bad}");
        }
    }
}

//! Email addresses of email subscriptions: an addr-spec (RFC 5322 `local@domain`), checked by the
//! `email_address` crate, not a regex of our own. No display name (`Ada <ada@example.com>`), no
//! domain literal (`ada@[192.0.2.1]`), a domain with a top-level part; at most 254 characters
//! (RFC 5321's path limit). Stored as given; two addresses that differ only in case are the
//! same subscription (the contract compares them case-insensitively).

use std::fmt;

use email_address::{EmailAddress as Parsed, Options};
use serde::{Deserialize, Serialize};

/// An email address, well formed.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EmailAddress(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("emails must be an addr-spec such as ada@example.com (no display name, at most 254 characters)")]
pub struct EmailAddressError;

/// RFC 5321: a forward path holds at most 256 octets, angle brackets included.
const MAX_LEN: usize = 254;

impl EmailAddress {
    pub fn parse(s: &str) -> Result<Self, EmailAddressError> {
        if s.len() > MAX_LEN || s.trim() != s {
            return Err(EmailAddressError);
        }
        let options = Options::default().with_required_tld().without_display_text().without_domain_literal();
        let parsed = Parsed::parse_with_options(s, options).map_err(|_| EmailAddressError)?;
        // The crate accepts what it can read an address from; keep only the address itself.
        if parsed.email() != s {
            return Err(EmailAddressError);
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// What identifies the subscription: the address in lower case.
    pub fn identity(&self) -> String {
        self.0.to_lowercase()
    }

    /// `a***@example.com`: enough to tell addresses apart in a log, not enough to write to one.
    pub fn redacted(&self) -> String {
        match self.0.split_once('@') {
            Some((local, domain)) => format!("{}***@{domain}", local.chars().next().unwrap_or('*')),
            None => "***".into(),
        }
    }
}

impl fmt::Debug for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EmailAddress({})", self.redacted())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addr_specs_parse_and_others_do_not() {
        for ok in ["ada@example.com", "Ada.Lovelace+news@Example.co.uk", "o'brien@example.ie", "x@a.io"] {
            assert_eq!(EmailAddress::parse(ok).map(|e| e.as_str().to_owned()), Ok(ok.to_owned()), "{ok}");
        }
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.com",
            "ada@localhost",
            "Ada <ada@example.com>",
            "<ada@example.com>",
            "ada@[192.0.2.1]",
            " ada@example.com",
            "ada@example.com ",
            "ada@@example.com",
            "ada example@example.com",
            "ada@exa mple.com",
            "ada@example.com\r\nBcc: eve@example.com",
        ] {
            assert_eq!(EmailAddress::parse(bad), Err(EmailAddressError), "{bad:?}");
        }
        let long = format!("{}@example.com", "a".repeat(243));
        assert!(EmailAddress::parse(&long).is_err(), "255 characters");
    }

    #[test]
    fn case_does_not_make_another_subscription_and_logs_see_no_address() {
        let a = EmailAddress::parse("Ada@Example.com").unwrap();
        let b = EmailAddress::parse("ada@example.COM").unwrap();
        assert_eq!(a.identity(), b.identity());
        assert_eq!(a.as_str(), "Ada@Example.com", "stored as given");
        assert_eq!(format!("{a:?}"), "EmailAddress(A***@Example.com)");
        assert!(!format!("{a:?}").contains("Ada@"));
    }
}

/// The `EmailTags` the email sender sets on every email; SES puts them back on each event it
/// publishes (`detail.mail.tags`), which is how an event finds its recipient.
pub mod email_tags {
    pub const APP_ID: &str = "app_id";
    pub const MESSAGE_ID: &str = "message_id";
    pub const SUBSCRIPTION_ID: &str = "subscription_id";
}

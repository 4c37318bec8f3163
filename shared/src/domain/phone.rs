use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

/// An E.164 phone number: `+`, a non-zero country digit, at most 15 digits in all.
///
/// `Debug` and `Display` mask the middle digits, so a number never reaches a log in clear;
/// [`PhoneNumber::as_e164`] is the only way to the full value (for the provider and the API).
#[derive(Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct PhoneNumber(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("phone numbers must be E.164: `+` then 2 to 15 digits, the first not 0")]
pub struct PhoneNumberError;

impl PhoneNumber {
    pub fn parse(s: &str) -> Result<Self, PhoneNumberError> {
        let digits = s.strip_prefix('+').ok_or(PhoneNumberError)?;
        let ok = (2..=15).contains(&digits.len())
            && digits.bytes().all(|b| b.is_ascii_digit())
            && !digits.starts_with('0');
        if ok { Ok(Self(s.to_owned())) } else { Err(PhoneNumberError) }
    }

    pub fn as_e164(&self) -> &str {
        &self.0
    }

    /// `+1555***4567`: enough to tell numbers apart in a log, not enough to text anyone.
    pub fn masked(&self) -> String {
        let d = &self.0;
        let keep_tail = 4.min(d.len().saturating_sub(4));
        let head = &d[..d.len().min(4)];
        let tail = &d[d.len() - keep_tail..];
        format!("{head}***{tail}")
    }
}

impl fmt::Debug for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PhoneNumber({})", self.masked())
    }
}

impl fmt::Display for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

impl<'de> Deserialize<'de> for PhoneNumber {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_e164_only() {
        for ok in ["+15551234567", "+447911123456", "+12", "+123456789012345"] {
            assert!(PhoneNumber::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "15551234567",
            "+0155512345",
            "+1",
            "+1234567890123456",
            "+1 555 123",
            "+1555-123",
            "",
            "+",
            "+１２３",
        ] {
            assert!(PhoneNumber::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn never_prints_in_clear() {
        let p = PhoneNumber::parse("+15551234567").unwrap();
        assert_eq!(p.to_string(), "+155***4567");
        assert!(!format!("{p:?}").contains("15551234567"));
        assert_eq!(p.as_e164(), "+15551234567");
    }

    proptest! {
        #[test]
        fn masking_shows_at_most_seven_digits(n in "\\+[1-9][0-9]{7,14}") {
            let masked = PhoneNumber::parse(&n).unwrap().to_string();
            prop_assert!(masked.contains("***"));
            prop_assert!(masked.chars().filter(char::is_ascii_digit).count() <= 7);
            prop_assert!(!masked.contains(&n[1..]));
        }
    }
}

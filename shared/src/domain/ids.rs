use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use ulid::Ulid;

/// An id that does not parse. Callers map it to `not_found`: a malformed id names nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a valid id")]
pub struct IdError(pub String);

macro_rules! ulid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(Ulid);

        impl $name {
            /// A fresh, time-sortable id.
            pub fn new() -> Self {
                Self(Ulid::new())
            }

            /// A fresh id whose time part is `at` (so ids sort like the clock that made them).
            pub fn at(at: chrono::DateTime<chrono::Utc>) -> Self {
                let millis = u64::try_from(at.timestamp_millis()).unwrap_or_default();
                Self(Ulid::from_parts(millis, rand::random()))
            }

            /// The time part of the id: when [`Self::at`] made it (to the millisecond).
            pub fn time(&self) -> chrono::DateTime<chrono::Utc> {
                let millis = i64::try_from(self.0.timestamp_ms()).unwrap_or(i64::MAX);
                chrono::DateTime::from_timestamp_millis(millis).unwrap_or_default()
            }

            /// The id's 16 bytes (big-endian: they sort as the id does).
            pub fn to_bytes(&self) -> [u8; 16] {
                self.0.to_bytes()
            }

            pub fn from_bytes(bytes: [u8; 16]) -> Self {
                Self(Ulid::from_bytes(bytes))
            }

            pub fn parse(s: &str) -> Result<Self, IdError> {
                // Ulid::from_string accepts lower case too; ids are canonical upper case only,
                // so one id has exactly one spelling (and one DynamoDB key).
                // The first character must be 0-7: anything above overflows 128 bits.
                let canonical = s.len() == ulid::ULID_LEN
                    && s.bytes().next().is_some_and(|b| (b'0'..=b'7').contains(&b))
                    && !s.bytes().any(|b| b.is_ascii_lowercase());
                if !canonical {
                    return Err(IdError(s.chars().take(64).collect()));
                }
                Ulid::from_string(s).map(Self).map_err(|_| IdError(s.chars().take(64).collect()))
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                Self::parse(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

ulid_id!(
    /// A tenant: one app of one customer.
    AppId
);
ulid_id!(
    /// One push token or one phone number of an app.
    SubscriptionId
);
ulid_id!(
    /// One message (original or retarget) sent to many subscriptions.
    MessageId
);
ulid_id!(
    /// One scheduled follow-up of a source message.
    RetargetId
);

/// Control characters and the invisible formatting ones (Unicode category Cf: bidirectional
/// overrides and isolates, zero-width spaces and joiners, the byte order mark, soft hyphen…):
/// an identifier holding one can look identical to another, or reorder the text around it
/// when displayed, so caller-chosen ids refuse them.
pub fn is_hidden(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{00AD}'
                | '\u{061C}'
                | '\u{180E}'
                | '\u{200B}'..='\u{200F}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2060}'..='\u{2064}'
                | '\u{2066}'..='\u{206F}'
                | '\u{FEFF}'
                | '\u{FFF9}'..='\u{FFFB}'
                | '\u{E0001}'
                | '\u{E0020}'..='\u{E007F}'
        )
}

/// A caller-chosen text id: 1 to `MAX_LEN` bytes without control or invisible characters.
macro_rules! text_id {
    ($(#[$doc:meta])* $name:ident, $max:expr $(, $derive:ident)*) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize $(, $derive)*)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub const MAX_LEN: usize = $max;

            pub fn parse(s: &str) -> Result<Self, IdError> {
                let ok = !s.is_empty() && s.len() <= Self::MAX_LEN && !s.chars().any(is_hidden);
                if ok { Ok(Self(s.to_owned())) } else { Err(IdError(s.chars().take(64).collect())) }
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                Self::parse(&s).map_err(|_| {
                    serde::de::Error::custom(format!(
                        "must be 1 to {} characters without control or invisible characters",
                        Self::MAX_LEN
                    ))
                })
            }
        }
    };
}

text_id!(
    /// The caller's own id for a person; links that person's subscriptions across channels.
    ExternalUserId, 256, PartialOrd, Ord
);
text_id!(
    /// A caller- or provider-chosen id of one interaction event, used for de-duplication.
    EventId, 128
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_reject_anything_else() {
        let id = MessageId::new();
        assert_eq!(MessageId::parse(&id.to_string()), Ok(id));
        for bad in [
            "",
            "../../etc/passwd",
            "01ARZ3NDEKTSV4RRFFQ69G5FA",
            "01arz3ndektsv4rrffq69g5fav",
            "ZZZZZZZZZZZZZZZZZZZZZZZZZZ",
        ] {
            assert!(MessageId::parse(bad).is_err(), "{bad} parsed");
        }
    }

    #[test]
    fn ids_made_at_a_time_sort_by_that_time() {
        let t0 = chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let t1 = t0 + chrono::Duration::milliseconds(1);
        assert!(SubscriptionId::at(t0) < SubscriptionId::at(t1));
    }

    #[test]
    fn ids_deserialize_from_json_strings_only() {
        let id = AppId::new();
        let json = format!("\"{id}\"");
        assert_eq!(serde_json::from_str::<AppId>(&json).unwrap(), id);
        assert!(serde_json::from_str::<AppId>("42").is_err());
        assert!(serde_json::from_str::<AppId>("\"nope\"").is_err());
    }

    #[test]
    fn external_user_ids_are_bounded_and_printable() {
        assert!(ExternalUserId::parse("user-42").is_ok());
        assert!(ExternalUserId::parse("").is_err());
        assert!(ExternalUserId::parse("a\u{0}b").is_err());
        assert!(ExternalUserId::parse(&"x".repeat(257)).is_err());
        for hidden in ["bob\u{202e}gpj.exe", "bo\u{200d}b", "\u{feff}bob", "bob\u{2066}", "bo\u{ad}b"] {
            assert!(ExternalUserId::parse(hidden).is_err(), "{hidden:?}");
            assert!(EventId::parse(hidden).is_err(), "{hidden:?}");
        }
        // Visible text in any script stays allowed.
        assert!(ExternalUserId::parse("مستخدم-٤٢").is_ok());
        assert!(EventId::parse("événement-1").is_ok());
    }
}

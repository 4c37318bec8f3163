//! A recipient's time zone: an IANA zone of the tz database (chrono-tz, DST rules built in), and
//! the one a phone number implies, from libphonenumber's prefix map (see `phone_zones`).

use std::fmt;
use std::str::FromStr;

use chrono_tz::Tz;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::PhoneNumber;
use super::phone_zones::{LONGEST_PREFIX, PREFIXES};

/// Where the zones phone numbers imply come from (libphonenumber's map, its version).
pub use super::phone_zones::SOURCE as PHONE_ZONES_SOURCE;

/// An IANA time zone name the tz database knows (`Europe/Paris`, `America/New_York`, `UTC`).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TimeZone(Tz);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an IANA time zone name (e.g. Europe/Paris, America/New_York, UTC)")]
pub struct TimeZoneError;

impl TimeZone {
    pub const UTC: TimeZone = TimeZone(Tz::UTC);

    /// The zone named exactly so (case matters, as in the tz database).
    pub fn parse(name: &str) -> Result<Self, TimeZoneError> {
        // chrono-tz also takes names in other cases; a stored name must be the database's own.
        let tz = Tz::from_str(name).map_err(|_| TimeZoneError)?;
        if tz.name() == name { Ok(Self(tz)) } else { Err(TimeZoneError) }
    }

    pub fn name(self) -> &'static str {
        self.0.name()
    }

    pub fn tz(self) -> Tz {
        self.0
    }

    /// The zone a phone number lies in, when its longest prefix in libphonenumber's map names
    /// exactly one (`+33…` Europe/Paris, `+1 212…` America/New_York); `None` when that prefix
    /// spans several zones (`+1 555…`, `+7…`) or none is known.
    pub fn of_phone(phone: &PhoneNumber) -> Option<TimeZone> {
        let digits = phone.as_e164().trim_start_matches('+');
        (1..=digits.len().min(LONGEST_PREFIX))
            .rev()
            .find_map(|len| {
                let prefix = &digits[..len];
                PREFIXES.binary_search_by(|(p, _)| (*p).cmp(prefix)).ok().map(|at| PREFIXES[at].1)
            })
            .filter(|zone| !zone.is_empty())
            .and_then(|zone| TimeZone::parse(zone).ok())
    }
}

impl fmt::Debug for TimeZone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TimeZone({})", self.name())
    }
}

impl fmt::Display for TimeZone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for TimeZone {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for TimeZone {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zone_of(number: &str) -> Option<&'static str> {
        TimeZone::of_phone(&PhoneNumber::parse(number).unwrap()).map(TimeZone::name)
    }

    #[test]
    fn takes_iana_names_only_and_in_their_own_case() {
        for ok in
            ["Europe/Paris", "America/New_York", "UTC", "Asia/Kolkata", "America/Argentina/Buenos_Aires"]
        {
            assert_eq!(TimeZone::parse(ok).unwrap().name(), ok);
        }
        for bad in ["", "Paris", "europe/paris", "EST5EDT ", "Mars/Olympus", "+02:00", "Europe/Paris\0"] {
            assert!(TimeZone::parse(bad).is_err(), "{bad:?}");
        }
        let json = serde_json::to_string(&TimeZone::parse("Europe/Paris").unwrap()).unwrap();
        assert_eq!(json, r#""Europe/Paris""#);
        assert!(serde_json::from_str::<TimeZone>(r#""Nowhere/Atall""#).is_err());
    }

    #[test]
    fn a_number_implies_its_zone_when_its_prefix_lies_in_one() {
        // Single-zone countries, and NANP area codes.
        assert_eq!(zone_of("+33612345678"), Some("Europe/Paris"));
        assert_eq!(zone_of("+4915112345678"), Some("Europe/Berlin"));
        assert_eq!(zone_of("+819012345678"), Some("Asia/Tokyo"));
        assert_eq!(zone_of("+12125551234"), Some("America/New_York"));
        assert_eq!(zone_of("+14155551234"), Some("America/Los_Angeles"));
        assert_eq!(zone_of("+13125551234"), Some("America/Chicago"));
        assert_eq!(zone_of("+442071234567"), Some("Europe/London"), "a London landline");
        // libphonenumber's own mapping, coarse as it is: Russian mobiles map to Moscow.
        assert_eq!(zone_of("+79161234567"), Some("Europe/Moscow"));
        // Several zones under the longest prefix: no guess (the app's default applies).
        assert_eq!(zone_of("+15555551234"), None, "555 is no area code: +1 spans 42 zones");
        assert_eq!(zone_of("+447911123456"), None, "UK mobiles: London, Guernsey, Isle of Man");
        assert_eq!(zone_of("+5215512345678"), None, "Mexican mobiles span its zones");
    }

    #[test]
    fn the_generated_table_is_sorted_unique_and_names_known_zones() {
        assert!(PHONE_ZONES_SOURCE.contains("phonenumbers"), "{PHONE_ZONES_SOURCE}");
        assert!(PREFIXES.windows(2).all(|w| w[0].0 < w[1].0), "sorted, no duplicate prefix");
        for (prefix, zone) in PREFIXES {
            assert!(!prefix.is_empty() && prefix.len() <= LONGEST_PREFIX, "{prefix}");
            assert!(prefix.bytes().all(|b| b.is_ascii_digit()), "{prefix}");
            assert!(
                zone.is_empty() || TimeZone::parse(zone).is_ok(),
                "{prefix}: {zone} unknown to chrono-tz"
            );
        }
    }
}

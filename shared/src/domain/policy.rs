//! An app's delivery policy: quiet hours in each recipient's local time, the zone to assume
//! when a recipient's is unknown, and one frequency cap per person across channels.
//!
//! Pure: the rules of when a send may go, given the instant and the recipient's zone.

use std::fmt;

use chrono::{DateTime, Duration, LocalResult, NaiveDate, NaiveTime, TimeZone as _, Timelike, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{Channel, TimeZone};

/// The longest frequency-cap window: 30 days, as long as any message lives.
pub const MAX_CAP_HOURS: u32 = 720;
/// The largest `max` a cap may allow (more is no cap at all).
pub const MAX_CAP_SENDS: u32 = 1000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("{0}: a local time HH:MM, 00:00 to 23:59")]
    Time(&'static str),
    #[error("quiet_hours: start and end must differ")]
    EmptyWindow,
    #[error("{0}.channels: at least one channel, each once")]
    Channels(&'static str),
    #[error("frequency_cap.max: 1 to {MAX_CAP_SENDS}")]
    Max,
    #[error("frequency_cap.per_hours: 1 to {MAX_CAP_HOURS}")]
    PerHours,
}

/// A wall-clock time of day, to the minute: `"21:00"`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct LocalTime(NaiveTime);

impl LocalTime {
    pub fn parse(s: &str, field: &'static str) -> Result<Self, PolicyError> {
        let b = s.as_bytes();
        let two = |at: usize| -> Option<u32> {
            let (h, l) = (*b.get(at)?, *b.get(at + 1)?);
            (h.is_ascii_digit() && l.is_ascii_digit()).then(|| u32::from(h - b'0') * 10 + u32::from(l - b'0'))
        };
        if b.len() != 5 || b[2] != b':' {
            return Err(PolicyError::Time(field));
        }
        let (Some(h), Some(m)) = (two(0), two(3)) else { return Err(PolicyError::Time(field)) };
        NaiveTime::from_hms_opt(h, m, 0).map(Self).ok_or(PolicyError::Time(field))
    }

    pub fn hm(h: u32, m: u32) -> Option<Self> {
        NaiveTime::from_hms_opt(h, m, 0).map(Self)
    }
}

impl fmt::Debug for LocalTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl fmt::Display for LocalTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}", self.0.hour(), self.0.minute())
    }
}

impl Serialize for LocalTime {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for LocalTime {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::parse(&s, "time").map_err(serde::de::Error::custom)
    }
}

/// Quiet hours: from `start` to `end` in the recipient's local time, wrapping midnight when
/// `end` comes before `start` (21:00–08:00).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuietHours {
    pub start: LocalTime,
    pub end: LocalTime,
    pub channels: Vec<Channel>,
}

impl QuietHours {
    pub fn new(start: LocalTime, end: LocalTime, channels: Vec<Channel>) -> Result<Self, PolicyError> {
        if start == end {
            return Err(PolicyError::EmptyWindow);
        }
        Ok(Self { start, end, channels: checked_channels(channels, "quiet_hours")? })
    }

    pub fn applies_to(&self, channel: Channel) -> bool {
        self.channels.contains(&channel)
    }

    fn contains(&self, t: NaiveTime) -> bool {
        let (start, end) = (self.start.0, self.end.0);
        if start < end { start <= t && t < end } else { t >= start || t < end }
    }

    /// When a send at `now` to someone in `zone` may go: `None` when now is outside the quiet
    /// hours (go now), else the first instant their local clock reads `end` (never earlier).
    /// An `end` that a DST change skips that day is the first instant after the gap; one that
    /// happens twice, the first.
    pub fn release(&self, now: DateTime<Utc>, zone: TimeZone) -> Option<DateTime<Utc>> {
        let tz = zone.tz();
        let local = now.with_timezone(&tz).naive_local();
        if !self.contains(local.time()) {
            return None;
        }
        // Inside the window: it ends at the next `end` on the local clock, today or tomorrow.
        let today = local.date();
        let date = if local.time() < self.end.0 { today } else { today.succ_opt()? };
        let release = first_instant_at(zone, date, self.end.0)?;
        // Guards a zone whose rules would put that instant in the past (never, but never early).
        Some(release.max(now))
    }
}

/// The first UTC instant at which `zone`'s clock reads `time` on `date`, or — when that local
/// time does not exist (a DST gap) — the first instant after the gap.
fn first_instant_at(zone: TimeZone, date: NaiveDate, time: NaiveTime) -> Option<DateTime<Utc>> {
    let tz = zone.tz();
    let mut local = date.and_time(time);
    // Gaps last at most a day (Samoa skipped 30 December 2011): step a minute at a time.
    for _ in 0..=(26 * 60) {
        match tz.from_local_datetime(&local) {
            LocalResult::Single(t) => return Some(t.with_timezone(&Utc)),
            LocalResult::Ambiguous(first, _) => return Some(first.with_timezone(&Utc)),
            LocalResult::None => local += Duration::minutes(1),
        }
    }
    None
}

/// At most `max` messages to one person within any `per_hours` hours, on `channels`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrequencyCap {
    pub max: u32,
    pub per_hours: u32,
    pub channels: Vec<Channel>,
}

impl FrequencyCap {
    pub fn new(max: u32, per_hours: u32, channels: Vec<Channel>) -> Result<Self, PolicyError> {
        if !(1..=MAX_CAP_SENDS).contains(&max) {
            return Err(PolicyError::Max);
        }
        if !(1..=MAX_CAP_HOURS).contains(&per_hours) {
            return Err(PolicyError::PerHours);
        }
        Ok(Self { max, per_hours, channels: checked_channels(channels, "frequency_cap")? })
    }

    pub fn applies_to(&self, channel: Channel) -> bool {
        self.channels.contains(&channel)
    }

    pub fn window(&self) -> Duration {
        Duration::hours(i64::from(self.per_hours))
    }
}

fn checked_channels(mut channels: Vec<Channel>, field: &'static str) -> Result<Vec<Channel>, PolicyError> {
    let given = channels.len();
    channels.sort();
    channels.dedup();
    if channels.is_empty() || channels.len() != given {
        return Err(PolicyError::Channels(field));
    }
    Ok(channels)
}

/// An app's delivery policy. A new app's is [`DeliveryPolicy::default`]: no quiet hours, UTC,
/// no cap.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryPolicy {
    pub quiet_hours: Option<QuietHours>,
    pub default_timezone: TimeZone,
    pub frequency_cap: Option<FrequencyCap>,
}

impl Default for DeliveryPolicy {
    fn default() -> Self {
        Self { quiet_hours: None, default_timezone: TimeZone::UTC, frequency_cap: None }
    }
}

impl DeliveryPolicy {
    /// The quiet hours a send on `channel` obeys, if any.
    pub fn quiet_hours_for(&self, channel: Channel) -> Option<&QuietHours> {
        self.quiet_hours.as_ref().filter(|q| q.applies_to(channel))
    }

    /// The cap a send on `channel` counts toward, if any.
    pub fn cap_for(&self, channel: Channel) -> Option<&FrequencyCap> {
        self.frequency_cap.as_ref().filter(|c| c.applies_to(channel))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn t(s: &str) -> LocalTime {
        LocalTime::parse(s, "t").unwrap()
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn zone(name: &str) -> TimeZone {
        TimeZone::parse(name).unwrap()
    }

    fn quiet(start: &str, end: &str) -> QuietHours {
        QuietHours::new(t(start), t(end), vec![Channel::Sms]).unwrap()
    }

    #[test]
    fn local_times_are_hh_mm() {
        assert_eq!(t("21:00").to_string(), "21:00");
        assert_eq!(t("00:00").to_string(), "00:00");
        assert_eq!(t("23:59").to_string(), "23:59");
        for bad in ["24:00", "9:00", "09:60", "0900", "09:00:00", " 09:00", "ab:cd", "", "０9:00"] {
            assert_eq!(LocalTime::parse(bad, "start"), Err(PolicyError::Time("start")), "{bad:?}");
        }
    }

    #[test]
    fn policies_are_validated() {
        assert_eq!(
            QuietHours::new(t("08:00"), t("08:00"), vec![Channel::Sms]),
            Err(PolicyError::EmptyWindow)
        );
        assert!(QuietHours::new(t("21:00"), t("08:00"), vec![]).is_err());
        assert!(QuietHours::new(t("21:00"), t("08:00"), vec![Channel::Sms, Channel::Sms]).is_err());
        assert_eq!(FrequencyCap::new(0, 24, vec![Channel::Push]), Err(PolicyError::Max));
        assert_eq!(FrequencyCap::new(3, 0, vec![Channel::Push]), Err(PolicyError::PerHours));
        assert_eq!(FrequencyCap::new(3, 721, vec![Channel::Push]), Err(PolicyError::PerHours));
        assert!(FrequencyCap::new(3, 720, vec![Channel::Sms, Channel::Push]).is_ok());
        let json = serde_json::to_value(DeliveryPolicy::default()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"quiet_hours": null, "default_timezone": "UTC", "frequency_cap": null})
        );
    }

    #[test]
    fn the_issue_example_each_zone_waits_for_its_own_morning() {
        // 02:00 UTC; quiet 21:00–08:00.
        let q = quiet("21:00", "08:00");
        let now = at("2026-12-03T02:00:00Z");
        // New York 21:00 (EST): quiet, until 08:00 local = 13:00 UTC.
        assert_eq!(q.release(now, zone("America/New_York")), Some(at("2026-12-03T13:00:00Z")));
        // Los Angeles 18:00: not quiet.
        assert_eq!(q.release(now, zone("America/Los_Angeles")), None);
        // Tokyo 11:00: not quiet. Paris 03:00: quiet until 08:00 CET = 07:00 UTC.
        assert_eq!(q.release(now, zone("Asia/Tokyo")), None);
        assert_eq!(q.release(now, zone("Europe/Paris")), Some(at("2026-12-03T07:00:00Z")));
    }

    #[test]
    fn windows_that_do_not_wrap_midnight() {
        let q = quiet("12:00", "14:00");
        let utc = TimeZone::UTC;
        assert_eq!(q.release(at("2026-06-01T11:59:59Z"), utc), None);
        assert_eq!(q.release(at("2026-06-01T12:00:00Z"), utc), Some(at("2026-06-01T14:00:00Z")));
        assert_eq!(q.release(at("2026-06-01T13:59:00Z"), utc), Some(at("2026-06-01T14:00:00Z")));
        assert_eq!(q.release(at("2026-06-01T14:00:00Z"), utc), None, "the end itself is outside");
    }

    #[test]
    fn windows_that_open_or_close_on_a_dst_change() {
        let ny = zone("America/New_York");
        // 2026-03-08: 02:00 EST jumps to 03:00 EDT. A window ending at 02:30 ends at 03:00 EDT.
        let q = quiet("21:00", "02:30");
        assert_eq!(q.release(at("2026-03-08T04:00:00Z"), ny), Some(at("2026-03-08T07:00:00Z")));
        // A window ending at 08:00 on that day: 08:00 EDT = 12:00 UTC (not 13:00, EST).
        let q = quiet("21:00", "08:00");
        assert_eq!(q.release(at("2026-03-08T05:00:00Z"), ny), Some(at("2026-03-08T12:00:00Z")));
        // 2026-11-01: 02:00 EDT falls back to 01:00 EST; a window ending at 01:30 ends at the
        // first 01:30 (EDT, 05:30 UTC).
        let q = quiet("21:00", "01:30");
        assert_eq!(q.release(at("2026-11-01T03:00:00Z"), ny), Some(at("2026-11-01T05:30:00Z")));
        // Paris, spring forward 2026-03-29 02:00 → 03:00: 02:15 does not exist.
        let q = quiet("23:00", "02:15");
        assert_eq!(
            q.release(at("2026-03-28T23:30:00Z"), zone("Europe/Paris")),
            Some(at("2026-03-29T01:00:00Z"))
        );
    }

    fn zones() -> impl Strategy<Value = TimeZone> {
        prop::sample::select(vec![
            "UTC",
            "America/New_York",
            "America/Los_Angeles",
            "Europe/Paris",
            "Asia/Tokyo",
            "Australia/Lord_Howe",
            "Asia/Kathmandu",
            "Pacific/Apia",
            "America/St_Johns",
            "Pacific/Kiritimati",
        ])
        .prop_map(zone)
    }

    proptest! {
        /// Never early, never dropped: the release is after now, outside the window, and the
        /// minute before it is still inside (so it is the window's end, not a later time).
        #[test]
        fn a_release_is_the_first_moment_outside_the_window(
            now_s in 1_767_225_600i64..1_830_297_600, // 2026-01-01 .. 2028-01-01
            start in 0u32..1440, end in 0u32..1440, z in zones(),
        ) {
            prop_assume!(start != end);
            let q = QuietHours::new(
                LocalTime::hm(start / 60, start % 60).unwrap(),
                LocalTime::hm(end / 60, end % 60).unwrap(),
                vec![Channel::Sms],
            ).unwrap();
            let now = DateTime::from_timestamp(now_s, 0).unwrap();
            let local = |i: DateTime<Utc>| i.with_timezone(&z.tz()).naive_local().time();
            match q.release(now, z) {
                None => prop_assert!(!q.contains(local(now))),
                Some(release) => {
                    prop_assert!(q.contains(local(now)));
                    prop_assert!(release > now);
                    prop_assert!(!q.contains(local(release)), "released inside the window at {release}");
                    prop_assert!(release - now <= Duration::hours(26), "waited {:?}", release - now);
                    let before = release - Duration::minutes(1);
                    prop_assert!(before < now || q.contains(local(before)), "could have gone at {before}");
                }
            }
        }
    }
}

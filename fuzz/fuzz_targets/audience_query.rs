//! Audience query strings (`action`, `did`, `did_not`, `channel`, `limit`, `cursor`) decoded and
//! checked as the handler does, the predicate built for either source channel, and cursors.
//!
//! Input: a raw query string (what follows `?`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use retarget_audiences::{AudienceQuery, MAX_LIMIT};
use retarget_fuzz::assert_client_error;
use retarget_shared::domain::{Channel, Predicate};
use retarget_shared::services::audience::Cursor;
use retarget_shared::edge::problem::{ApiError, ErrorCode};
use retarget_shared::edge::request::url_decode_pairs;

fuzz_target!(|data: &[u8]| {
    // A cursor given whole: decodes or is refused; what decodes round-trips.
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(cursor) = Cursor::decode(text)
    {
        assert_eq!(Cursor::decode(&cursor.encode()), Ok(cursor));
    }

    let pairs = url_decode_pairs(data);
    let query = match AudienceQuery::parse(&pairs) {
        Ok(query) => query,
        Err(error) => return assert_client_error(&error),
    };
    assert!((1..=MAX_LIMIT).contains(&query.limit));
    assert!(query.action.is_some() != (!query.did.is_empty() || !query.did_not.is_empty()));
    if let Some(cursor) = query.cursor {
        let encoded = cursor.encode();
        assert_eq!(Cursor::decode(&encoded), Ok(cursor));
        // What the service issues is URL-safe as it is.
        assert!(encoded.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    }
    // The predicate, as the handler builds it once it knows the source's channel.
    for channel in [Channel::Push, Channel::Sms] {
        let predicate = match &query.action {
            Some(action) => Predicate::action(action, channel),
            None => Predicate::combined(&query.did, &query.did_not, channel),
        };
        if let Err(e) = predicate {
            assert_client_error(&ApiError::new(ErrorCode::InvalidAction, e.to_string()));
        }
    }
});

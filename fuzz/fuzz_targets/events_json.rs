//! `POST /v1/events`: the body parsed and checked as the handler does before recording.
//!
//! Input: the raw body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use retarget_events::{MAX_EVENTS, parse_events};
use retarget_fuzz::assert_client_error;

fuzz_target!(|data: &[u8]| {
    match parse_events(data) {
        Ok(events) => {
            assert!((1..=MAX_EVENTS).contains(&events.len()));
            // Ids that parsed are canonical: they print back to what a client must have sent.
            for event in &events {
                if let Some(id) = event.message_id {
                    assert_eq!(id.to_string().parse().ok(), Some(id));
                }
                if let Some(id) = event.subscription_id {
                    assert_eq!(id.to_string().parse().ok(), Some(id));
                }
            }
        }
        Err(error) => assert_client_error(&error),
    }
});

//! Twilio status callbacks: the form body as the handler decodes it, the X-Twilio-Signature
//! check over the URL Twilio signed, and the event the verified callback records.
//!
//! Input: `auth_token\npath?query\nX-Twilio-Signature\n` then the raw form body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use retarget_fuzz::{assert_client_error, fields};
use retarget_shared::edge::request::url_decode_pairs;
use retarget_shared::edge::signatures::{twilio_signature, verify_twilio};
use retarget_webhooks::{twilio_event, twilio_kind, twilio_url};

const PUBLIC_BASE_URL: &str = "https://api.example.com";

fuzz_target!(|data: &[u8]| {
    let Some(([auth_token, path_and_query, signature], raw)) = fields::<3>(data) else { return };
    let (path, query) = path_and_query.split_once('?').unwrap_or((path_and_query, ""));
    let url = twilio_url(PUBLIC_BASE_URL, path, query);
    let params = url_decode_pairs(raw);

    // The signature as received: whatever it is, no panic; an empty token never verifies.
    let given = verify_twilio(auth_token, &url, &params, signature);
    if auth_token.is_empty() {
        assert!(!given, "an empty auth token verified");
    }
    // The signature Twilio would send verifies (the form decoded as the handler decodes it), and
    // not with another token.
    let expected = twilio_signature(auth_token, &url, &params);
    assert_eq!(verify_twilio(auth_token, &url, &params, &expected), !auth_token.is_empty());
    let other_token = format!("{auth_token}x");
    assert!(!verify_twilio(&other_token, &url, &params, &expected), "another token verified");

    // What a verified callback records.
    match twilio_event(&params, query) {
        Ok(Some(event)) => {
            let status = params.iter().find(|(k, _)| k == "MessageStatus").map(|(_, v)| v.as_str());
            assert_eq!(status.and_then(twilio_kind), Some(event.kind));
        }
        Ok(None) => {
            let status = params.iter().find(|(k, _)| k == "MessageStatus").map(|(_, v)| v.as_str());
            assert!(status.is_some_and(|s| twilio_kind(s).is_none()));
        }
        Err(error) => assert_client_error(&error),
    }
});

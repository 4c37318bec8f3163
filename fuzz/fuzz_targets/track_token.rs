//! `POST /v1/track`: tracking tokens (`domain::Keyring`) and the JSON body they come in.
//!
//! Input: `key (64 hex digits)\ntoken\n` then the raw body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use retarget_fuzz::assert_client_error;
use retarget_shared::domain::{Keyring, TOKEN_LEN, TokenError, TrackingKey, token_kid};
use retarget_webhooks::{parse_track, trackable_kind};

fuzz_target!(|data: &[u8]| {
    let Some(([key, token], raw)) = retarget_fuzz::fields::<2>(data) else { return };
    let mut secret = [0u8; 32];
    for (i, byte) in secret.iter_mut().enumerate() {
        *byte = key.get(i * 2..i * 2 + 2).and_then(|h| u8::from_str_radix(h, 16).ok()).unwrap_or_default();
    }
    let at = chrono::DateTime::from_timestamp(1_764_000_000, 0).unwrap_or_default();
    let Ok(ring) = Keyring::new(vec![TrackingKey::new(1, secret, at, at, None)]) else { return };

    // Never a panic; a token that verifies is exactly what the ring mints for what it names
    // (one spelling per token), and anything else names no recipient.
    match ring.verify(token) {
        Ok(tracked) => {
            assert_eq!(ring.mint(&tracked, at), token, "a second spelling of a token verified");
            assert_eq!(token.len(), TOKEN_LEN);
        }
        Err(TokenError::Malformed) => assert!(token_kid(token).is_err()),
        Err(TokenError::UnknownKey(kid)) => assert_ne!(kid, 1),
        Err(TokenError::BadSignature) => assert_eq!(token_kid(token), Ok(1)),
    }
    // The same ids under another key never verify.
    if let Ok(tracked) = ring.verify(token) {
        let other = Keyring::generate(at);
        assert!(other.verify(&ring.mint(&tracked, at)).is_err());
    }

    // The body: a 400 problem or a request; its kind a 400 problem or a trackable kind.
    match parse_track(raw) {
        Ok(request) => {
            if let Err(error) = trackable_kind(&request.kind) {
                assert_client_error(&error);
            }
        }
        Err(error) => assert_client_error(&error),
    }
});

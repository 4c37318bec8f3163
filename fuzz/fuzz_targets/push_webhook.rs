//! Push webhooks: the `Retarget-Signature: t=…,v1=…` header, its check against the raw body, and
//! the JSON body a verified request records.
//!
//! Input: `secret\nnow (unix seconds)\nRetarget-Signature\n` then the raw body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use retarget_fuzz::{assert_client_error, fields};
use retarget_shared::edge::problem::ErrorCode;
use retarget_shared::edge::signatures::{PUSH_TOLERANCE_SECONDS, parse_push_signature, push_signature};
use retarget_webhooks::{check_push_signature, push_event};

fuzz_target!(|data: &[u8]| {
    let Some(([secret, now, header], raw)) = fields::<3>(data) else { return };
    let now: i64 = now.trim().parse().unwrap_or(1_764_000_000);

    let unauthorized = |result: Result<(), retarget_shared::edge::problem::ApiError>| match result {
        Ok(()) => true,
        Err(error) => {
            assert_client_error(&error);
            assert_eq!(error.code, ErrorCode::InvalidSignature);
            assert_eq!(error.status.as_u16(), 401);
            false
        }
    };
    // As received: no panic, a 401 problem unless it verifies; a missing header never does.
    let verified = unauthorized(check_push_signature(secret, Some(header), raw, now));
    assert!(!unauthorized(check_push_signature(secret, None, raw, now)));
    if secret.is_empty() {
        assert!(!verified, "an empty secret verified");
    }
    if verified {
        let parsed = parse_push_signature(header).expect("a verified header parses");
        assert!(now.abs_diff(parsed.timestamp) <= PUSH_TOLERANCE_SECONDS.unsigned_abs());
    }
    // What a signer sends verifies within the tolerance, and not after it.
    if !secret.is_empty() && now >= 0 {
        let signed = format!("t={now},v1={}", push_signature(secret, now, raw));
        assert!(unauthorized(check_push_signature(secret, Some(&signed), raw, now)));
        let later = now.saturating_add(PUSH_TOLERANCE_SECONDS + 1);
        assert!(!unauthorized(check_push_signature(secret, Some(&signed), raw, later)));
    }

    // What a verified request records.
    if let Err(error) = push_event(raw) {
        assert_client_error(&error);
    }
});

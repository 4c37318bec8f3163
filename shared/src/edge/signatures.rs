//! Webhook signatures (README, "The API at a glance"; docs/openapi.yaml): pure functions, no
//! I/O, no clock.
//!
//! - **Twilio** status callbacks carry `X-Twilio-Signature`:
//!   `base64(HMAC-SHA1(auth_token, url + name₁value₁ + name₂value₂ …))` over the POST form
//!   fields sorted by name. [`verify_twilio`] accepts the URL as given and its variant with or
//!   without the explicit default port, as Twilio's helper libraries do.
//! - **Push** provider / SDK events carry a Stripe-style
//!   `Retarget-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "{t}." + body)>`, with
//!   possibly several `v1` values while a secret is being rotated. [`verify_push`] checks the
//!   timestamp against [`PUSH_TOLERANCE_SECONDS`] before the HMAC.
//!
//! Every comparison of a received MAC goes through `hmac`'s [`Mac::verify_slice`] (constant
//! time). No function here panics, whatever the input. An empty key (auth token or push
//! secret) never verifies: it would make every signature forgeable.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::Sha256;

type HmacSha1 = Hmac<Sha1>;
type HmacSha256 = Hmac<Sha256>;

/// HMAC takes keys of any length (longer ones are hashed, shorter ones padded), so
/// `new_from_slice` cannot fail; the `expect`s below are unreachable.
const ANY_KEY_LENGTH: &str = "HMAC accepts keys of any length";

// ---------------------------------------------------------------------------------------------
// Twilio
// ---------------------------------------------------------------------------------------------

/// The form fields as Twilio's helper (twilio-python's `RequestValidator.compute_signature`)
/// concatenates them: sorted by name, then by value, each distinct `(name, value)` pair once,
/// as `name + value` with no delimiter.
fn twilio_params_suffix(params: &[(String, String)]) -> Vec<u8> {
    let mut sorted: Vec<(&str, &str)> = params.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    // `str`'s ordering is byte-wise on UTF-8, i.e. by code point: the same as Python's `sorted`.
    sorted.sort_unstable();
    sorted.dedup();
    let mut suffix = Vec::with_capacity(sorted.iter().map(|(n, v)| n.len() + v.len()).sum());
    for (name, value) in sorted {
        suffix.extend_from_slice(name.as_bytes());
        suffix.extend_from_slice(value.as_bytes());
    }
    suffix
}

// HMAC takes keys of any length (RFC 2104 hashes long ones): `new_from_slice` cannot fail.
#[allow(clippy::expect_used)]
fn twilio_mac(auth_token: &str, url: &str, params_suffix: &[u8]) -> HmacSha1 {
    let mut mac = HmacSha1::new_from_slice(auth_token.as_bytes()).expect(ANY_KEY_LENGTH);
    mac.update(url.as_bytes());
    mac.update(params_suffix);
    mac
}

/// Twilio's X-Twilio-Signature: base64(HMAC-SHA1(auth_token, url + concat of sorted POST params
/// name+value)).
///
/// `params` are the decoded form fields; a name may repeat. They are sorted by name, then value,
/// and an exactly repeated `(name, value)` pair counts once, as in Twilio's Python helper.
pub fn twilio_signature(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    let suffix = twilio_params_suffix(params);
    BASE64.encode(twilio_mac(auth_token, url, &suffix).finalize().into_bytes())
}

/// Verifies against `url` as given AND its variant with/without the explicit default port
/// (https:443, http:80), as Twilio's own helper libraries do. Constant time. Params are the
/// decoded form fields (repeated names allowed: sort by name, then value, like Twilio's helper).
///
/// `signature_b64` is the header value (surrounding whitespace ignored); anything that is not
/// standard padded base64 of a 20-byte MAC fails. An empty `auth_token` always fails.
pub fn verify_twilio(auth_token: &str, url: &str, params: &[(String, String)], signature_b64: &str) -> bool {
    if auth_token.is_empty() {
        return false;
    }
    let Ok(signature) = BASE64.decode(signature_b64.trim()) else {
        return false;
    };
    let suffix = twilio_params_suffix(params);
    let alternative = default_port_variant(url);
    // Both candidates are always checked, so the time taken does not say which one matched.
    let mut valid = false;
    for candidate in std::iter::once(url).chain(alternative.as_deref()) {
        valid |= twilio_mac(auth_token, candidate, &suffix).verify_slice(&signature).is_ok();
    }
    valid
}

/// The other spelling of `url`'s authority with respect to the scheme's default port:
/// `https://host/p` ↔ `https://host:443/p`, `http://host/p` ↔ `http://host:80/p`.
///
/// Userinfo (`user:pass@`) is kept, as Twilio's helpers keep it; IPv6 literals (`[::1]:443`) are
/// understood. `None` when there is no such variant: another scheme, a non-default port, an empty
/// host, or something that is not `scheme://authority…` at all.
fn default_port_variant(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let default_port = if scheme.eq_ignore_ascii_case("https") {
        "443"
    } else if scheme.eq_ignore_ascii_case("http") {
        "80"
    } else {
        return None;
    };
    // The authority ends at the first '/', '?' or '#' (RFC 3986 §3.2).
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    // Userinfo ends at the last '@' (a raw '@' is not allowed inside it, but be lenient).
    let host_start = authority.rfind('@').map_or(0, |at| at + 1);
    let (userinfo, host_port) = authority.split_at(host_start);
    let port_separator = if host_port.starts_with('[') {
        // IP literal: the port, if any, follows the closing bracket.
        let close = host_port.find(']')?;
        match &host_port[close + 1..] {
            "" => None,
            after if after.starts_with(':') => Some(close + 1),
            _ => return None,
        }
    } else {
        // A reg-name or IPv4 host has no ':'; the first one starts the port ("a:b:80" has the
        // port "b:80", which is not a default port). This keeps the variant an involution.
        host_port.find(':')
    };
    let host = port_separator.map_or(host_port, |colon| &host_port[..colon]);
    if host.is_empty() {
        return None;
    }
    match port_separator {
        None => Some(format!("{scheme}://{userinfo}{host}:{default_port}{tail}")),
        Some(colon) if &host_port[colon + 1..] == default_port => {
            Some(format!("{scheme}://{userinfo}{host}{tail}"))
        }
        Some(_) => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Push (Retarget-Signature)
// ---------------------------------------------------------------------------------------------

/// How far (either way) a `Retarget-Signature` timestamp may be from now, in seconds; exactly
/// this far is still accepted.
pub const PUSH_TOLERANCE_SECONDS: i64 = 300;

/// Stripe-style `Retarget-Signature: t=<unix seconds>,v1=<hex>[,v1=<hex>…]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushSignatureHeader {
    /// `t`: Unix seconds.
    pub timestamp: i64,
    /// Every well-formed `v1` value (32 bytes, decoded from hex), in header order.
    pub signatures: Vec<Vec<u8>>,
}

/// Why a `Retarget-Signature` was refused. All three map to 401 `invalid_signature`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PushSignatureError {
    /// Not `t=<seconds>,v1=<hex>…`: no or several `t`, `t` not a number, no valid `v1`, or an
    /// item that is not `key=value`.
    #[error("malformed Retarget-Signature header")]
    Malformed,
    /// `|now - t| > PUSH_TOLERANCE_SECONDS`.
    #[error("Retarget-Signature timestamp is outside the tolerance")]
    Stale,
    /// No `v1` value matches the body.
    #[error("no Retarget-Signature v1 value matches")]
    Mismatch,
}

/// Length in bytes of an HMAC-SHA256, i.e. of a valid `v1` value.
const V1_LEN: usize = 32;

/// Parses `t=<unix seconds>,v1=<hex>[,v1=<hex>…]`.
///
/// Items are comma-separated; spaces around items, keys and values are ignored, and so are empty
/// items. Unknown schemes (e.g. `v0=`) are ignored. There must be exactly one `t`, made of ASCII
/// digits only, and at least one valid `v1` (64 hex digits, either case); `v1` values that are
/// not valid are skipped. An item without `=` makes the header malformed.
pub fn parse_push_signature(header: &str) -> Result<PushSignatureHeader, PushSignatureError> {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for item in header.split(',').map(str::trim).filter(|item| !item.is_empty()) {
        let (key, value) = item.split_once('=').ok_or(PushSignatureError::Malformed)?;
        let (key, value) = (key.trim(), value.trim());
        match key {
            "t" => {
                if timestamp.is_some() {
                    return Err(PushSignatureError::Malformed);
                }
                timestamp = Some(parse_unix_seconds(value).ok_or(PushSignatureError::Malformed)?);
            }
            "v1" => {
                if let Ok(signature) = hex::decode(value)
                    && signature.len() == V1_LEN
                {
                    signatures.push(signature);
                }
            }
            "" => return Err(PushSignatureError::Malformed),
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(PushSignatureError::Malformed)?;
    if signatures.is_empty() {
        return Err(PushSignatureError::Malformed);
    }
    Ok(PushSignatureHeader { timestamp, signatures })
}

/// Non-empty ASCII digits that fit an `i64` (no sign, no spaces).
fn parse_unix_seconds(value: &str) -> Option<i64> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse().ok()
}

// HMAC takes keys of any length (RFC 2104 hashes long ones): `new_from_slice` cannot fail.
#[allow(clippy::expect_used)]
fn push_mac(secret: &str, timestamp: i64, body: &[u8]) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).expect(ANY_KEY_LENGTH);
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// Lower-case hex HMAC-SHA256(secret, "{t}." + body): the `v1` value for `timestamp`.
pub fn push_signature(secret: &str, timestamp: i64, body: &[u8]) -> String {
    hex::encode(push_mac(secret, timestamp, body).finalize().into_bytes())
}

/// Verifies a `Retarget-Signature` header for `body` at `now_epoch` (Unix seconds, from the
/// service's clock).
///
/// Order: [`Malformed`](PushSignatureError::Malformed) (see [`parse_push_signature`]), then
/// [`Stale`](PushSignatureError::Stale) (`|now - t| > PUSH_TOLERANCE_SECONDS`, checked before
/// any HMAC), then [`Mismatch`](PushSignatureError::Mismatch) unless at least one `v1` matches
/// (several are allowed for secret rotation). An empty `secret` never matches.
pub fn verify_push(
    secret: &str,
    header: &str,
    body: &[u8],
    now_epoch: i64,
) -> Result<(), PushSignatureError> {
    let parsed = parse_push_signature(header)?;
    if now_epoch.abs_diff(parsed.timestamp) > PUSH_TOLERANCE_SECONDS.unsigned_abs() {
        return Err(PushSignatureError::Stale);
    }
    if secret.is_empty() {
        return Err(PushSignatureError::Mismatch);
    }
    let mac = push_mac(secret, parsed.timestamp, body);
    // Every value is checked, so the time taken does not say which one matched.
    let mut valid = false;
    for signature in &parsed.signatures {
        valid |= mac.clone().verify_slice(signature).is_ok();
    }
    if valid { Ok(()) } else { Err(PushSignatureError::Mismatch) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn p(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(n, v)| ((*n).to_owned(), (*v).to_owned())).collect()
    }

    // --- Twilio: independent vectors ---------------------------------------------------------
    //
    // Every expected signature below was computed by twilio-python 9.13.0's
    // `twilio.request_validator.RequestValidator(token).compute_signature(url, params)` (PyPI
    // `twilio==9.13.0`), not by this module. The first one is also the example in Twilio's
    // security documentation.

    #[test]
    fn twilio_vector_twilio_docs_example() {
        let params = p(&[
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+12349013030"),
            ("Digits", "1234"),
            ("From", "+12349013030"),
            ("To", "+18005551212"),
        ]);
        let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
        assert_eq!(twilio_signature("12345", url, &params), "0/KCTR6DLpKmkAf8muzZqo1nDgQ=");
        assert!(verify_twilio("12345", url, &params, "0/KCTR6DLpKmkAf8muzZqo1nDgQ="));
    }

    #[test]
    fn twilio_vector_status_callback_shape() {
        // Given out of order: the sort is ours to do.
        let params = p(&[
            ("MessageSid", "SM0123456789abcdef0123456789abcdef"),
            ("MessageStatus", "delivered"),
            ("To", "+4915112345678"),
            ("From", "+15005550006"),
            ("AccountSid", "AC00000000000000000000000000000000"),
            ("ApiVersion", "2010-04-01"),
        ]);
        let token = "f3c0a9d4e2b1c8a7f6e5d4c3b2a19080";
        let url = "https://example.com/v1/webhooks/twilio/01J0APP?message_id=M1&subscription_id=S1";
        assert_eq!(twilio_signature(token, url, &params), "4BPqwHAZQsS9OCYB0AbBh3+M4WE=");
        assert!(verify_twilio(token, url, &params, "4BPqwHAZQsS9OCYB0AbBh3+M4WE="));
    }

    #[test]
    fn twilio_vector_unicode_token_values_names_and_explicit_port() {
        let params =
            p(&[("Body", "Grüße 👋 — ça va? 日本語"), ("MessageStatus", "received"), ("Ünïcode", "ÿ")]);
        let url = "https://example.com:443/v1/webhooks/twilio/APP?message_id=M&subscription_id=S";
        assert_eq!(twilio_signature("tok_ünïcødé", url, &params), "vU+sg1K+/pIoLn6L+Z31u6qxo1c=");
        assert!(verify_twilio("tok_ünïcødé", url, &params, "vU+sg1K+/pIoLn6L+Z31u6qxo1c="));
        // …and for the same URL without the default port.
        let without = "https://example.com/v1/webhooks/twilio/APP?message_id=M&subscription_id=S";
        assert!(verify_twilio("tok_ünïcødé", without, &params, "vU+sg1K+/pIoLn6L+Z31u6qxo1c="));
    }

    #[test]
    fn twilio_vector_no_params_non_default_port_encoded_query() {
        let url = "http://localhost:8080/cb?x=%20y+z";
        assert_eq!(twilio_signature("secret", url, &[]), "oWYuSYaRqy6VdYzNfpY7Yklx8cY=");
        assert!(verify_twilio("secret", url, &[], "oWYuSYaRqy6VdYzNfpY7Yklx8cY="));
    }

    #[test]
    fn twilio_vector_repeated_names_and_look_alike_names() {
        // Computed from a MultiDict {"a": ["2", "1", "1"], "A": ["z"], "a1": ["0"], "aa": ["x"],
        // "b": [""]}: sorted by name (case-sensitive, "A" < "a" < "a1" < "aa" < "b"), then by
        // value, and the helper keeps each distinct (name, value) pair once.
        let params =
            p(&[("a", "2"), ("a", "1"), ("a", "1"), ("A", "z"), ("a1", "0"), ("aa", "x"), ("b", "")]);
        let url = "http://example.com/cb";
        assert_eq!(twilio_signature("secret", url, &params), "RWI8Ax4gOoHn6NuOP8Yx2jRxajA=");
        assert!(verify_twilio("secret", url, &params, "RWI8Ax4gOoHn6NuOP8Yx2jRxajA="));
        // Order of the input does not matter; an exact duplicate pair counts once.
        let shuffled = p(&[("b", ""), ("aa", "x"), ("a", "1"), ("a1", "0"), ("A", "z"), ("a", "2")]);
        assert!(verify_twilio("secret", url, &shuffled, "RWI8Ax4gOoHn6NuOP8Yx2jRxajA="));
        // But "a"="1"+"a1"="0" ≠ "a"="10": values are not shuffled between names.
        let moved = p(&[("a", "2"), ("a", "10"), ("A", "z"), ("aa", "x"), ("b", "")]);
        assert!(!verify_twilio("secret", url, &moved, "RWI8Ax4gOoHn6NuOP8Yx2jRxajA="));
    }

    #[test]
    fn twilio_vector_userinfo_empty_name_and_value() {
        // Empty token: the signature is still computable (it is what Twilio's helper returns),
        // but `verify_twilio` refuses an empty token outright.
        let params = p(&[("Body", ""), ("", "empty-name")]);
        let url = "https://user:p%40ss@example.com/path?q=1";
        assert_eq!(twilio_signature("", url, &params), "ajPqgUvYzkS3RFyGuUrzeFoYEjU=");
        assert!(!verify_twilio("", url, &params, "ajPqgUvYzkS3RFyGuUrzeFoYEjU="));
    }

    // --- Twilio: default-port variants, mirroring RequestValidator.validate ------------------
    //
    // Signatures again from twilio-python 9.13.0 with token "12345" and these params;
    // `validate(a, params, sig(b))` returned True in both directions for each pair below.

    fn port_params() -> Vec<(String, String)> {
        p(&[("MessageStatus", "sent"), ("MessageSid", "SM1")])
    }

    fn assert_port_pair(without: &str, with: &str, sig_without: &str, sig_with: &str) {
        let params = port_params();
        assert_eq!(twilio_signature("12345", without, &params), sig_without);
        assert_eq!(twilio_signature("12345", with, &params), sig_with);
        for url in [without, with] {
            for sig in [sig_without, sig_with] {
                assert!(verify_twilio("12345", url, &params, sig), "{url} with {sig}");
            }
        }
    }

    #[test]
    fn twilio_https_443_both_ways() {
        assert_port_pair(
            "https://example.com/v1/webhooks/twilio/APP?message_id=M&subscription_id=S",
            "https://example.com:443/v1/webhooks/twilio/APP?message_id=M&subscription_id=S",
            "7rbYSzkmjC6F7Z2oKcGGHc100Ag=",
            "E5TzKuOYEEKP2BUYj8HvxzZey4s=",
        );
    }

    #[test]
    fn twilio_http_80_both_ways() {
        assert_port_pair(
            "http://example.com/cb?x=1",
            "http://example.com:80/cb?x=1",
            "RdC9vlAmKFcql+Q+nkngMJy8MTw=",
            "5HhggSB6V1lNdHydggeUTfioJlo=",
        );
    }

    #[test]
    fn twilio_userinfo_is_kept_in_both_variants() {
        // twilio-python validates the signature over `…:443` for the URL without the port;
        // the other direction fails there only because its `remove_port` splits the netloc at
        // the first ':' and so drops the password too. The signed URL keeps the userinfo
        // either way, so both directions are accepted here.
        assert_port_pair(
            "https://user:pass@example.com/cb",
            "https://user:pass@example.com:443/cb",
            "RNgEQQMpkNZHAZLfsqOcPS7ABbI=",
            "JTA7W6d4rPymDzCSNlFOpXO/d4k=",
        );
        // Dropping the userinfo is not a variant.
        let params = port_params();
        assert!(!verify_twilio("12345", "https://example.com/cb", &params, "RNgEQQMpkNZHAZLfsqOcPS7ABbI="));
    }

    #[test]
    fn twilio_only_the_scheme_default_port_is_a_variant() {
        let params = port_params();
        // http with :443 is not a default-port spelling (twilio-python agrees: False).
        let sig = twilio_signature("12345", "http://example.com:443/cb", &params);
        assert!(!verify_twilio("12345", "http://example.com/cb", &params, &sig));
        // A non-default port is never dropped. (twilio-python's `remove_port` drops any port, so
        // it would accept this; the contract only allows the default-port variant.)
        let sig = twilio_signature("12345", "https://example.com/cb", &params);
        assert!(!verify_twilio("12345", "https://example.com:8443/cb", &params, &sig));
    }

    #[test]
    fn twilio_rejects_wrong_token_params_url_or_encoding() {
        let params = port_params();
        let url = "https://example.com/v1/webhooks/twilio/APP?message_id=M&subscription_id=S";
        let sig = twilio_signature("12345", url, &params);
        assert!(verify_twilio("12345", url, &params, &sig));
        assert!(verify_twilio("12345", url, &params, &format!("  {sig}\t")), "header whitespace");
        assert!(!verify_twilio("12346", url, &params, &sig));
        assert!(!verify_twilio("12345", &url.replace("S", "T"), &params, &sig));
        assert!(!verify_twilio(
            "12345",
            url,
            &p(&[("MessageStatus", "delivered"), ("MessageSid", "SM1")]),
            &sig
        ));
        assert!(!verify_twilio("12345", url, &[], &sig));
        assert!(!verify_twilio("12345", url, &params, ""));
        assert!(!verify_twilio("12345", url, &params, "not base64!"));
        assert!(!verify_twilio("12345", url, &params, sig.trim_end_matches('=')), "unpadded");
        assert!(!verify_twilio("12345", url, &params, &BASE64.encode([0u8; 20])));
        // A truncated (prefix) MAC is not accepted.
        let raw = BASE64.decode(&sig).unwrap();
        assert!(!verify_twilio("12345", url, &params, &BASE64.encode(&raw[..10])));
    }

    #[test]
    fn default_port_variant_cases() {
        let cases: &[(&str, Option<&str>)] = &[
            ("https://example.com/a?b=c", Some("https://example.com:443/a?b=c")),
            ("https://example.com:443/a?b=c", Some("https://example.com/a?b=c")),
            ("http://example.com/a", Some("http://example.com:80/a")),
            ("http://example.com:80/a", Some("http://example.com/a")),
            ("https://example.com", Some("https://example.com:443")),
            ("https://example.com?q=1", Some("https://example.com:443?q=1")),
            ("https://example.com#frag", Some("https://example.com:443#frag")),
            ("https://example.com/p?next=http://x:80/", Some("https://example.com:443/p?next=http://x:80/")),
            ("HTTPS://Example.COM/a", Some("HTTPS://Example.COM:443/a")),
            ("https://user:pass@example.com/a", Some("https://user:pass@example.com:443/a")),
            ("https://user:pass@example.com:443/a", Some("https://user:pass@example.com/a")),
            ("https://us@er:p@ss@example.com:443/a", Some("https://us@er:p@ss@example.com/a")),
            ("https://[::1]/a", Some("https://[::1]:443/a")),
            ("https://[::1]:443/a", Some("https://[::1]/a")),
            ("https://[::1]:8443/a", None),
            ("https://[::1]x/a", None),
            ("https://[::1/a", None),
            ("https://example.com:8443/a", None),
            ("https://example.com:/a", None),
            ("https://example.com:0443/a", None),
            ("http://example.com:443/a", None),
            ("https://example.com:80/a", None),
            ("http://::80", None),
            ("https://a:b:443/x", None),
            ("https://[@]/x", Some("https://[@]:443/x")),
            ("ftp://example.com/a", None),
            ("https:///a", None),
            ("https://user@/a", None),
            ("https://:443/a", None),
            ("https://", None),
            ("example.com/a", None),
            ("", None),
        ];
        for (url, expected) in cases {
            assert_eq!(default_port_variant(url).as_deref(), *expected, "{url}");
        }
    }

    // --- Push ---------------------------------------------------------------------------------

    const SECRET: &str = "whsec_test_0123456789";
    const BODY: &[u8] = br#"{"event_id":"E1","kind":"delivered","message_id":"M1","subscription_id":"S1","occurred_at":"2025-01-01T00:00:00Z"}"#;
    const T: i64 = 1_735_689_600;

    fn header(t: i64, sigs: &[&str]) -> String {
        let mut h = format!("t={t}");
        for s in sigs {
            h.push_str(",v1=");
            h.push_str(s);
        }
        h
    }

    #[test]
    fn push_signature_is_hmac_sha256_of_t_dot_body() {
        // The framing: signing (t=1, body "x") is the HMAC of the bytes "1.x".
        let direct = {
            let mut mac = HmacSha256::new_from_slice(b"key").unwrap();
            mac.update(b"1.x");
            hex::encode(mac.finalize().into_bytes())
        };
        assert_eq!(push_signature("key", 1, b"x"), direct);
        assert_eq!(push_signature("key", 1, b"x").len(), 64);
        // And the primitive itself, against RFC 4231 test case 2.
        let mut mac = HmacSha256::new_from_slice(b"Jefe").unwrap();
        mac.update(b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(mac.finalize().into_bytes()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn push_round_trip() {
        let sig = push_signature(SECRET, T, BODY);
        assert_eq!(verify_push(SECRET, &header(T, &[&sig]), BODY, T), Ok(()));
        assert_eq!(verify_push(SECRET, &header(T, &[&sig.to_uppercase()]), BODY, T), Ok(()));
        assert_eq!(verify_push(SECRET, &format!(" t={T} , v1={sig} "), BODY, T), Ok(()));
        assert_eq!(verify_push(SECRET, &format!("v1={sig},t={T}"), BODY, T), Ok(()), "any order");
        assert_eq!(verify_push(SECRET, &format!("t={T},v1={sig},"), BODY, T), Ok(()), "trailing comma");
    }

    #[test]
    fn push_rotation_any_v1_matches() {
        let old = push_signature("old-secret", T, BODY);
        let new = push_signature(SECRET, T, BODY);
        assert_eq!(verify_push(SECRET, &header(T, &[&old, &new]), BODY, T), Ok(()));
        assert_eq!(verify_push(SECRET, &header(T, &[&new, &old]), BODY, T), Ok(()));
        assert_eq!(verify_push("old-secret", &header(T, &[&old, &new]), BODY, T), Ok(()));
        assert_eq!(
            verify_push("third", &header(T, &[&old, &new]), BODY, T),
            Err(PushSignatureError::Mismatch)
        );
        // A bad-hex value among good ones is skipped.
        assert_eq!(verify_push(SECRET, &header(T, &["zz", &new]), BODY, T), Ok(()));
    }

    #[test]
    fn push_staleness() {
        let sig = push_signature(SECRET, T, BODY);
        let h = header(T, &[&sig]);
        assert_eq!(verify_push(SECRET, &h, BODY, T + 300), Ok(()));
        assert_eq!(verify_push(SECRET, &h, BODY, T - 300), Ok(()));
        assert_eq!(verify_push(SECRET, &h, BODY, T + 301), Err(PushSignatureError::Stale));
        assert_eq!(verify_push(SECRET, &h, BODY, T - 301), Err(PushSignatureError::Stale));
        assert_eq!(verify_push(SECRET, &h, BODY, i64::MIN), Err(PushSignatureError::Stale));
        assert_eq!(verify_push(SECRET, &h, BODY, i64::MAX), Err(PushSignatureError::Stale));
        // Staleness is decided before the HMAC: a stale header with a wrong MAC is Stale.
        let wrong = push_signature("other", T, BODY);
        assert_eq!(verify_push(SECRET, &header(T, &[&wrong]), BODY, T + 301), Err(PushSignatureError::Stale));
        // The timestamp is signed: moving t (to look fresh) breaks the MAC.
        assert_eq!(
            verify_push(SECRET, &header(T + 600, &[&sig]), BODY, T + 600),
            Err(PushSignatureError::Mismatch)
        );
    }

    #[test]
    fn push_tampering_is_a_mismatch() {
        let sig = push_signature(SECRET, T, BODY);
        let h = header(T, &[&sig]);
        let mut tampered = BODY.to_vec();
        tampered[20] ^= 1;
        assert_eq!(verify_push(SECRET, &h, &tampered, T), Err(PushSignatureError::Mismatch));
        assert_eq!(verify_push(SECRET, &h, b"", T), Err(PushSignatureError::Mismatch));
        assert_eq!(verify_push("wrong", &h, BODY, T), Err(PushSignatureError::Mismatch));
        assert_eq!(
            verify_push(SECRET, &header(T, &[&"0".repeat(64)]), BODY, T),
            Err(PushSignatureError::Mismatch)
        );
        // An empty secret never verifies, even with a signature made with it.
        let empty = push_signature("", T, BODY);
        assert_eq!(verify_push("", &header(T, &[&empty]), BODY, T), Err(PushSignatureError::Mismatch));
    }

    #[test]
    fn push_malformed_headers() {
        let sig = push_signature(SECRET, T, BODY);
        let malformed = [
            String::new(),
            "   ".to_owned(),
            ",,".to_owned(),
            format!("v1={sig}"),                        // no t
            format!("t={T}"),                           // no v1
            format!("t={T},v0={sig}"),                  // only an unknown scheme
            format!("t={T},v1="),                       // empty v1
            format!("t={T},v1=xyz"),                    // bad hex only
            format!("t={T},v1={}", &sig[..62]),         // too short
            format!("t={T},v1={sig}00"),                // too long
            format!("t=abc,v1={sig}"),                  // t not a number
            format!("t=,v1={sig}"),                     // empty t
            format!("t=-{T},v1={sig}"),                 // signed t
            format!("t=+{T},v1={sig}"),                 // signed t
            format!("t=1.5,v1={sig}"),                  // fractional t
            format!("t=99999999999999999999,v1={sig}"), // overflows i64
            format!("t={T},t={T},v1={sig}"),            // two t
            format!("t={T};v1={sig}"),                  // wrong separator
            format!("t={T},v1={sig},garbage"),          // item without '='
            format!("t={T},={sig}"),                    // empty key
            "garbage".to_owned(),
            "t".to_owned(),
            "=".to_owned(),
            "🦀=🦀,t=🦀".to_owned(),
        ];
        for h in &malformed {
            assert_eq!(parse_push_signature(h), Err(PushSignatureError::Malformed), "{h:?}");
            assert_eq!(verify_push(SECRET, h, BODY, T), Err(PushSignatureError::Malformed), "{h:?}");
        }
    }

    #[test]
    fn push_parse_ignores_unknown_schemes_and_bad_v1() {
        let sig = push_signature(SECRET, T, BODY);
        let other = push_signature("other", T, BODY);
        let parsed =
            parse_push_signature(&format!("t={T}, v0=deadbeef , v1={sig},v1=nothex,x=y=z, V1={other}"))
                .unwrap();
        assert_eq!(
            parsed,
            PushSignatureHeader { timestamp: T, signatures: vec![hex::decode(&sig).unwrap()] }
        );
        assert_eq!(verify_push(SECRET, &format!("t={T},v0={other},v1={sig}"), BODY, T), Ok(()));
        // v0 is never checked, even when it would match.
        assert_eq!(
            verify_push(SECRET, &format!("t={T},v0={sig},v1={other}"), BODY, T),
            Err(PushSignatureError::Mismatch)
        );
        assert_eq!(parse_push_signature(&format!("t=0,v1={sig}")).unwrap().timestamp, 0);
    }

    // --- Properties -----------------------------------------------------------------------------

    /// Strings shaped like URLs, to reach every branch of the authority handling.
    fn url_like() -> impl Strategy<Value = String> {
        (
            prop_oneof![Just("https"), Just("http"), Just("HTTPS"), Just("ftp"), Just("")],
            prop_oneof![Just("://"), Just(":/"), Just("")],
            "([a-zA-Z0-9._~%!:-]{0,8}@)?",
            prop_oneof!["[a-z0-9.-]{0,12}", "\\[[0-9a-f:]{0,10}\\]?", "[\\[\\]:@a-zé]{0,6}"],
            prop_oneof![
                Just(String::new()),
                "(:[0-9]{0,5})",
                Just(":443".to_owned()),
                Just(":80".to_owned())
            ],
            prop_oneof![Just(String::new()), "[/?#][ -~é😀]{0,20}"],
        )
            .prop_map(|(scheme, sep, userinfo, host, port, tail)| {
                format!("{scheme}{sep}{userinfo}{host}{port}{tail}")
            })
    }

    fn any_url() -> impl Strategy<Value = String> {
        prop_oneof![url_like(), any::<String>()]
    }

    fn params() -> impl Strategy<Value = Vec<(String, String)>> {
        prop::collection::vec((prop_oneof!["[a-zA-Z]{0,3}", any::<String>()], any::<String>()), 0..6)
    }

    fn push_header_like() -> impl Strategy<Value = String> {
        let item = prop_oneof![
            any::<i64>().prop_map(|t| format!("t={t}")),
            "t=[ 0-9a-z+-]{0,22}",
            "v1=[0-9a-fA-Fg]{0,70}",
            "[ ]{0,2}v[0-9]?[ ]?=[ ]?[0-9a-f]{0,64}",
            any::<String>(),
        ];
        prop::collection::vec(item, 0..5).prop_map(|items| items.join(","))
    }

    proptest! {
        #[test]
        fn verify_twilio_never_panics(
            token in any::<String>(),
            url in any_url(),
            params in params(),
            sig in prop_oneof![any::<String>(), "[A-Za-z0-9+/]{27}=", "[A-Za-z0-9+/=]{0,40}"],
        ) {
            let _ = verify_twilio(&token, &url, &params, &sig);
            let _ = twilio_signature(&token, &url, &params);
            let _ = default_port_variant(&url);
        }

        #[test]
        fn twilio_signature_always_verifies(
            token in any::<String>().prop_filter("non-empty token", |t| !t.is_empty()),
            url in any_url(),
            params in params(),
        ) {
            let sig = twilio_signature(&token, &url, &params);
            prop_assert!(verify_twilio(&token, &url, &params, &sig));
            // …also when the request arrives on the other default-port spelling of the URL,
            let variant = default_port_variant(&url);
            if let Some(variant) = &variant {
                prop_assert!(verify_twilio(&token, variant, &params, &sig));
                // and the variant of the variant is the URL itself.
                let back = default_port_variant(variant);
                prop_assert_eq!(back.as_deref(), Some(url.as_str()));
            }
            // …and whatever the order of the params.
            let mut reversed = params.clone();
            reversed.reverse();
            prop_assert!(verify_twilio(&token, &url, &reversed, &sig));
            // A different token does not verify.
            let other = format!("{token}x");
            prop_assert!(!verify_twilio(&other, &url, &params, &sig));
        }

        #[test]
        fn push_parse_and_verify_never_panic(
            header in prop_oneof![any::<String>(), push_header_like()],
            secret in any::<String>(),
            body in prop::collection::vec(any::<u8>(), 0..64),
            now in any::<i64>(),
        ) {
            let _ = parse_push_signature(&header);
            let _ = verify_push(&secret, &header, &body, now);
        }

        #[test]
        fn push_signature_always_verifies_within_tolerance(
            secret in any::<String>().prop_filter("non-empty secret", |s| !s.is_empty()),
            body in prop::collection::vec(any::<u8>(), 0..256),
            t in 0i64..=i64::MAX,
            skew in -PUSH_TOLERANCE_SECONDS..=PUSH_TOLERANCE_SECONDS,
        ) {
            let sig = push_signature(&secret, t, &body);
            let now = t.saturating_add(skew);
            prop_assert_eq!(verify_push(&secret, &format!("t={t},v1={sig}"), &body, now), Ok(()));
        }
    }
}

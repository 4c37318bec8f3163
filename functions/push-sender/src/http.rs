//! What the FCM and APNs clients share: the HTTP client, `Retry-After`, and how transport
//! failures become [`SendError`]s without leaking URLs (an APNs URL holds the device token).

use std::time::Duration;

use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{Client, ClientBuilder, Url};
use retarget_shared::services::provider::SendError;

/// Longest provider text copied into an error detail.
const DETAIL_LIMIT: usize = 200;

/// The settings of the one HTTP client of the process. No HTTP version is forced: over `https://` rustls offers
/// ALPN `h2, http/1.1`, so APNs (HTTP/2 only) and FCM negotiate HTTP/2; a plain `http://` base
/// (a local stand-in) is spoken to in HTTP/1.1, as there is no ALPN without TLS. Do not add
/// `http1_only()` (APNs refuses HTTP/1.1) nor `http2_prior_knowledge()` (stand-ins speak 1.1).
pub(crate) fn client_builder(timeout: Duration) -> ClientBuilder {
    Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(5)))
        .pool_idle_timeout(Duration::from_secs(55))
        .http2_keep_alive_interval(Duration::from_secs(30))
        .http2_keep_alive_while_idle(true)
        .user_agent(concat!("retarget-push-sender/", env!("CARGO_PKG_VERSION")))
}

/// `base` + path segments, each percent-encoded as one segment (a token can't add a path).
pub(crate) fn endpoint(base: &Url, segments: &[&str]) -> Result<Url, SendError> {
    let mut url = base.clone();
    url.path_segments_mut()
        .map_err(|()| SendError::NotConfigured("provider base URL cannot take a path".into()))?
        .pop_if_empty()
        .extend(segments);
    Ok(url)
}

/// `Retry-After` in seconds (the HTTP-date form is ignored).
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    value.parse::<u64>().ok().map(Duration::from_secs)
}

/// A request that got no HTTP answer: timeouts, refused connections, TLS or protocol errors.
/// All are worth retrying; the URL (which may contain a device token) is dropped from the text.
pub(crate) fn transport_error(provider: &str, error: reqwest::Error) -> SendError {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    SendError::Transient { detail: format!("{provider} {kind}: {}", error.without_url()), retry_after: None }
}

/// Provider text cut to a loggable length, on a character boundary.
pub(crate) fn clip(text: &str) -> String {
    match text.char_indices().nth(DETAIL_LIMIT) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_encodes_each_segment() {
        let base = Url::parse("http://127.0.0.1:9").unwrap();
        let url = endpoint(&base, &["3", "device", "ab/../c?d#e"]).unwrap();
        assert_eq!(url.as_str(), "http://127.0.0.1:9/3/device/ab%2F..%2Fc%3Fd%23e");
        let base = Url::parse("https://fcm.googleapis.com").unwrap();
        let url = endpoint(&base, &["v1", "projects", "p-1", "messages:send"]).unwrap();
        assert_eq!(url.as_str(), "https://fcm.googleapis.com/v1/projects/p-1/messages:send");
    }

    #[test]
    fn retry_after_seconds_only() {
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert(RETRY_AFTER, " 17 ".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(17)));
        headers.insert(RETRY_AFTER, "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap());
        assert_eq!(retry_after(&headers), None);
    }

    #[test]
    fn clip_keeps_short_text_and_cuts_long_text() {
        assert_eq!(clip("short"), "short");
        let long = "é".repeat(500);
        assert_eq!(clip(&long).chars().count(), DETAIL_LIMIT + 1);
    }
}

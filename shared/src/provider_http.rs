//! The HTTP toolkit of the provider clients (FCM, APNs, Twilio, and the email sender to come),
//! so that each sender does not carry its own copy: how their `reqwest` client is built, how a
//! request is sent and its answer read, `Retry-After`, and how a request that got no answer
//! becomes a [`SendError`] without leaking its URL (an APNs URL holds the device token).
//!
//! What an answer *means* (dead address, bad credentials, retry) stays with each provider: only
//! the transport is shared. Behind the `provider-http` feature, so the functions that call no
//! provider do not link `reqwest`.

use std::time::Duration;

use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{Client, ClientBuilder, RequestBuilder, StatusCode, Url};

use crate::services::provider::SendError;

/// Longest provider text copied into an error detail.
pub const DETAIL_LIMIT: usize = 200;

/// The settings every provider client starts from: a deadline for the whole request (after
/// which the send is a transient failure), one for connecting, the sender's user agent (e.g.
/// `concat!("retarget-sms-sender/", env!("CARGO_PKG_VERSION"))`), and no redirects: a
/// redirected POST would be replayed as a GET (or not at all), so a 3xx is returned as it is.
pub fn client_builder(
    user_agent: &'static str,
    timeout: Duration,
    connect_timeout: Duration,
) -> ClientBuilder {
    Client::builder()
        .timeout(timeout)
        .connect_timeout(connect_timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(user_agent)
}

/// A provider's answer, read whole.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Answer {
    /// The answer's `Retry-After`, see [`retry_after`].
    pub fn retry_after(&self) -> Option<Duration> {
        retry_after(&self.headers)
    }
}

/// Sends `request` and reads its answer whole. A request without an answer, or whose answer
/// cannot be read, is a [`transport_error`] of `provider` (the name that starts its detail).
pub async fn call(provider: &str, request: RequestBuilder) -> Result<Answer, SendError> {
    let response = request.send().await.map_err(|e| transport_error(provider, e))?;
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.text().await.map_err(|e| transport_error(provider, e))?;
    Ok(Answer { status, headers, body })
}

/// `Retry-After` in seconds (the HTTP-date form is ignored).
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    value.parse::<u64>().ok().map(Duration::from_secs)
}

/// A request that got no HTTP answer: timeouts, refused connections, TLS or protocol errors.
/// The request may or may not have reached the provider; all are worth retrying. The URL
/// (which may contain a device token) is dropped from the text.
pub fn transport_error(provider: &str, error: reqwest::Error) -> SendError {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    SendError::Transient { detail: format!("{provider} {kind}: {}", error.without_url()), retry_after: None }
}

/// `base` + path segments, each percent-encoded as one segment (a token can't add a path).
pub fn endpoint(base: &Url, segments: &[&str]) -> Result<Url, SendError> {
    let mut url = base.clone();
    url.path_segments_mut()
        .map_err(|()| SendError::NotConfigured("provider base URL cannot take a path".into()))?
        .pop_if_empty()
        .extend(segments);
    Ok(url)
}

/// Provider text cut to [`DETAIL_LIMIT`] characters (on a character boundary) for a detail.
pub fn clip(text: &str) -> String {
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

    #[tokio::test]
    async fn no_answer_is_transient_and_leaves_the_url_out() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        drop(listener);
        let http = client_builder("retarget-test/0", Duration::from_secs(2), Duration::from_secs(2))
            .build()
            .unwrap();
        let error =
            call("Twilio", http.post(format!("http://{address}/3/device/secret-token"))).await.unwrap_err();
        let SendError::Transient { detail, retry_after: None } = &error else { panic!("{error:?}") };
        assert!(detail.starts_with("Twilio connection failed: "), "{detail}");
        assert!(!detail.contains("secret-token"), "{detail}");
    }

    #[tokio::test]
    async fn redirects_are_returned_not_followed() {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut head = Vec::new();
            let mut byte = [0_u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                stream.read_exact(&mut byte).unwrap();
                head.push(byte[0]);
            }
            stream
                .write_all(b"HTTP/1.1 302 Found\r\nlocation: /elsewhere\r\ncontent-length: 0\r\n\r\n")
                .unwrap();
            stream
        });
        let http = client_builder("retarget-test/0", Duration::from_secs(2), Duration::from_secs(2))
            .build()
            .unwrap();
        let answer = call("Twilio", http.get(format!("http://{address}/here"))).await.unwrap();
        assert_eq!(answer.status, StatusCode::FOUND);
        assert_eq!(answer.headers.get("location").unwrap(), "/elsewhere");
        drop(server.join().unwrap());
    }
}

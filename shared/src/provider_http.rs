//! The HTTP toolkit of the provider clients (FCM, APNs, Twilio, and the email sender to come),
//! so that each sender does not carry its own copy: how their `reqwest` client is built, how a
//! request is sent and its answer read, `Retry-After`, and how a request that got no answer
//! becomes a [`SendError`] without leaking its URL (an APNs URL holds the device token).
//!
//! What an answer *means* (dead address, bad credentials, retry) stays with each provider: only
//! the transport is shared. Behind the `provider-http` feature, so the functions that call no
//! provider do not link `reqwest`.

use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, Utc};
use reqwest::header::{DATE, HeaderMap, RETRY_AFTER};
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

/// How long the provider asks us to wait: `Retry-After` in either of its forms (RFC 9110
/// §10.2.3), delay-seconds (`120`) or an HTTP-date, the latter measured from the answer's own
/// `Date` (the provider's clock, so that a skew between the clocks does not matter) or, if it
/// has none, from now. A date already past is no wait; an unreadable value is no hint.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    retry_after_at(headers, Utc::now())
}

/// [`retry_after`], with `now` the instant the answer was read.
pub fn retry_after_at(headers: &HeaderMap, now: DateTime<Utc>) -> Option<Duration> {
    let header = |name| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    let value = header(RETRY_AFTER)?;
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let until = http_date(value)?;
    let sent = header(DATE).and_then(http_date).unwrap_or(now);
    Some(until.signed_duration_since(sent).to_std().unwrap_or_default())
}

/// An HTTP-date in any of the three forms a recipient must accept: IMF-fixdate
/// (`Sun, 06 Nov 1994 08:49:37 GMT`), RFC 850 (`Sunday, 06-Nov-94 08:49:37 GMT`) and asctime
/// (`Sun Nov  6 08:49:37 1994`).
fn http_date(value: &str) -> Option<DateTime<Utc>> {
    if let Ok(date) = DateTime::parse_from_rfc2822(value) {
        return Some(date.to_utc());
    }
    ["%A, %d-%b-%y %H:%M:%S GMT", "%a %b %e %H:%M:%S %Y"]
        .iter()
        .find_map(|format| NaiveDateTime::parse_from_str(value, format).ok())
        .map(|date| date.and_utc())
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
    fn retry_after_in_seconds_or_as_a_date() {
        let now = DateTime::parse_from_rfc3339("2015-10-21T07:27:00Z").unwrap().to_utc();
        let after = |pairs: &[(reqwest::header::HeaderName, &str)]| {
            let mut headers = HeaderMap::new();
            for (name, value) in pairs {
                headers.insert(name, value.parse().unwrap());
            }
            retry_after_at(&headers, now)
        };
        let secs = |s| Some(Duration::from_secs(s));
        assert_eq!(after(&[]), None);
        assert_eq!(after(&[(RETRY_AFTER, " 17 ")]), secs(17));
        assert_eq!(after(&[(RETRY_AFTER, "0")]), secs(0));
        // An HTTP-date, in each of its three forms, measured from now…
        assert_eq!(after(&[(RETRY_AFTER, "Wed, 21 Oct 2015 07:28:00 GMT")]), secs(60));
        assert_eq!(after(&[(RETRY_AFTER, "Wednesday, 21-Oct-15 07:28:30 GMT")]), secs(90));
        assert_eq!(after(&[(RETRY_AFTER, "Wed Oct 21 07:29:00 2015")]), secs(120));
        // …or from the answer's own Date, whatever our clock says.
        let dated = [(RETRY_AFTER, "Wed, 21 Oct 2015 07:28:00 GMT"), (DATE, "Wed, 21 Oct 2015 07:27:55 GMT")];
        assert_eq!(after(&dated), secs(5));
        // A date gone by is no wait; what is neither form is no hint.
        assert_eq!(after(&[(RETRY_AFTER, "Wed, 21 Oct 2015 07:00:00 GMT")]), secs(0));
        assert_eq!(after(&[(RETRY_AFTER, "-3")]), None);
        assert_eq!(after(&[(RETRY_AFTER, "soon")]), None);
        // Through the system clock, a date far ahead is a long wait.
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, "Fri, 31 Dec 9999 23:59:59 GMT".parse().unwrap());
        assert!(retry_after(&headers).is_some_and(|d| d > Duration::from_secs(86_400)));
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

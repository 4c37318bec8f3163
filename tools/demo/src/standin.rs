//! Local stand-ins for Twilio, FCM (with its OAuth token endpoint) and APNs on one loopback
//! port: they speak just enough of each API for the senders, check credentials, and record
//! every request so the demo can show what reached "the provider".

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

pub const ACCESS_TOKEN: &str = "demo-access-token";

#[derive(Debug, Clone)]
pub struct Recorded {
    pub provider: &'static str,
    pub form: Vec<(String, String)>,
}

#[derive(Clone, Default)]
pub struct StandIn {
    pub requests: Arc<Mutex<Vec<Recorded>>>,
    /// `AccountSid:AuthToken` the Twilio stand-in accepts.
    pub twilio_basic: Arc<Mutex<Option<String>>>,
}

impl StandIn {
    pub fn of(&self, provider: &str) -> Vec<Recorded> {
        self.requests
            .lock()
            .map(|r| r.iter().filter(|x| x.provider == provider).cloned().collect())
            .unwrap_or_default()
    }

    pub async fn serve(self, listener: TcpListener) {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let me = self.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request| me.clone().answer(request));
                let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            });
        }
    }

    async fn answer(
        self,
        request: Request<hyper::body::Incoming>,
    ) -> Result<Response<Full<Bytes>>, Infallible> {
        let path = request.uri().path().to_owned();
        let auth = request
            .headers()
            .get(hyper::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let body = request.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        let form: Vec<(String, String)> =
            form_urlencoded::parse(&body).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
        let respond = |status: StatusCode, body: serde_json::Value| {
            let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
            *response.status_mut() = status;
            response.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("application/json"),
            );
            response
        };
        let (provider, response) = if path == "/token" {
            let grant_ok = form
                .iter()
                .any(|(k, v)| k == "grant_type" && v == "urn:ietf:params:oauth:grant-type:jwt-bearer");
            let status = if grant_ok { StatusCode::OK } else { StatusCode::BAD_REQUEST };
            (
                "oauth",
                respond(
                    status,
                    serde_json::json!({"access_token": ACCESS_TOKEN, "expires_in": 3600, "token_type": "Bearer"}),
                ),
            )
        } else if path.starts_with("/v1/projects/") && path.ends_with("/messages:send") {
            let ok = auth == format!("Bearer {ACCESS_TOKEN}");
            let status = if ok { StatusCode::OK } else { StatusCode::UNAUTHORIZED };
            (
                "fcm",
                respond(
                    status,
                    serde_json::json!({"name": format!("projects/retarget-demo/messages/{}", ulid::Ulid::new())}),
                ),
            )
        } else if path.starts_with("/3/device/") {
            let ok = auth.starts_with("bearer ") || auth.starts_with("Bearer ");
            let mut response =
                respond(if ok { StatusCode::OK } else { StatusCode::FORBIDDEN }, serde_json::json!({}));
            if let Ok(id) = hyper::header::HeaderValue::from_str(&ulid::Ulid::new().to_string()) {
                response.headers_mut().insert("apns-id", id);
            }
            ("apns", response)
        } else if path.starts_with("/2010-04-01/Accounts/") && path.ends_with("/Messages.json") {
            let expected = self.twilio_basic.lock().ok().and_then(|b| b.clone()).map(|b| {
                use base64::Engine as _;
                format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(b))
            });
            let ok = expected.as_deref() == Some(auth.as_str());
            let body = serde_json::json!({"sid": format!("SM{}", ulid::Ulid::new()), "status": "queued"});
            let status = if ok { StatusCode::CREATED } else { StatusCode::UNAUTHORIZED };
            ("twilio", respond(status, body))
        } else {
            (
                "unknown",
                respond(StatusCode::NOT_FOUND, serde_json::json!({"error": "no such stand-in route"})),
            )
        };
        if let Ok(mut requests) = self.requests.lock() {
            requests.push(Recorded { provider, form });
        }
        Ok(response)
    }
}

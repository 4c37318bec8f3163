//! `GET /r/{code}`: a tracked SMS link opened. 302 to the original URL, and `clicked` recorded
//! for its recipient as `POST /v1/events` would (once, however often it is opened). An unknown
//! or expired code is a 404 page — a person followed it, so HTML, not problem+json.

use http::{HeaderValue, StatusCode, header};
use lambda_http::{Body, Response};
use retarget_shared::domain::{EventKind, LinkCode};
use retarget_shared::edge::problem::ApiError;
use retarget_shared::services::ingest::{IncomingEvent, record_events};

use crate::Deps;

pub const NOT_FOUND_PAGE: &str = "<!doctype html>\n<html lang=\"en\"><meta charset=\"utf-8\"><title>Link not found</title>\n<p>This link does not exist or has expired.</p></html>\n";

fn page(status: StatusCode, html: &'static str) -> Response<Body> {
    let mut response = Response::new(Body::Text(html.into()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

pub fn not_found_page() -> Response<Body> {
    page(StatusCode::NOT_FOUND, NOT_FOUND_PAGE)
}

/// The redirect to `url`; not cached, so that every open reaches the service.
pub fn redirect(url: &str) -> Response<Body> {
    let Ok(location) = HeaderValue::from_str(url) else { return not_found_page() };
    let mut response = Response::new(Body::Empty);
    *response.status_mut() = StatusCode::FOUND;
    let headers = response.headers_mut();
    headers.insert(header::LOCATION, location);
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

pub(crate) async fn open(deps: &Deps, code: Option<&str>) -> Result<Response<Body>, ApiError> {
    let Some(code) = code.and_then(|c| LinkCode::parse(c).ok()) else { return Ok(not_found_page()) };
    let link = match deps.store.get_link(&code).await {
        Ok(Some(link)) => link,
        Ok(None) => return Ok(not_found_page()),
        Err(e) => {
            tracing::error!(error = %e, "link lookup failed");
            return Ok(page(
                StatusCode::SERVICE_UNAVAILABLE,
                "<!doctype html>\n<html lang=\"en\"><meta charset=\"utf-8\"><title>Try again</title>\n<p>This link cannot be opened right now; please try again in a moment.</p></html>\n",
            ));
        }
    };
    let event = IncomingEvent {
        event_id: None,
        message_id: Some(link.message_id),
        subscription_id: Some(link.subscription_id),
        kind: EventKind::Clicked,
        occurred_at: None,
    };
    // The person gets where the link goes even if the click cannot be recorded right now.
    if let Err(e) = record_events(&deps.store, link.app_id, std::slice::from_ref(&event)).await {
        tracing::error!(error = %e, message_id = %link.message_id, "a link click could not be recorded");
    }
    Ok(redirect(&link.url))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirects_and_pages() {
        let r = redirect("https://shop.example/cart?id=1");
        assert_eq!(r.status(), StatusCode::FOUND);
        assert_eq!(r.headers()[header::LOCATION], "https://shop.example/cart?id=1");
        let r = not_found_page();
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        assert!(r.headers()[header::CONTENT_TYPE].to_str().unwrap().starts_with("text/html"));
        // A URL that is no header value (a line break) is never sent as one.
        assert_eq!(redirect("https://x.example/\n").status(), StatusCode::NOT_FOUND);
    }
}

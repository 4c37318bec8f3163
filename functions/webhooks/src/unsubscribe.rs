//! `/u/{token}`: the one-click unsubscribe every email carries (`List-Unsubscribe`, with
//! `List-Unsubscribe-Post: List-Unsubscribe=One-Click`, RFC 8058 — what Gmail and Yahoo require
//! of bulk senders). The token is signed by the email sender for this purpose only
//! (`TokenPurpose::Unsubscribe`): no API key, no table read to reject a forged one.
//!
//! - `GET` (a person following the link, or a mail scanner prefetching it) changes nothing: it
//!   shows a page whose button POSTs back. RFC 8058 forbids unsubscribing on GET for that reason.
//! - `POST` (the mailbox provider's one click, or the button) unsubscribes the recipient's email
//!   subscription, reason `stop` (the recipient opted out, as an SMS STOP does); idempotent, and
//!   an earlier reason (the app's `api`, a bounce) is kept.
//!
//! Answers are small HTML pages (a person may be reading them), never cached; a bad token is a
//! 404 page.

use http::{HeaderValue, StatusCode, header};
use lambda_http::{Body, Response};
use retarget_shared::domain::{Channel, TokenPurpose, Tracked, UnsubscribeReason};

use crate::Deps;

const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'";

fn html(status: StatusCode, title: &str, body: &str) -> Response<Body> {
    let text = format!(
        "<!doctype html>\n<html lang=\"en\"><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">\
         <title>{title}</title>\n<body style=\"font-family:system-ui,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem\">\
         <h1>{title}</h1>\n{body}</body></html>\n"
    );
    let mut response = Response::new(Body::Text(text));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    response
}

fn not_found() -> Response<Body> {
    html(StatusCode::NOT_FOUND, "Link not found", "<p>This unsubscribe link is not valid.</p>")
}

fn unavailable() -> Response<Body> {
    html(
        StatusCode::SERVICE_UNAVAILABLE,
        "Try again",
        "<p>We could not process this right now; please try again in a moment.</p>",
    )
}

/// The recipient the token names, if it verifies for unsubscribing.
async fn verified(deps: &Deps, token: Option<&str>) -> Result<Option<Tracked>, Response<Body>> {
    let Some(token) = token else { return Ok(None) };
    match deps.tracking.verify_for(TokenPurpose::Unsubscribe, token).await {
        Ok(Ok(tracked)) => Ok(Some(tracked)),
        Ok(Err(_)) => Ok(None),
        Err(e) => {
            tracing::error!(error = %e, "the tracking keyring could not be read");
            Err(unavailable())
        }
    }
}

/// `GET /u/{token}`: the confirmation page (nothing changes).
pub(crate) async fn page(deps: &Deps, token: Option<&str>) -> Response<Body> {
    match verified(deps, token).await {
        Ok(Some(_)) => html(
            StatusCode::OK,
            "Unsubscribe",
            "<p>Stop receiving these emails?</p>\n<form method=\"post\">\
             <input type=\"hidden\" name=\"List-Unsubscribe\" value=\"One-Click\">\
             <button type=\"submit\">Unsubscribe</button></form>\n",
        ),
        Ok(None) => not_found(),
        Err(response) => response,
    }
}

/// `POST /u/{token}`: unsubscribes the recipient (whatever the body: RFC 8058's
/// `List-Unsubscribe=One-Click`, or the page's form).
pub(crate) async fn one_click(deps: &Deps, token: Option<&str>) -> Response<Body> {
    let tracked = match verified(deps, token).await {
        Ok(Some(tracked)) => tracked,
        Ok(None) => return not_found(),
        Err(response) => return response,
    };
    let store = &deps.store;
    let sub = match store.get_subscription(tracked.app_id, tracked.subscription_id).await {
        Ok(sub) => sub,
        Err(e) => {
            tracing::error!(error = %e, "subscription lookup failed");
            return unavailable();
        }
    };
    // Gone, or not an email subscription (a token is only ever minted for one): nothing to do,
    // and nothing to tell the person but that they will get no more.
    if sub.is_some_and(|s| s.channel == Channel::Email)
        && let Err(e) =
            store.unsubscribe(tracked.app_id, tracked.subscription_id, UnsubscribeReason::Stop).await
    {
        tracing::error!(error = %e, "unsubscribe failed");
        return unavailable();
    }
    tracing::info!(app_id = %tracked.app_id, message_id = %tracked.message_id, subscription_id = %tracked.subscription_id, "email one-click unsubscribe");
    html(StatusCode::OK, "Unsubscribed", "<p>You will not receive these emails any more.</p>")
}

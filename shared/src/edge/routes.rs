//! Every HTTP route of the contract, the Lambda function that owns it, and the one matcher
//! both API Gateway's functions and the local API use. Functions re-match the raw path
//! themselves, so they never depend on API Gateway's `pathParameters`.

use http::Method;

/// The Lambda functions that serve HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Function {
    Subscriptions,
    Messages,
    Events,
    Webhooks,
    Audiences,
    Retargets,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Route {
    CreateSubscription,
    GetSubscription,
    Unsubscribe,
    CreateMessage,
    ListMessages,
    GetMessage,
    Audience,
    AudienceCount,
    AudienceCsv,
    MessageRetargets,
    RecordEvents,
    TwilioWebhook,
    TwilioInbound,
    PushWebhook,
    Track,
    TrackPreflight,
    OpenLink,
    /// An email's `List-Unsubscribe` link opened in a browser: a confirmation page.
    UnsubscribePage,
    /// The one click of RFC 8058 (`List-Unsubscribe=One-Click`), or the page's button.
    UnsubscribeOneClick,
    CreateRetarget,
    GetRetarget,
    CancelRetarget,
    GetDeliveryPolicy,
    PutDeliveryPolicy,
}

impl Route {
    /// Whether the route's request body is JSON: a body sent with another `Content-Type` is
    /// refused with 415 before anything runs. The webhooks take what their provider sends
    /// (Twilio posts a form) and are checked by signature instead; the other routes read no
    /// body. Exhaustive on purpose: a new route must say which it is.
    pub fn takes_json(self) -> bool {
        match self {
            Route::CreateSubscription
            | Route::CreateMessage
            | Route::RecordEvents
            | Route::CreateRetarget
            | Route::PutDeliveryPolicy => true,
            Route::GetSubscription
            | Route::Unsubscribe
            | Route::GetMessage
            | Route::ListMessages
            | Route::Audience
            | Route::AudienceCount
            | Route::AudienceCsv
            | Route::MessageRetargets
            | Route::TwilioWebhook
            | Route::TwilioInbound
            | Route::PushWebhook
            // JSON, but also taken as `text/plain`: see `takes_beacon`.
            | Route::Track
            | Route::TrackPreflight
            | Route::OpenLink
            | Route::UnsubscribePage
            | Route::UnsubscribeOneClick
            | Route::GetRetarget
            | Route::CancelRetarget
            | Route::GetDeliveryPolicy => false,
        }
    }
}

impl Route {
    /// Whether the route's body is JSON that may also come as `text/plain`: what
    /// `navigator.sendBeacon` and a cross-origin `fetch` without a preflight send a string as.
    /// Any other type is refused with 415, as for [`Route::takes_json`].
    pub fn takes_beacon(self) -> bool {
        self == Route::Track
    }

    /// Whether the route's answer is streamed whole by the response-streaming export function
    /// (`retarget-audience-export`), whatever its size: what the local API does, and what the
    /// function's URL does on AWS. API Gateway HTTP APIs cannot stream, so behind them the
    /// route's owner in [`ROUTES`] answers it buffered, up to a Lambda response's 6 MB, and
    /// points larger ones at the export URL.
    pub fn streamed(self) -> bool {
        self == Route::AudienceCsv
    }
}

/// The function API Gateway's `$default` route invokes: whatever no route of [`ROUTES`] matched
/// (an unknown path, or a known path with another method). Every HTTP function re-matches the
/// raw path before anything else and answers those itself — 404 `not_found`, or 405
/// `method_not_allowed` with `Allow` — as the local API's router does, without reading the table.
pub const UNROUTED: Function = Function::Subscriptions;

/// (method, path template, route, owner). `{x}` matches one non-empty path segment.
pub const ROUTES: &[(Method, &str, Route, Function)] = &[
    (Method::POST, "/v1/subscriptions", Route::CreateSubscription, Function::Subscriptions),
    (Method::GET, "/v1/subscriptions/{id}", Route::GetSubscription, Function::Subscriptions),
    (Method::POST, "/v1/subscriptions/{id}/unsubscribe", Route::Unsubscribe, Function::Subscriptions),
    (Method::POST, "/v1/messages", Route::CreateMessage, Function::Messages),
    (Method::GET, "/v1/messages", Route::ListMessages, Function::Messages),
    (Method::GET, "/v1/messages/{id}", Route::GetMessage, Function::Messages),
    (Method::GET, "/v1/messages/{id}/audience", Route::Audience, Function::Audiences),
    (Method::GET, "/v1/messages/{id}/audience/count", Route::AudienceCount, Function::Audiences),
    (Method::GET, "/v1/messages/{id}/audience.csv", Route::AudienceCsv, Function::Audiences),
    (Method::GET, "/v1/messages/{id}/retargets", Route::MessageRetargets, Function::Retargets),
    (Method::POST, "/v1/events", Route::RecordEvents, Function::Events),
    (Method::POST, "/v1/webhooks/twilio/{app_id}", Route::TwilioWebhook, Function::Webhooks),
    (Method::POST, "/v1/webhooks/twilio/{app_id}/inbound", Route::TwilioInbound, Function::Webhooks),
    (Method::POST, "/v1/webhooks/push/{app_id}", Route::PushWebhook, Function::Webhooks),
    (Method::POST, "/v1/track", Route::Track, Function::Webhooks),
    (Method::OPTIONS, "/v1/track", Route::TrackPreflight, Function::Webhooks),
    (Method::GET, "/r/{code}", Route::OpenLink, Function::Webhooks),
    (Method::GET, "/u/{token}", Route::UnsubscribePage, Function::Webhooks),
    (Method::POST, "/u/{token}", Route::UnsubscribeOneClick, Function::Webhooks),
    (Method::POST, "/v1/retargets", Route::CreateRetarget, Function::Retargets),
    (Method::GET, "/v1/retargets/{id}", Route::GetRetarget, Function::Retargets),
    (Method::DELETE, "/v1/retargets/{id}", Route::CancelRetarget, Function::Retargets),
    (Method::GET, "/v1/app/delivery-policy", Route::GetDeliveryPolicy, Function::Messages),
    (Method::PUT, "/v1/app/delivery-policy", Route::PutDeliveryPolicy, Function::Messages),
];

/// A matched route with its one path parameter (every templated route has at most one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matched<'p> {
    pub route: Route,
    pub function: Function,
    pub param: Option<&'p str>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoMatch {
    NotFound,
    /// The path is served, but not with this method: the methods it is served with (what a 405
    /// lists in `Allow`), in the table's order.
    MethodNotAllowed(Vec<Method>),
}

pub fn match_route<'p>(method: &Method, path: &'p str) -> Result<Matched<'p>, NoMatch> {
    let mut allowed = Vec::new();
    for (m, template, route, function) in ROUTES {
        if let Some(param) = match_template(template, path) {
            if m == method {
                return Ok(Matched { route: *route, function: *function, param });
            }
            if !allowed.contains(m) {
                allowed.push(m.clone());
            }
        }
    }
    Err(if allowed.is_empty() { NoMatch::NotFound } else { NoMatch::MethodNotAllowed(allowed) })
}

/// `Some(param)` when `path` fits `template`; the param is `None` for templates without one.
fn match_template<'p>(template: &str, path: &'p str) -> Option<Option<&'p str>> {
    let mut param = None;
    let mut t = template.split('/');
    let mut p = path.split('/');
    loop {
        match (t.next(), p.next()) {
            (None, None) => return Some(param),
            (Some(ts), Some(ps)) if ts.starts_with('{') => {
                if ps.is_empty() {
                    return None;
                }
                param = Some(ps);
            }
            (Some(ts), Some(ps)) if ts == ps => {}
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_each_route_and_its_parameter() {
        let m = match_route(&Method::GET, "/v1/messages/01J/audience/count").unwrap();
        assert_eq!((m.route, m.function, m.param), (Route::AudienceCount, Function::Audiences, Some("01J")));
        let m = match_route(&Method::POST, "/v1/events").unwrap();
        assert_eq!((m.route, m.param), (Route::RecordEvents, None));
        let m = match_route(&Method::DELETE, "/v1/retargets/abc").unwrap();
        assert_eq!(m.route, Route::CancelRetarget);
    }

    #[test]
    fn tells_unknown_paths_from_wrong_methods() {
        assert_eq!(match_route(&Method::GET, "/v1/nope"), Err(NoMatch::NotFound));
        assert_eq!(match_route(&Method::GET, "/v1/messages/"), Err(NoMatch::NotFound));
        assert_eq!(match_route(&Method::GET, "/v1/messages/a/b"), Err(NoMatch::NotFound));
        assert_eq!(
            match_route(&Method::PUT, "/v1/events"),
            Err(NoMatch::MethodNotAllowed(vec![Method::POST]))
        );
        assert_eq!(match_route(&Method::GET, "/v1/events/"), Err(NoMatch::NotFound));
    }

    #[test]
    fn a_wrong_method_is_told_every_method_of_the_path() {
        let allowed = |method: Method, path: &str| match match_route(&method, path) {
            Err(NoMatch::MethodNotAllowed(methods)) => methods,
            other => panic!("{method} {path}: {other:?}"),
        };
        assert_eq!(allowed(Method::POST, "/v1/retargets/abc"), [Method::GET, Method::DELETE]);
        assert_eq!(allowed(Method::GET, "/v1/retargets"), [Method::POST]);
        assert_eq!(allowed(Method::DELETE, "/v1/messages/abc"), [Method::GET]);
        assert_eq!(allowed(Method::GET, "/v1/webhooks/twilio/app"), [Method::POST]);
        // Every path a template serves is told exactly the methods the table lists for it.
        for (_, template, _, _) in ROUTES {
            let path = template.replace("{id}", "x").replace("{app_id}", "x");
            let listed: Vec<Method> =
                ROUTES.iter().filter(|r| r.1 == *template).map(|r| r.0.clone()).collect();
            assert_eq!(allowed(Method::PATCH, &path), listed, "{template}");
        }
    }

    #[test]
    fn json_routes_are_the_writes_with_a_json_body() {
        let json: Vec<Route> = ROUTES.iter().map(|r| r.2).filter(|r| r.takes_json()).collect();
        assert_eq!(
            json,
            [
                Route::CreateSubscription,
                Route::CreateMessage,
                Route::RecordEvents,
                Route::CreateRetarget,
                Route::PutDeliveryPolicy
            ]
        );
    }

    #[test]
    fn every_template_is_unique() {
        let mut seen = std::collections::HashSet::new();
        for (m, t, _, _) in ROUTES {
            assert!(seen.insert((m.clone(), *t)), "{m} {t} twice");
        }
    }
}

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
    GetMessage,
    Audience,
    AudienceCount,
    MessageRetargets,
    RecordEvents,
    TwilioWebhook,
    PushWebhook,
    CreateRetarget,
    GetRetarget,
    CancelRetarget,
}

/// (method, path template, route, owner). `{x}` matches one non-empty path segment.
pub const ROUTES: &[(Method, &str, Route, Function)] = &[
    (Method::POST, "/v1/subscriptions", Route::CreateSubscription, Function::Subscriptions),
    (Method::GET, "/v1/subscriptions/{id}", Route::GetSubscription, Function::Subscriptions),
    (Method::POST, "/v1/subscriptions/{id}/unsubscribe", Route::Unsubscribe, Function::Subscriptions),
    (Method::POST, "/v1/messages", Route::CreateMessage, Function::Messages),
    (Method::GET, "/v1/messages/{id}", Route::GetMessage, Function::Messages),
    (Method::GET, "/v1/messages/{id}/audience", Route::Audience, Function::Audiences),
    (Method::GET, "/v1/messages/{id}/audience/count", Route::AudienceCount, Function::Audiences),
    (Method::GET, "/v1/messages/{id}/retargets", Route::MessageRetargets, Function::Retargets),
    (Method::POST, "/v1/events", Route::RecordEvents, Function::Events),
    (Method::POST, "/v1/webhooks/twilio/{app_id}", Route::TwilioWebhook, Function::Webhooks),
    (Method::POST, "/v1/webhooks/push/{app_id}", Route::PushWebhook, Function::Webhooks),
    (Method::POST, "/v1/retargets", Route::CreateRetarget, Function::Retargets),
    (Method::GET, "/v1/retargets/{id}", Route::GetRetarget, Function::Retargets),
    (Method::DELETE, "/v1/retargets/{id}", Route::CancelRetarget, Function::Retargets),
];

/// A matched route with its one path parameter (every templated route has at most one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matched<'p> {
    pub route: Route,
    pub function: Function,
    pub param: Option<&'p str>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoMatch {
    NotFound,
    MethodNotAllowed,
}

pub fn match_route<'p>(method: &Method, path: &'p str) -> Result<Matched<'p>, NoMatch> {
    let mut path_matched = false;
    for (m, template, route, function) in ROUTES {
        if let Some(param) = match_template(template, path) {
            path_matched = true;
            if m == method {
                return Ok(Matched { route: *route, function: *function, param });
            }
        }
    }
    Err(if path_matched { NoMatch::MethodNotAllowed } else { NoMatch::NotFound })
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
        assert_eq!(match_route(&Method::PUT, "/v1/events"), Err(NoMatch::MethodNotAllowed));
        assert_eq!(match_route(&Method::GET, "/v1/events/"), Err(NoMatch::NotFound));
    }

    #[test]
    fn every_template_is_unique() {
        let mut seen = std::collections::HashSet::new();
        for (m, t, _, _) in ROUTES {
            assert!(seen.insert((m.clone(), *t)), "{m} {t} twice");
        }
    }
}

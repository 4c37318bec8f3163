//! Issue 14: the deployed API's `$default` route. API Gateway gives a request no route matched
//! to `routes::UNROUTED`'s function, which must answer exactly what the local API's router
//! answers — 404 `not_found` or 405 `method_not_allowed` with `Allow`, problem+json — not API
//! Gateway's own `{"message":"Not Found"}`; and must write nothing.

use retarget_shared::domain::Plan;
use retarget_shared::edge::routes::{ROUTES, UNROUTED};
use retarget_tests::{ApiRequest, World};

/// Methods a client may try that some path does not take.
const METHODS: [&str; 7] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];

#[tokio::test]
async fn the_default_route_answers_unrouted_requests_as_the_local_router_does() {
    let (world, app) = World::with_app(Plan::Pro).await;
    let before = world.snapshot().await;
    let mut requests: Vec<(String, String)> = vec![
        ("GET".into(), "/".into()),
        ("GET".into(), "/v1".into()),
        ("GET".into(), "/v1/nope".into()),
        ("POST".into(), "/v1/subscriptions/x/y/z".into()),
        ("GET".into(), "/v2/messages".into()),
        ("DELETE".into(), "/dashboard/../v1/messages".into()),
    ];
    // Every route's path with every method it does not take (a `{x}` filled in).
    for (_, path, _, _) in ROUTES {
        let concrete = path
            .replace("{id}", "01JD0000000000000000000000")
            .replace("{app_id}", "01JD0000000000000000000001");
        for method in METHODS {
            let taken = ROUTES.iter().any(|(m, p, _, _)| p == path && m.as_str() == method);
            if !taken {
                requests.push((method.into(), concrete.clone()));
            }
        }
    }
    let mut seen_405 = 0;
    for (method, target) in &requests {
        let request = || ApiRequest::new(method, target).bearer(&app.api_key);
        let routed = world.call(request()).await;
        let unrouted = world.call_function(UNROUTED, request()).await;
        assert!(matches!(routed.status, 404 | 405), "{method} {target}: the router answered {routed:?}");
        assert_eq!(
            (unrouted.status, &unrouted.content_type, &unrouted.body["code"], &unrouted.allow),
            (routed.status, &routed.content_type, &routed.body["code"], &routed.allow),
            "{method} {target}"
        );
        assert_eq!(unrouted.content_type, "application/problem+json", "{method} {target}");
        if unrouted.status == 405 {
            seen_405 += 1;
            assert!(unrouted.allow.is_some(), "{method} {target}: 405 without Allow");
        }
        // Without an API key too: unrouted requests are answered before authentication.
        let anonymous = world.call_function(UNROUTED, ApiRequest::new(method, target)).await;
        assert_eq!(anonymous.status, unrouted.status, "{method} {target} without a key");
    }
    assert!(seen_405 > 10, "the known paths with other methods were tried");
    assert_eq!(world.snapshot().await, before, "nothing written");
}

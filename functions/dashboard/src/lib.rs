//! The web dashboard's function: `GET /dashboard` and `GET /dashboard/{proxy+}` answer the files
//! of the Vite build of `dashboard/`, embedded in the binary by `build.rs`.
//!
//! Why a function and not S3 behind the API: the dashboard then ships in the same artifact as the
//! API it calls (one `sam deploy`, one version, no bucket to sync or to keep private, no second
//! origin), and the local stack serves it through this very handler. The cost is one Lambda
//! invocation per file on a cold cache; the hashed assets are `immutable`, so a browser fetches
//! them once per release, and the whole bundle is a few tens of kilobytes.
//!
//! The function holds no secret and reads nothing: its role has no permission on the table or
//! the queues. The API key a person types stays in their tab and goes only to the API.

use http::{HeaderValue, Method, StatusCode, header};
use lambda_http::{Body, Request, RequestExt, Response};
use retarget_shared::bootstrap::{Error, FromEnv, HttpFunction, Infra};
use retarget_shared::config::EnvReader;

/// One built file: its path under `/dashboard/`, its bytes, the same gzipped (text files that
/// shrink), its ETag (of the identity bytes; the gzipped variant's ends in `-gz`).
#[derive(Debug)]
pub struct Asset {
    pub path: &'static str,
    pub body: &'static [u8],
    pub gzip: Option<&'static [u8]>,
    pub etag: &'static str,
}

impl Asset {
    /// The ETag of the gzipped variant: `"abc"` → `"abc-gz"`.
    pub fn gzip_etag(&self) -> String {
        format!("{}-gz\"", self.etag.trim_end_matches('"'))
    }
}

/// Whether `Accept-Encoding` takes gzip (with a q above 0).
pub fn accepts_gzip(headers: &http::HeaderMap) -> bool {
    let codings = headers.get_all(header::ACCEPT_ENCODING).iter().filter_map(|v| v.to_str().ok());
    codings.flat_map(|v| v.split(',')).any(|coding| {
        let mut parts = coding.split(';').map(str::trim);
        let name = parts.next().unwrap_or("");
        let q = parts.find_map(|p| p.strip_prefix("q=")).and_then(|q| q.parse::<f32>().ok()).unwrap_or(1.0);
        (name.eq_ignore_ascii_case("gzip") || name == "*") && q > 0.0
    })
}

include!(concat!(env!("OUT_DIR"), "/assets.rs"));

/// Where the dashboard is served; Vite's `base` (dashboard/vite.config.ts) says the same.
pub const PREFIX: &str = "/dashboard";

/// The API Gateway routes (all `GET`) of this function in infra/template.yaml: not API routes
/// (`routes::ROUTES`, docs/openapi.yaml), the page and its files.
pub const GATEWAY_PATHS: [&str; 2] = ["/dashboard", "/dashboard/{proxy+}"];

/// The page's policy: nothing but this origin, no inline script or style, no framing, no form
/// posting anywhere, no plugins. `connect-src 'self'` keeps the API key on the API's origin.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'";

/// Hashed by Vite (`assets/name-HASH.ext`): a new release has new names, so a browser may keep
/// these for a year without asking. Everything else (index.html) is revalidated on every load.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
const REVALIDATE: &str = "no-cache";

/// The dashboard function's dependencies: none.
#[derive(Debug, Default, Clone, Copy)]
pub struct Dashboard;

impl FromEnv for Dashboard {
    fn from_env(_env: &mut EnvReader, _infra: &Infra) -> Result<Self, Error> {
        Ok(Self)
    }
}

impl HttpFunction for Dashboard {
    async fn handle(&self, request: Request) -> Response<Body> {
        serve(request.method(), request.raw_http_path(), request.headers())
    }
}

/// Whether a request for `path` is the dashboard's (what the local stack hands to it).
pub fn owns(path: &str) -> bool {
    path == PREFIX || path.starts_with("/dashboard/")
}

/// The file at `path` under [`PREFIX`]: `/dashboard` and `/dashboard/` are the page itself.
pub fn asset(path: &str) -> Option<&'static Asset> {
    let rest = path.strip_prefix(PREFIX)?;
    let rest = match rest {
        "" | "/" => "index.html",
        _ => rest.strip_prefix('/')?,
    };
    ASSETS.iter().find(|a| a.path == rest)
}

/// The content type of a built file, by its extension.
pub fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("json" | "map") => "application/json",
        Some("webmanifest") => "application/manifest+json",
        Some("woff2") => "font/woff2",
        Some("txt") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// The answer to `method path`: the file, 304 when the browser's copy is current, 404 for
/// a file the build does not have, 405 for anything but GET and HEAD.
pub fn serve(method: &Method, path: &str, headers: &http::HeaderMap) -> Response<Body> {
    if method != Method::GET && method != Method::HEAD {
        let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        response.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    let Some(asset) = asset(path) else {
        return text(StatusCode::NOT_FOUND, "not found\n");
    };
    let (bytes, etag) = match asset.gzip {
        Some(gz) if accepts_gzip(headers) => (gz, asset.gzip_etag()),
        _ => (asset.body, asset.etag.to_owned()),
    };
    let gzipped = etag != asset.etag;
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|tags| tags.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let (status, body) = match (fresh, method == Method::HEAD) {
        (true, _) => (StatusCode::NOT_MODIFIED, Body::Empty),
        (false, true) => (StatusCode::OK, Body::Empty),
        (false, false) => (StatusCode::OK, Body::Binary(bytes.to_vec())),
    };
    let cache = if asset.path.starts_with("assets/") { IMMUTABLE } else { REVALIDATE };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type(asset.path)));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    if let Ok(etag) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, etag);
    }
    if gzipped {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    if asset.gzip.is_some() {
        h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    }
    secure(h);
    response
}

fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut response = Response::new(Body::Text(body.to_owned()));
    *response.status_mut() = status;
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(REVALIDATE));
    secure(h);
    response
}

/// The headers every answer carries, whatever it is.
fn secure(h: &mut http::HeaderMap) {
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::STRICT_TRANSPORT_SECURITY, HeaderValue::from_static("max-age=31536000"));
    h.insert("cross-origin-opener-policy", HeaderValue::from_static("same-origin"));
    h.insert("cross-origin-resource-policy", HeaderValue::from_static("same-origin"));
    h.insert(
        "permissions-policy",
        HeaderValue::from_static("camera=(), microphone=(), geolocation=(), payment=()"),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(path: &str) -> Response<Body> {
        serve(&Method::GET, path, &http::HeaderMap::new())
    }

    fn header<'r>(r: &'r Response<Body>, name: &str) -> &'r str {
        r.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
    }

    fn body(r: &Response<Body>) -> &[u8] {
        r.body().as_ref()
    }

    #[test]
    fn the_page_is_served_at_the_prefix_with_and_without_its_slash() {
        for path in ["/dashboard", "/dashboard/", "/dashboard/index.html"] {
            let r = get(path);
            assert_eq!(r.status(), 200, "{path}");
            assert_eq!(header(&r, "content-type"), "text/html; charset=utf-8");
            assert_eq!(header(&r, "cache-control"), "no-cache", "the page is revalidated");
            let html = String::from_utf8_lossy(body(&r));
            assert!(html.contains("<div id=\"app\""), "{html}");
        }
    }

    #[test]
    fn every_script_and_style_the_page_names_is_served_immutable_with_its_type() {
        let page = String::from_utf8_lossy(asset("/dashboard").unwrap().body).into_owned();
        let mut named = 0;
        for attr in ["src=\"", "href=\""] {
            for part in page.split(attr).skip(1) {
                let url = part.split('"').next().unwrap();
                if url == "data:," {
                    continue; // the empty favicon: no request at all
                }
                assert!(
                    url.starts_with("/dashboard/"),
                    "{url}: every asset is on this origin, under the prefix"
                );
                let r = get(url);
                assert_eq!(r.status(), 200, "{url}");
                if url.starts_with("/dashboard/assets/") {
                    assert_eq!(header(&r, "cache-control"), "public, max-age=31536000, immutable", "{url}");
                    named += 1;
                }
                let ty = header(&r, "content-type");
                if url.ends_with(".js") {
                    assert_eq!(ty, "text/javascript; charset=utf-8");
                } else if url.ends_with(".css") {
                    assert_eq!(ty, "text/css; charset=utf-8");
                }
            }
        }
        assert!(named >= 2, "the page names its script and its style: {page}");
    }

    #[test]
    fn the_page_has_no_inline_script_and_the_policy_forbids_one() {
        let page = String::from_utf8_lossy(asset("/dashboard").unwrap().body).into_owned();
        for part in page.split("<script").skip(1) {
            let tag = part.split('>').next().unwrap();
            assert!(tag.contains("src="), "an inline script: <script{tag}>");
        }
        assert!(!page.contains(" style=\""), "an inline style attribute");
        assert!(!page.contains("http://") && !page.contains("https://"), "a third-party origin in {page}");
        let script = ASSETS.iter().find(|a| a.path.ends_with(".js")).unwrap();
        assert!(!String::from_utf8_lossy(script.body).contains("eval("), "the policy forbids eval");
        let csp = CONTENT_SECURITY_POLICY;
        for directive in
            ["default-src 'self'", "script-src 'self'", "frame-ancestors 'none'", "object-src 'none'"]
        {
            assert!(csp.contains(directive), "{directive}");
        }
        assert!(!csp.contains("unsafe"), "{csp}");
    }

    #[test]
    fn every_answer_carries_the_security_headers() {
        let missing = get("/dashboard/nope.js");
        let post = serve(&Method::POST, "/dashboard", &http::HeaderMap::new());
        let page = get("/dashboard");
        for r in [&page, &missing, &post] {
            assert_eq!(header(r, "content-security-policy"), CONTENT_SECURITY_POLICY);
            assert_eq!(header(r, "x-content-type-options"), "nosniff");
            assert_eq!(header(r, "x-frame-options"), "DENY");
            assert_eq!(header(r, "referrer-policy"), "no-referrer");
        }
        assert_eq!(missing.status(), 404);
        assert_eq!((post.status(), header(&post, "allow")), (StatusCode::METHOD_NOT_ALLOWED, "GET, HEAD"));
    }

    #[test]
    fn paths_outside_the_build_are_not_found() {
        for path in
            ["/dashboard/../Cargo.toml", "/dashboard/assets/", "/dashboardx", "/dashboard//index.html", "/"]
        {
            assert_eq!(get(path).status(), 404, "{path}");
        }
        assert!(owns("/dashboard") && owns("/dashboard/assets/x.js"));
        assert!(!owns("/dashboardx") && !owns("/v1/messages"));
    }

    #[test]
    fn a_current_copy_is_answered_304_and_head_has_no_body() {
        let page = asset("/dashboard").unwrap();
        let mut headers = http::HeaderMap::new();
        headers.insert(header::IF_NONE_MATCH, HeaderValue::from_static(page.etag));
        let r = serve(&Method::GET, "/dashboard", &headers);
        assert_eq!(r.status(), 304);
        assert!(body(&r).is_empty());
        headers.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"other\""));
        assert_eq!(serve(&Method::GET, "/dashboard", &headers).status(), 200);
        let head = serve(&Method::HEAD, "/dashboard", &http::HeaderMap::new());
        assert_eq!(head.status(), 200);
        assert!(body(&head).is_empty());
        assert_eq!(header(&head, "etag"), page.etag);
    }

    #[test]
    fn text_files_go_gzipped_to_a_browser_that_takes_gzip() {
        let script = ASSETS.iter().find(|a| a.path.ends_with(".js")).unwrap();
        let url = format!("/dashboard/{}", script.path);
        let mut headers = http::HeaderMap::new();
        headers.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("gzip, deflate, br, zstd"));
        let r = serve(&Method::GET, &url, &headers);
        assert_eq!(header(&r, "content-encoding"), "gzip");
        assert_eq!(header(&r, "vary"), "Accept-Encoding");
        assert_eq!(header(&r, "etag"), script.gzip_etag());
        assert!(body(&r).len() < script.body.len() / 2, "{} of {}", body(&r).len(), script.body.len());
        assert_eq!(&body(&r)[..2], [0x1f, 0x8b], "a gzip stream");
        let plain = get(&url);
        assert_eq!((header(&plain, "content-encoding"), body(&plain)), ("", script.body));
        // A cached gzipped copy is current; the identity ETag does not validate it.
        headers.insert(header::IF_NONE_MATCH, HeaderValue::from_str(&script.gzip_etag()).unwrap());
        assert_eq!(serve(&Method::GET, &url, &headers).status(), 304);
        headers.insert(header::IF_NONE_MATCH, HeaderValue::from_static(script.etag));
        assert_eq!(serve(&Method::GET, &url, &headers).status(), 200);
        let mut refused = http::HeaderMap::new();
        refused.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("gzip;q=0, br"));
        assert_eq!(header(&serve(&Method::GET, &url, &refused), "content-encoding"), "");
    }

    #[test]
    fn content_types_by_extension() {
        assert_eq!(content_type("a.svg"), "image/svg+xml");
        assert_eq!(content_type("x/y.woff2"), "font/woff2");
        assert_eq!(content_type("noext"), "application/octet-stream");
    }
}

//! Link tracking: every `http://` or `https://` URL of an SMS body becomes, per recipient,
//! `{PUBLIC_BASE_URL}/r/{code}` (`domain::Link`). URLs are found by `linkify` (what a phone
//! would make clickable: trailing punctuation and unbalanced brackets stay outside the URL).

use linkify::{LinkFinder, LinkKind};
use retarget_shared::domain::LinkCode;

/// A body with its URLs replaced, and each code with the URL it stands for (in body order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewritten {
    pub body: String,
    pub links: Vec<(LinkCode, String)>,
}

/// `body` with every http(s) URL replaced by `{base}/r/{code}`, a fresh code from `new_code`
/// per URL (the same URL twice gets two codes: each is one link of the text). Pure but for
/// `new_code`.
pub fn rewrite(body: &str, base: &str, mut new_code: impl FnMut() -> LinkCode) -> Rewritten {
    let mut finder = LinkFinder::new();
    finder.kinds(&[LinkKind::Url]).url_must_have_scheme(true);
    let mut out = String::with_capacity(body.len());
    let mut links = Vec::new();
    let mut at = 0;
    for link in finder.links(body) {
        let url = link.as_str();
        let scheme = url.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
        if !matches!(scheme.as_deref(), Some("http" | "https")) {
            continue;
        }
        let code = new_code();
        out.push_str(&body[at..link.start()]);
        out.push_str(base.trim_end_matches('/'));
        out.push_str("/r/");
        out.push_str(code.as_str());
        links.push((code, url.to_owned()));
        at = link.end();
    }
    out.push_str(&body[at..]);
    Rewritten { body: out, links }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codes() -> impl FnMut() -> LinkCode {
        let mut n = 0;
        move || {
            n += 1;
            LinkCode::parse(&format!("code{n:06}")).unwrap()
        }
    }

    fn urls(r: &Rewritten) -> Vec<&str> {
        r.links.iter().map(|(_, u)| u.as_str()).collect()
    }

    #[test]
    fn each_url_is_replaced_and_the_text_around_it_kept() {
        let r = rewrite(
            "Sale! https://shop.example/cart?id=42&utm=sms, or (see http://x.example/a_b). Bye https://a.example",
            "https://go.example",
            codes(),
        );
        assert_eq!(
            r.body,
            "Sale! https://go.example/r/code000001, or (see https://go.example/r/code000002). Bye https://go.example/r/code000003"
        );
        assert_eq!(
            urls(&r),
            ["https://shop.example/cart?id=42&utm=sms", "http://x.example/a_b", "https://a.example"]
        );
    }

    #[test]
    fn punctuation_quotes_and_brackets_stay_outside() {
        let cases = [
            ("Go to https://x.example/p.", "https://x.example/p"),
            ("\"https://x.example/q?a=1\"", "https://x.example/q?a=1"),
            ("[https://x.example/w_(x)]", "https://x.example/w_(x)"),
            ("Now: https://x.example/#frag!", "https://x.example/#frag"),
            ("HTTPS://X.EXAMPLE/UP", "HTTPS://X.EXAMPLE/UP"),
            ("https://x.example/a,b;c", "https://x.example/a,b;c"),
        ];
        for (body, url) in cases {
            let r = rewrite(body, "https://go.example/", codes());
            assert_eq!(urls(&r), [url], "{body}");
            assert!(r.body.contains("https://go.example/r/code000001"), "{body} → {}", r.body);
            assert!(!r.body.contains("x.example") && !r.body.contains("X.EXAMPLE"), "{}", r.body);
        }
    }

    #[test]
    fn other_schemes_and_bare_domains_are_left_alone() {
        for body in
            ["mail me: mailto:a@b.example", "ftp://files.example/x", "visit shop.example today", "no links"]
        {
            let r = rewrite(body, "https://go.example", codes());
            assert_eq!((r.body.as_str(), r.links.len()), (body, 0), "{body}");
        }
    }

    #[test]
    fn the_same_url_twice_is_two_links() {
        let r = rewrite("https://a.example and https://a.example", "https://go.example", codes());
        assert_eq!(r.links.len(), 2);
        assert_ne!(r.links[0].0, r.links[1].0);
    }
}

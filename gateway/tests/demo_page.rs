//! The demo chat page: `GET /` and its script are served with the right content types and
//! cache headers, revalidate to 304, and both answer 404 with `--demo-page false`.

mod common;

use common::{TestGateway, DEADLINE};
use gateway::Config;

/// Status, headers and body of `GET url`, with an optional `If-None-Match`.
async fn get(url: &str, if_none_match: Option<&str>) -> reqwest::Response {
    let mut request = reqwest::Client::new().get(url);
    if let Some(etag) = if_none_match {
        request = request.header("If-None-Match", etag);
    }
    tokio::time::timeout(DEADLINE, request.send()).await.expect("reply in time").expect("request")
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> &'a str {
    response.headers().get(name).map(|v| v.to_str().expect("ASCII header")).unwrap_or_default()
}

#[tokio::test]
async fn the_page_and_its_script_are_served_with_their_content_types() {
    let gateway = TestGateway::start(Config::default()).await;

    let page = get(&gateway.http("/"), None).await;
    assert_eq!(page.status(), 200);
    assert_eq!(header(&page, "content-type"), "text/html; charset=utf-8");
    assert_eq!(header(&page, "cache-control"), "no-cache");
    assert_eq!(header(&page, "x-content-type-options"), "nosniff");
    let html = page.text().await.expect("page body");
    assert!(html.contains(r#"<script src="demo/app.js"></script>"#), "{html}");

    let script = get(&gateway.http("/demo/app.js"), None).await;
    assert_eq!(script.status(), 200);
    assert_eq!(header(&script, "content-type"), "text/javascript; charset=utf-8");
    assert_eq!(header(&script, "cache-control"), "no-cache");
    let etag = header(&script, "etag").to_owned();
    let body = script.bytes().await.expect("script body");
    assert_eq!(&body[..], include_bytes!("../assets/demo/app.js"), "the committed bundle, byte for byte");
    assert!(String::from_utf8_lossy(&body).contains("hubs/demo"), "the bundle talks to the relay hub");

    let again = get(&gateway.http("/demo/app.js"), Some(&etag)).await;
    assert_eq!(again.status(), 304, "a browser holding the current version revalidates without a body");
    assert_eq!(header(&again, "etag"), etag);
    assert!(again.bytes().await.expect("body").is_empty());
    let stale = get(&gateway.http("/demo/app.js"), Some("\"0000000000000000\"")).await;
    assert_eq!(stale.status(), 200, "another version gets the file");

    gateway.stop().await;
}

#[tokio::test]
async fn demo_page_false_answers_404() {
    let gateway = TestGateway::start(Config { demo_page: false, ..Config::default() }).await;
    for path in ["/", "/demo/app.js"] {
        assert_eq!(get(&gateway.http(path), None).await.status(), 404, "{path}");
    }
    assert_eq!(get(&gateway.http("/healthz"), None).await.status(), 200, "the rest is still served");
    gateway.stop().await;
}

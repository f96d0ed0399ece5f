//! The browser SDK as a page loads it: `GET /sdk/zib-sdk.js` from a running server.

use reqwest::header;
use tokio::net::TcpListener;
use zib_crypto::{CapabilitySigner, MasterKey};
use zib_server::ServerConfig;

#[tokio::test]
async fn the_sdk_is_served_cacheable_revalidatable_and_cross_origin() {
    let dir = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let config = ServerConfig::with_secrets(
        dir.path().join("meta.db"),
        base.clone(),
        MasterKey::generate(),
        CapabilitySigner::generate(),
        "cluster-token".into(),
    );
    let server = zib_server::start(config, listener).await.unwrap();
    let http = reqwest::Client::new();
    let url = format!("{base}/sdk/zib-sdk.js");

    let first = http
        .get(&url)
        .header(header::ORIGIN, "https://tenant.example")
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 200);
    let h = first.headers().clone();
    assert!(h[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/javascript"));
    assert_eq!(h[header::CACHE_CONTROL], "public, max-age=300");
    assert_eq!(h[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
    let etag = h[header::ETAG].to_str().unwrap().to_string();
    assert!(etag.starts_with('"') && !etag.starts_with("W/"), "{etag}");
    let body = first.text().await.unwrap();
    assert_eq!(body, zib_server::sdk::SDK_SOURCE);
    assert!(body.contains("uploadDirect"));

    let again = http
        .get(&url)
        .header(header::IF_NONE_MATCH, &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
    assert_eq!(again.headers()[header::ETAG].to_str().unwrap(), etag);
    assert_eq!(
        again.headers()[header::CACHE_CONTROL],
        "public, max-age=300"
    );
    assert!(again.bytes().await.unwrap().is_empty());

    let stale = http
        .get(&url)
        .header(header::IF_NONE_MATCH, "\"not-the-sdk\"")
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), 200);

    // The ETag is a function of the content: a second server gives the same one.
    let head = http.head(&url).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()[header::ETAG].to_str().unwrap(), etag);

    server.stop().await;
}

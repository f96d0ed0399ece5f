//! The loopback source against a fake server route holding a real envelope: every
//! range ffmpeg may ask for (whole, from the start, a seek to the end, across
//! window boundaries) decrypts to exactly the plaintext's bytes.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use tokio::sync::mpsc;
use zib_crypto::envelope::Header;
use zib_crypto::DataKey;
use zib_proto::jobs::{ClaimedJob, JobSource, LEASE_HEADER};

use super::loopback::{Loopback, Output};
use super::source::Source;

const LEASE: &str = "the-lease";

/// The server's source route, reduced to what the node relies on.
async fn serve(State(envelope): State<Arc<Vec<u8>>>, headers: HeaderMap) -> Response {
    let mut response = Response::new(Body::empty());
    if headers.get(LEASE_HEADER).and_then(|v| v.to_str().ok()) != Some(LEASE) {
        *response.status_mut() = StatusCode::GONE;
        return response;
    }
    let len = envelope.len();
    let (a, b) = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("bytes="))
        .and_then(|v| v.split_once('-'))
        .map(|(a, b)| (a.parse::<usize>().unwrap(), b.parse::<usize>().unwrap()))
        .unwrap_or((0, len - 1));
    *response.body_mut() = Body::from(envelope[a..=b].to_vec());
    *response.status_mut() = StatusCode::PARTIAL_CONTENT;
    response
}

async fn loopback_over(
    plain: &[u8],
    chunk_size: u32,
    lease: &str,
) -> (Loopback, mpsc::UnboundedReceiver<Output>) {
    let key = DataKey::generate();
    let header = Header::new_random(chunk_size);
    let envelope = zib_crypto::envelope::encrypt(&key, header, plain);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/source", listener.local_addr().unwrap());
    let job = ClaimedJob {
        job_id: "j".into(),
        lease_token: lease.into(),
        lease_secs: 30,
        source: JobSource {
            url,
            size: plain.len() as u64,
            ciphertext_size: envelope.len() as u64,
            chunk_size,
            nonce_prefix: header.to_params().nonce_prefix,
            data_key: hex::encode(key.as_bytes()),
        },
        hls_key: "00".repeat(16),
        options: serde_json::json!({}),
        thumbnails: None,
        aspect_ratio: None,
    };
    let app = Router::new()
        .route("/source", get(serve))
        .with_state(Arc::new(envelope));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let source = Source::new(
        reqwest::Client::new(),
        &job.source,
        &job.lease_token,
        "cluster",
    )
    .unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    (Loopback::start(Arc::new(source), tx).await.unwrap(), rx)
}

fn plaintext(len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    blake3::Hasher::new()
        .update(b"loopback")
        .finalize_xof()
        .fill(&mut out);
    out
}

#[tokio::test]
async fn the_loopback_source_serves_exact_plaintext_ranges() {
    // Over two 4 MiB windows, in chunks that do not divide the size.
    let plain = plaintext(9 * 1024 * 1024 + 12345);
    let len = plain.len();
    let (loopback, _rx) = loopback_over(&plain, 64 * 1024 - 7, LEASE).await;
    let http = reqwest::Client::new();
    let url = loopback.source_url();

    let whole = http.get(&url).send().await.unwrap();
    assert_eq!(whole.status(), StatusCode::OK);
    assert_eq!(whole.headers()["accept-ranges"], "bytes");
    assert_eq!(whole.bytes().await.unwrap().as_ref(), &plain[..]);

    for (range, from, to) in [
        ("bytes=0-99".to_string(), 0, 100),
        // A seek to the end, as for a `moov` atom there.
        ("bytes=-1000".to_string(), len - 1000, len),
        (format!("bytes={}-", len - 5), len - 5, len),
        // Across a chunk and a window boundary.
        (
            format!("bytes={}-{}", 4 * 1024 * 1024 - 10, 4 * 1024 * 1024 + 70000),
            4 * 1024 * 1024 - 10,
            4 * 1024 * 1024 + 70001,
        ),
        ("bytes=1234567-".to_string(), 1234567, len),
    ] {
        let got = http.get(&url).header("range", &range).send().await.unwrap();
        assert_eq!(got.status(), StatusCode::PARTIAL_CONTENT, "{range}");
        assert_eq!(
            got.headers()["content-range"].to_str().unwrap(),
            format!("bytes {from}-{}/{len}", to - 1)
        );
        assert_eq!(
            got.bytes().await.unwrap().as_ref(),
            &plain[from..to],
            "{range}"
        );
    }

    let head = http.head(&url).send().await.unwrap();
    assert_eq!(head.headers()["content-length"], len.to_string().as_str());
    let outside = http
        .get(&url)
        .header("range", format!("bytes={len}-"))
        .send()
        .await
        .unwrap();
    assert_eq!(outside.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    // Without the random prefix nothing is served.
    let guessed = url.replace(&url[url.len() - 39..url.len() - 7], &"0".repeat(32));
    assert_eq!(
        http.get(&guessed).send().await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn output_files_reach_the_job_and_a_lost_lease_cuts_the_source() {
    let plain = plaintext(100_000);
    let (loopback, mut rx) = loopback_over(&plain, 4096, LEASE).await;
    let http = reqwest::Client::new();
    let put = |name: &str, body: &'static [u8]| {
        http.put(format!("{}/{name}", loopback.output_base()))
            .body(body)
            .send()
    };
    assert!(put("360p_00000.ts", b"\x47segment")
        .await
        .unwrap()
        .status()
        .is_success());
    assert!(put("360p.m3u8", b"#EXTM3U\n")
        .await
        .unwrap()
        .status()
        .is_success());
    assert_eq!(
        put("notes.txt", b"x").await.unwrap().status(),
        StatusCode::BAD_REQUEST
    );
    match rx.recv().await.unwrap() {
        Output::Segment { name, bytes } => {
            assert_eq!(name, "360p_00000.ts");
            assert_eq!(bytes.as_ref(), b"\x47segment");
        }
        other => panic!("{other:?}"),
    }
    assert!(
        matches!(rx.recv().await.unwrap(), Output::Playlist { name, .. } if name == "360p.m3u8")
    );

    // A source whose lease the server no longer honours: ffmpeg sees a cut read.
    let (gone, _rx) = loopback_over(&plain, 4096, "some-other-lease").await;
    let read = http.get(gone.source_url()).send().await.unwrap();
    assert!(
        read.bytes().await.is_err(),
        "a read without a lease must not complete"
    );
}

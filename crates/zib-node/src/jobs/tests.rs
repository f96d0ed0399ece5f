//! The loopback source against a fake server route holding a real envelope: every
//! range ffmpeg may ask for (whole, from the start, a seek to the end, across
//! window boundaries) decrypts to exactly the plaintext's bytes. A source stored
//! as several envelopes (one per multipart part) reads the same, window by window
//! and across part boundaries.

use std::ops::Range;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use tokio::sync::mpsc;
use zib_crypto::envelope::Header;
use zib_crypto::DataKey;
use zib_proto::jobs::{ClaimedJob, JobSource, SourcePart, LEASE_HEADER};

use super::loopback::{Loopback, Output};
use super::source::{Source, SourceError};

const LEASE: &str = "the-lease";

/// What the fake source route serves, and the byte ranges it was asked for (so a
/// test sees how many GETs a read made and where).
struct Served {
    ciphertext: Vec<u8>,
    asked: Mutex<Vec<Range<usize>>>,
}

impl Served {
    fn new(ciphertext: Vec<u8>) -> Arc<Self> {
        Arc::new(Self {
            ciphertext,
            asked: Mutex::new(Vec::new()),
        })
    }

    fn take_asked(&self) -> Vec<Range<usize>> {
        std::mem::take(&mut *self.asked.lock().unwrap())
    }
}

/// The server's source route, reduced to what the node relies on.
async fn serve(State(served): State<Arc<Served>>, headers: HeaderMap) -> Response {
    let mut response = Response::new(Body::empty());
    if headers.get(LEASE_HEADER).and_then(|v| v.to_str().ok()) != Some(LEASE) {
        *response.status_mut() = StatusCode::GONE;
        return response;
    }
    let envelope = &served.ciphertext;
    let len = envelope.len();
    let (a, b) = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("bytes="))
        .and_then(|v| v.split_once('-'))
        .map(|(a, b)| (a.parse::<usize>().unwrap(), b.parse::<usize>().unwrap()))
        .unwrap_or((0, len - 1));
    served.asked.lock().unwrap().push(a..b + 1);
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
            parts: Vec::new(),
        },
        hls_key: "00".repeat(16),
        options: serde_json::json!({}),
        thumbnails: None,
        aspect_ratio: None,
    };
    let app = Router::new()
        .route("/source", get(serve))
        .with_state(Served::new(envelope));
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

/// A source of one envelope per part (plaintext `sizes` in order), all under one key
/// and chunk size, each with its own random header, served concatenated; with the
/// claim describing it and the parts' plaintext offsets.
async fn parts_source(
    sizes: &[usize],
    chunk_size: u32,
) -> (Source, Vec<u8>, JobSource, Vec<Range<u64>>, Arc<Served>) {
    let plain = plaintext(sizes.iter().sum());
    let key = DataKey::generate();
    let (mut ciphertext, mut parts, mut spans, mut at) = (Vec::new(), Vec::new(), Vec::new(), 0);
    for &size in sizes {
        let header = Header::new_random(chunk_size);
        let envelope = zib_crypto::envelope::encrypt(&key, header, &plain[at..at + size]);
        parts.push(SourcePart {
            size: size as u64,
            ciphertext_size: envelope.len() as u64,
            nonce_prefix: header.to_params().nonce_prefix,
        });
        spans.push(at as u64..(at + size) as u64);
        ciphertext.extend_from_slice(&envelope);
        at += size;
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let claim = JobSource {
        url: format!("http://{}/source", listener.local_addr().unwrap()),
        size: plain.len() as u64,
        ciphertext_size: ciphertext.len() as u64,
        chunk_size,
        nonce_prefix: String::new(),
        data_key: hex::encode(key.as_bytes()),
        parts,
    };
    let served = Served::new(ciphertext);
    let app = Router::new()
        .route("/source", get(serve))
        .with_state(served.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let source = Source::new(reqwest::Client::new(), &claim, LEASE, "cluster").unwrap();
    (source, plain, claim, spans, served)
}

/// The ciphertext span of each part's envelope.
fn envelope_spans(claim: &JobSource) -> Vec<Range<usize>> {
    let mut at = 0;
    claim
        .parts
        .iter()
        .map(|p| {
            let span = at..at + p.ciphertext_size as usize;
            at = span.end;
            span
        })
        .collect()
}

#[tokio::test]
async fn a_source_in_parts_reads_window_by_window_and_across_parts() {
    let window = 4 * 1024 * 1024;
    for (chunk, sizes) in [
        // Uneven parts, one of exactly one chunk, and an empty last part.
        (16usize, vec![3 * 16 + 5, 16, 2 * 16 + 1, 0]),
        // Parts over a window, in chunks that do not divide it, an empty one inside.
        (
            64 * 1024 - 7,
            vec![
                window + 3 * (64 * 1024 - 7) + 5,
                64 * 1024 - 7,
                0,
                window + 1,
            ],
        ),
    ] {
        let (source, plain, claim, spans, served) = parts_source(&sizes, chunk as u32).await;
        let cipher_spans = envelope_spans(&claim);
        let len = plain.len() as u64;
        assert_eq!(source.size(), len);
        let part_of = |r: &Range<u64>| {
            spans
                .iter()
                .position(|s| s.start <= r.start && r.end <= s.end && s.start < s.end)
                .unwrap_or_else(|| panic!("{r:?} crosses a part boundary"))
        };

        // Every window lies in one part, ends on one of its chunk boundaries (or its
        // end), is at most a window long, and is read with one GET inside its envelope.
        let windows = source.windows(0..len);
        assert_eq!(windows.first().unwrap().start, 0);
        assert_eq!(windows.last().unwrap().end, len);
        let mut whole = Vec::new();
        for (i, w) in windows.iter().enumerate() {
            if i > 0 {
                assert_eq!(windows[i - 1].end, w.start, "windows are contiguous");
            }
            let part = part_of(w);
            assert!(w.end - w.start <= window as u64, "{w:?}");
            assert!(
                w.end == spans[part].end || (w.end - spans[part].start) % chunk as u64 == 0,
                "{w:?} does not end on a chunk boundary of part {part}"
            );
            let got = source.read(w.clone()).await.unwrap();
            assert_eq!(got, &plain[w.start as usize..w.end as usize], "{w:?}");
            whole.extend_from_slice(&got);
            let asked = served.take_asked();
            assert_eq!(asked.len(), 1, "{w:?}");
            let env = &cipher_spans[part];
            assert!(
                env.start <= asked[0].start && asked[0].end <= env.end,
                "{w:?}"
            );
        }
        assert_eq!(whole, plain);
        assert!(
            windows.len() > sizes.iter().filter(|&&s| s > 0).count() || chunk == 16,
            "the large parts are split into windows"
        );

        // Reads across part boundaries: one GET per part touched, each inside its
        // part's envelope.
        let boundaries: Vec<u64> = spans[..spans.len() - 1].iter().map(|s| s.end).collect();
        let mut ranges = vec![0..len, 1..len - 1];
        for &b in &boundaries {
            ranges.push(b.saturating_sub(3)..(b + 2).min(len));
            ranges.push(b.saturating_sub(1)..(b + 1).min(len));
        }
        // From inside the first part to just inside the third with bytes.
        ranges.push(spans[0].start + 7..spans[2].start + 1);
        for r in ranges {
            let got = source.read(r.clone()).await.unwrap();
            assert_eq!(got, &plain[r.start as usize..r.end as usize], "{r:?}");
            let touched: Vec<usize> = spans
                .iter()
                .enumerate()
                .filter(|(_, s)| s.start.max(r.start) < s.end.min(r.end))
                .map(|(i, _)| i)
                .collect();
            let asked = served.take_asked();
            assert_eq!(asked.len(), touched.len(), "{r:?}");
            for (a, &part) in asked.iter().zip(&touched) {
                let env = &cipher_spans[part];
                assert!(env.start <= a.start && a.end <= env.end, "{r:?}");
            }
        }

        // Small enough to try every start, against many ends.
        if chunk == 16 {
            for start in 0..len {
                for end in (start + 1..=len).step_by(5).chain([len]) {
                    let got = source.read(start..end).await.unwrap();
                    assert_eq!(got, &plain[start as usize..end as usize], "{start}..{end}");
                }
            }
        }
        assert!(matches!(
            source.read(len..len + 1).await,
            Err(SourceError::Decrypt(_))
        ));
        assert!(source.windows(len..len).is_empty());
    }
}

#[tokio::test]
async fn a_claim_whose_parts_do_not_add_up_is_refused() {
    let (_, _, claim, _, _) = parts_source(&[3 * 16 + 5, 16, 2 * 16 + 1, 0], 16).await;
    let refused = |claim: &JobSource| {
        matches!(
            Source::new(reqwest::Client::new(), claim, LEASE, "cluster"),
            Err(SourceError::BadClaim(_))
        )
    };
    assert!(!refused(&claim));

    let mut bigger = claim.clone();
    bigger.size += 1;
    assert!(refused(&bigger), "plaintext sizes do not add up");
    let mut shorter = claim.clone();
    shorter.ciphertext_size -= 1;
    assert!(refused(&shorter), "ciphertext sizes do not add up");
    let mut torn = claim.clone();
    torn.parts[1].ciphertext_size -= 1;
    torn.ciphertext_size -= 1;
    assert!(refused(&torn), "a part's envelope does not fit its size");
    let mut moved = claim.clone();
    moved.parts[0].size -= 1;
    moved.parts[1].size += 1;
    assert!(refused(&moved), "a part's envelope does not fit its size");
    let mut unhexed = claim.clone();
    unhexed.parts[2].nonce_prefix = "zz".into();
    assert!(refused(&unhexed));
    let mut huge = claim.clone();
    huge.parts[0].size = u64::MAX;
    huge.parts[0].ciphertext_size = u64::MAX;
    assert!(refused(&huge), "sizes that overflow");
    let mut unparted = claim.clone();
    unparted.parts.clear();
    assert!(
        refused(&unparted),
        "one envelope needs its own nonce prefix"
    );
}

#[tokio::test]
async fn each_part_is_opened_with_its_own_header() {
    let sizes = [3 * 16 + 5, 16, 2 * 16 + 1];
    let (_, plain, mut claim, spans, _) = parts_source(&sizes, 16).await;
    claim.parts[1].nonce_prefix = claim.parts[0].nonce_prefix.clone();
    let source = Source::new(reqwest::Client::new(), &claim, LEASE, "cluster").unwrap();
    let first = spans[0].clone();
    assert_eq!(
        source.read(first.clone()).await.unwrap(),
        &plain[first.start as usize..first.end as usize]
    );
    assert!(matches!(
        source.read(spans[1].clone()).await,
        Err(SourceError::Decrypt(_))
    ));
    assert!(matches!(
        source.read(first.end - 1..first.end + 1).await,
        Err(SourceError::Decrypt(_))
    ));
}

#[tokio::test]
async fn the_loopback_serves_a_source_in_parts() {
    let chunk = 64 * 1024 - 7;
    let sizes = [4 * 1024 * 1024 + 3 * chunk + 5, chunk, 2 * chunk + 1, 0];
    let (source, plain, _, spans, _) = parts_source(&sizes, chunk as u32).await;
    let (tx, _rx) = mpsc::unbounded_channel();
    let loopback = Loopback::start(Arc::new(source), tx).await.unwrap();
    let http = reqwest::Client::new();
    let url = loopback.source_url();
    let whole = http.get(&url).send().await.unwrap();
    assert_eq!(whole.status(), StatusCode::OK);
    assert_eq!(whole.bytes().await.unwrap().as_ref(), &plain[..]);
    // A seek that starts in the first part and ends in the third.
    let (from, to) = (spans[0].end as usize - 100, spans[2].start as usize + 10);
    let got = http
        .get(&url)
        .header("range", format!("bytes={from}-{}", to - 1))
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(got.bytes().await.unwrap().as_ref(), &plain[from..to]);
}

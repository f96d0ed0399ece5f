//! `kill -9` of the server or a node at random points during uploads, several rounds
//! from a printed seed (`ZIB_FAULT_SEED=<n>` replays one). Afterwards every upload
//! that reported success reads back byte-identical, and no file is left in a
//! non-terminal phase.

mod common;

use std::time::{Duration, Instant};

use common::procs::ProcCluster;
use common::*;

const ROUNDS: u64 = 6;
const UPLOADS_PER_ROUND: u64 = 3;

/// Small deterministic generator so a seed replays the same faults.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[test]
fn crashes_at_random_points_never_lose_or_corrupt_a_completed_upload() {
    let seed: u64 = std::env::var("ZIB_FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5EED_2026);
    eprintln!("fault injection seed: {seed} (replay with ZIB_FAULT_SEED={seed})");
    let mut rng = Rng(seed | 1);
    let mut cluster = ProcCluster::storage(
        6,
        &[
            ("ZIB_UPLOAD_EXPIRY_SECS", "15"),
            ("ZIB_GARBAGE_GRACE_SECS", "1"),
        ],
    );
    let work = tempfile::tempdir().unwrap();
    let mut completed: Vec<(String, Vec<u8>)> = Vec::new();
    let mut failed_uploads = 0;

    for round in 0..ROUNDS {
        let jobs: Vec<_> = (0..UPLOADS_PER_ROUND)
            .map(|i| {
                let size = 1 + rng.below(6 * MIB);
                let data = pattern(size, seed ^ (round * 100 + i));
                let path = write_file(work.path(), &format!("r{round}-{i}"), &data);
                let client = cluster.client();
                let key = format!("round{round}/file{i}");
                let handle = std::thread::spawn(move || {
                    let rt = tokio::runtime::Runtime::new().unwrap();
                    rt.block_on(client.upload_path(
                        &path,
                        "faults",
                        &key,
                        None,
                        &Default::default(),
                    ))
                });
                (handle, data)
            })
            .collect();

        std::thread::sleep(Duration::from_millis(rng.below(120)));
        let victim = rng.below(7);
        if victim == 6 {
            eprintln!("round {round}: kill -9 server");
            cluster.kill_server();
            std::thread::sleep(Duration::from_millis(300));
            cluster.start_server();
        } else {
            eprintln!("round {round}: kill -9 node {victim}");
            cluster.kill_node(victim as usize);
            std::thread::sleep(Duration::from_millis(300));
            cluster.start_node(victim as usize);
        }

        for (handle, data) in jobs {
            match handle.join().unwrap() {
                Ok(result) => completed.push((result.cdn_url, data)),
                Err(e) => {
                    eprintln!("round {round}: upload failed as the crash allows: {e}");
                    failed_uploads += 1;
                }
            }
        }
        cluster.wait_nodes_online(6);
    }
    eprintln!(
        "{} uploads completed, {failed_uploads} failed during crashes",
        completed.len()
    );
    assert!(!completed.is_empty(), "some uploads must get through");

    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    for (url, data) in &completed {
        let (status, body) = get(&http, url, None);
        assert_eq!(status, 200, "{url}");
        assert!(&body == data, "{url} differs after the crashes");
    }

    // Interrupted uploads end failed (registration expired) or distributed; none
    // stays pending or uploading.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let store = rt
        .block_on(zib_meta::Store::open_sqlite(&cluster.database()))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let stuck = rt
            .block_on(store.count_files_in_phases(&[
                zib_meta::FilePhase::Pending,
                zib_meta::FilePhase::Uploading,
            ]))
            .unwrap();
        if stuck == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{stuck} files stuck in a non-terminal phase"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

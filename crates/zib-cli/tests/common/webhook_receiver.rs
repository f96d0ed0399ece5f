//! A webhook receiver for tests: a plain HTTP/1.1 server on 127.0.0.1 that records
//! every request, can be told to fail the next N, and can be taken down and brought
//! back on the same port. Signatures are checked by the tests, from what it records.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
pub struct Received {
    /// Lower-case names.
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
    /// The status we answered.
    pub answered: u16,
}

impl Received {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("webhook body is JSON")
    }
    pub fn event(&self) -> String {
        self.json()["event"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).map(String::as_str).unwrap_or("")
    }
}

#[derive(Default)]
struct Shared {
    received: Vec<Received>,
    /// Each event id is answered 500 this many times before a 200.
    failures_per_event: usize,
}

pub struct Receiver {
    pub port: u16,
    shared: Arc<Mutex<Shared>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Receiver {
    pub fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind receiver");
        let port = listener.local_addr().unwrap().port();
        let mut r = Receiver {
            port,
            shared: Arc::new(Mutex::new(Shared::default())),
            stop: Arc::new(AtomicBool::new(false)),
            thread: None,
        };
        r.serve(listener);
        r
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn serve(&mut self, listener: TcpListener) {
        listener.set_nonblocking(true).unwrap();
        let shared = self.shared.clone();
        let stop = self.stop.clone();
        self.thread = Some(std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => handle(stream, &shared),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(10))
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        }));
    }

    /// Closes the port: senders get "connection refused".
    pub fn take_down(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    /// Listens again on the same port.
    pub fn bring_up(&mut self) {
        self.stop = Arc::new(AtomicBool::new(false));
        let listener = TcpListener::bind(("127.0.0.1", self.port)).expect("rebind receiver");
        self.serve(listener);
    }

    /// Answers the first `n` deliveries of every event (by `webhook-id`) with 500.
    pub fn fail_each_event(&self, n: usize) {
        self.shared.lock().unwrap().failures_per_event = n;
    }

    pub fn received(&self) -> Vec<Received> {
        self.shared.lock().unwrap().received.clone()
    }

    /// Waits until `done` holds for what was received; returns it.
    pub fn wait_until(
        &self,
        what: &str,
        timeout: Duration,
        done: impl Fn(&[Received]) -> bool,
    ) -> Vec<Received> {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.received();
            if done(&got) {
                return got;
            }
            if Instant::now() > deadline {
                let seen: Vec<String> = got
                    .iter()
                    .map(|r| format!("{} {} -> {}", r.event(), r.header("webhook-id"), r.answered))
                    .collect();
                panic!("timed out waiting for {what}; received: {seen:#?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The first successfully answered delivery of `event` for `file_id`.
    pub fn wait_event(&self, event: &str, file_id: &str, timeout: Duration) -> Received {
        let matches =
            |r: &Received| r.answered < 300 && r.event() == event && r.json()["file_id"] == file_id;
        let got = self.wait_until(&format!("{event} for {file_id}"), timeout, |all| {
            all.iter().any(matches)
        });
        got.into_iter().find(|r| matches(r)).unwrap()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.take_down();
    }
}

fn handle(mut stream: TcpStream, shared: &Mutex<Shared>) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let header_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..header_end]).to_string();
    let mut headers = HashMap::new();
    for line in head.lines().skip(1) {
        if let Some((k, v)) = line.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let len: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[header_end..].to_vec();
    while body.len() < len {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    }
    let status = {
        let mut s = shared.lock().unwrap();
        let id = headers.get("webhook-id").cloned().unwrap_or_default();
        let seen = s
            .received
            .iter()
            .filter(|r| r.headers.get("webhook-id") == Some(&id))
            .count();
        let status = if seen < s.failures_per_event {
            500
        } else {
            200
        };
        s.received.push(Received {
            headers,
            body,
            answered: status,
        });
        status
    };
    let reply = if status == 200 {
        "ok"
    } else {
        "receiver says no"
    };
    let _ = write!(
        stream,
        "HTTP/1.1 {status} X\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reply}",
        reply.len()
    );
    let _ = stream.flush();
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Verifies deliveries with the `standardwebhooks` reference library (PyPI),
/// installing it first if needed. One entry per `(secret, delivery)`: Ok or the
/// library's complaint.
pub fn verify_standard(items: &[(&str, &Received)]) -> Vec<Result<(), String>> {
    let have = Command::new("python3")
        .args(["-c", "import standardwebhooks"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !have {
        let status = Command::new(repo_root().join("scripts/install-webhook-test-deps.sh"))
            .status()
            .expect("run scripts/install-webhook-test-deps.sh");
        assert!(status.success(), "installing standardwebhooks failed");
    }
    let input: Vec<serde_json::Value> = items
        .iter()
        .map(|(secret, r)| {
            serde_json::json!({
                "secret": secret,
                "body": String::from_utf8_lossy(&r.body),
                "headers": r.headers,
            })
        })
        .collect();
    let mut child = Command::new("python3")
        .arg(
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("tests/support/verify_standard_webhook.py"),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(serde_json::to_string(&input).unwrap().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "verify_standard_webhook.py failed");
    let results: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    results
        .into_iter()
        .map(|r| {
            if r["ok"] == true {
                Ok(())
            } else {
                Err(r["error"].as_str().unwrap_or("?").to_string())
            }
        })
        .collect()
}

/// HMAC-SHA256 (RFC 2104) written out here, so the check does not lean on the
/// server's own crypto code.
fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let ipad: Vec<u8> = block.iter().map(|b| b ^ 0x36).collect();
    let opad: Vec<u8> = block.iter().map(|b| b ^ 0x5c).collect();
    let inner = Sha256::new()
        .chain_update(&ipad)
        .chain_update(msg)
        .finalize();
    Sha256::new()
        .chain_update(&opad)
        .chain_update(inner)
        .finalize()
        .into()
}

/// `X-ZiB-Signature` checked the way the contract's snippet does: `sha256=` + hex
/// HMAC-SHA256 of the raw body, keyed by the secret's text. During a rotation the
/// previous secret's signature is in `X-ZiB-Signature-Previous`.
pub fn zib_signature_ok(secret: &str, r: &Received) -> bool {
    let expected = format!(
        "sha256={}",
        hex::encode(hmac_sha256(secret.as_bytes(), &r.body))
    );
    r.header("x-zib-signature") == expected || r.header("x-zib-signature-previous") == expected
}

/// Only the current-secret header, as a receiver that knows one header checks it.
pub fn zib_primary_signature_ok(secret: &str, r: &Received) -> bool {
    let expected = format!(
        "sha256={}",
        hex::encode(hmac_sha256(secret.as_bytes(), &r.body))
    );
    r.header("x-zib-signature") == expected
}

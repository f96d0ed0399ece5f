//! The node's disk layout. Everything lives under one data directory:
//!
//! ```text
//! blobs/{first two hex chars}/{blob uuid}   stored envelopes and shards
//! incoming/{blob}.partial                   uploads being received
//! incoming/{blob}.parts/{n}                 multipart part markers (content: part size)
//! used-tokens/{jti}                         spent capability tokens (content: expiry)
//! distributed/{blob}                        uploads whose shards are all placed
//! pending/{blob}                            uploads stored here whose distribution the
//!                                           server has not acknowledged yet (content: size)
//! segments/{blob}                           blobs that are encrypted HLS segments, which
//!                                           anyone may read (`GET /v1/segments/{blob}`)
//! node.json                                 this node's identity
//! ```
//!
//! Only opaque blob ids and token ids appear here: the node never learns file ids,
//! keys or object names.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use zib_proto::BlobId;

/// Leftover partial uploads older than this are garbage: every upload token has long
/// expired by then, so nobody can finish them.
const STALE_INCOMING_AGE: Duration = Duration::from_secs(7 * 24 * 3600);
/// Spent-token records are kept a while past expiry to be safe against clock skew;
/// after that the signature check alone refuses the token.
const USED_TOKEN_GRACE_SECS: u64 = 24 * 3600;

/// Where a node with data directory `root` keeps a committed blob.
pub fn blob_path(root: &Path, blob: BlobId) -> PathBuf {
    let name = blob.to_string();
    root.join("blobs").join(&name[..2]).join(name)
}

pub struct BlobStore {
    root: PathBuf,
    used: AtomicU64,
}

impl BlobStore {
    /// Creates the directory layout and counts the bytes already stored.
    pub async fn open(root: PathBuf) -> io::Result<Self> {
        let store = Self {
            root,
            used: AtomicU64::new(0),
        };
        for dir in [
            "blobs",
            "incoming",
            "used-tokens",
            "distributed",
            "pending",
            "segments",
        ] {
            tokio::fs::create_dir_all(store.root.join(dir)).await?;
        }
        let root = store.root.clone();
        let used = tokio::task::spawn_blocking(move || {
            prune_stale(&root);
            walk_used_bytes(&root.join("blobs"))
        })
        .await
        .map_err(io::Error::other)??;
        store.used.store(used, Ordering::Relaxed);
        Ok(store)
    }

    pub fn used_bytes(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    pub fn blob_path(&self, blob: BlobId) -> PathBuf {
        blob_path(&self.root, blob)
    }

    pub fn partial_path(&self, blob: BlobId) -> PathBuf {
        self.root.join("incoming").join(format!("{blob}.partial"))
    }

    pub fn parts_dir(&self, blob: BlobId) -> PathBuf {
        self.root.join("incoming").join(format!("{blob}.parts"))
    }

    pub fn part_marker(&self, blob: BlobId, part: u32) -> PathBuf {
        self.parts_dir(blob).join(part.to_string())
    }

    fn distributed_marker(&self, blob: BlobId) -> PathBuf {
        self.root.join("distributed").join(blob.to_string())
    }

    fn pending_marker(&self, blob: BlobId) -> PathBuf {
        self.root.join("pending").join(blob.to_string())
    }

    fn segment_marker(&self, blob: BlobId) -> PathBuf {
        self.root.join("segments").join(blob.to_string())
    }

    fn used_token_path(&self, jti: &str) -> PathBuf {
        self.root.join("used-tokens").join(token_file_name(jti))
    }

    pub async fn exists(&self, blob: BlobId) -> bool {
        tokio::fs::try_exists(self.blob_path(blob))
            .await
            .unwrap_or(false)
    }

    /// Moves a fully received (and fsynced) file into the blob store.
    pub async fn commit(&self, from: &Path, blob: BlobId, size: u64) -> io::Result<()> {
        let dest = self.blob_path(blob);
        let dir = dest
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| self.root.join("blobs"));
        let new_dir = !tokio::fs::try_exists(&dir).await.unwrap_or(false);
        if new_dir {
            tokio::fs::create_dir_all(&dir).await?;
            // The fan-out directory's own entry must survive a crash too.
            sync_dir(self.root.join("blobs")).await?;
        }
        tokio::fs::rename(from, &dest).await?;
        sync_dir(dir).await?;
        self.used.fetch_add(size, Ordering::Relaxed);
        Ok(())
    }

    /// Stores bytes produced here (a shard this node keeps for itself).
    pub async fn put_bytes(&self, blob: BlobId, bytes: &[u8]) -> io::Result<()> {
        use tokio::io::AsyncWriteExt;
        let tmp = self
            .root
            .join("incoming")
            .join(format!("{blob}.{}.local", uuid::Uuid::new_v4().simple()));
        let result = async {
            let mut file = tokio::fs::File::create(&tmp).await?;
            file.write_all(bytes).await?;
            file.sync_all().await?;
            drop(file);
            self.commit(&tmp, blob, bytes.len() as u64).await
        }
        .await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&tmp).await;
        }
        result
    }

    /// Removes a blob and everything recorded about it. `Ok(false)`: it was not here.
    pub async fn delete(&self, blob: BlobId) -> io::Result<bool> {
        let path = self.blob_path(blob);
        let len = match tokio::fs::metadata(&path).await {
            Ok(m) => Some(m.len()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let removed = match tokio::fs::remove_file(&path).await {
            Ok(()) => true,
            Err(e) if e.kind() == io::ErrorKind::NotFound => false,
            Err(e) => return Err(e),
        };
        if removed {
            let len = len.unwrap_or(0);
            let _ = self
                .used
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |u| {
                    Some(u.saturating_sub(len))
                });
        }
        remove_if_present(&self.distributed_marker(blob)).await?;
        remove_if_present(&self.pending_marker(blob)).await?;
        remove_if_present(&self.segment_marker(blob)).await?;
        remove_if_present(&self.partial_path(blob)).await?;
        match tokio::fs::remove_dir_all(self.parts_dir(blob)).await {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        Ok(removed)
    }

    /// Records, durably and before the blob itself is committed, that `blob` is an
    /// encrypted HLS segment: the public segment route serves only these (a shard
    /// never leaves the node without the cluster token).
    pub async fn mark_segment(&self, blob: BlobId) -> io::Result<()> {
        write_durably(self.segment_marker(blob), Vec::new()).await
    }

    pub async fn is_segment(&self, blob: BlobId) -> bool {
        tokio::fs::try_exists(self.segment_marker(blob))
            .await
            .unwrap_or(false)
    }

    pub async fn is_distributed(&self, blob: BlobId) -> bool {
        tokio::fs::try_exists(self.distributed_marker(blob))
            .await
            .unwrap_or(false)
    }

    pub async fn mark_distributed(&self, blob: BlobId) -> io::Result<()> {
        write_durably(self.distributed_marker(blob), Vec::new()).await
    }

    /// Records, durably, that `blob` is an upload this node must distribute: written
    /// before the upload enters the blob store, so no crash can leave a stored upload
    /// that nothing will ever distribute.
    pub async fn mark_pending(&self, blob: BlobId, size: u64) -> io::Result<()> {
        write_durably(self.pending_marker(blob), size.to_string().into_bytes()).await
    }

    pub async fn is_pending(&self, blob: BlobId) -> bool {
        tokio::fs::try_exists(self.pending_marker(blob))
            .await
            .unwrap_or(false)
    }

    /// Not synced: if the removal is lost, the retry is answered 409 and dropped again.
    pub async fn clear_pending(&self, blob: BlobId) -> io::Result<()> {
        remove_if_present(&self.pending_marker(blob)).await
    }

    /// Uploads waiting for distribution (markers whose name is not a blob id are
    /// ignored: nothing of ours).
    pub async fn pending(&self) -> io::Result<Vec<BlobId>> {
        let dir = self.root.join("pending");
        tokio::task::spawn_blocking(move || {
            let mut blobs = Vec::new();
            for entry in std::fs::read_dir(dir)? {
                if let Some(blob) = entry?.file_name().to_str().and_then(|n| n.parse().ok()) {
                    blobs.push(blob);
                }
            }
            Ok(blobs)
        })
        .await
        .map_err(io::Error::other)?
    }

    /// Every stored blob (never a partial: those live under `incoming/`).
    pub async fn inventory(&self) -> io::Result<Vec<StoredBlob>> {
        let blobs = self.root.join("blobs");
        tokio::task::spawn_blocking(move || list_blobs(&blobs))
            .await
            .map_err(io::Error::other)?
    }

    /// Makes the names of files just created under `incoming/` (a multipart upload's
    /// partial file and parts directory) survive a crash.
    pub async fn sync_incoming(&self) -> io::Result<()> {
        sync_dir(self.root.join("incoming")).await
    }

    /// Records durably that this node holds a part (content: its size, then `coded`
    /// when its shards are on their holders rather than in the partial file). The
    /// names of the parts directory and the partial file are made as durable as
    /// the marker first: a marker whose bytes vanished would block the part's
    /// re-upload.
    pub async fn mark_part(&self, blob: BlobId, part: u32, held: PartHeld) -> io::Result<()> {
        tokio::fs::create_dir_all(self.parts_dir(blob)).await?;
        self.sync_incoming().await?;
        let content = match held.coded {
            true => format!("{} {PART_CODED}", held.size),
            false => held.size.to_string(),
        };
        write_durably(self.part_marker(blob, part), content.into_bytes()).await
    }

    /// How many parts of a multipart upload completed part by part are marked here
    /// (the highest part number); `None` when it has no part markers.
    pub async fn marked_parts(&self, blob: BlobId) -> Option<u32> {
        let mut entries = tokio::fs::read_dir(self.parts_dir(blob)).await.ok()?;
        let mut highest = None;
        while let Ok(Some(entry)) = entries.next_entry().await {
            if let Some(part) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            {
                highest = highest.max(Some(part));
            }
        }
        highest
    }

    /// What this node holds of a part: `None` when nothing (no marker, or one it
    /// cannot read).
    pub async fn part_held(&self, blob: BlobId, part: u32) -> Option<PartHeld> {
        let text = tokio::fs::read_to_string(self.part_marker(blob, part))
            .await
            .ok()?;
        let mut words = text.split_whitespace();
        let size = words.next()?.parse().ok()?;
        let coded = match words.next() {
            None => false,
            Some(PART_CODED) => true,
            Some(_) => return None,
        };
        Some(PartHeld { size, coded })
    }

    pub async fn token_used(&self, jti: &str) -> bool {
        tokio::fs::try_exists(self.used_token_path(jti))
            .await
            .unwrap_or(false)
    }

    /// Remembers a spent token durably, so a restart does not make it valid again.
    pub async fn mark_token_used(&self, jti: &str, expires_at: u64) -> io::Result<()> {
        write_durably(
            self.used_token_path(jti),
            expires_at.to_string().into_bytes(),
        )
        .await
    }
}

/// One entry of [`BlobStore::inventory`].
pub struct StoredBlob {
    pub blob: BlobId,
    pub size: u64,
    pub modified_at_ms: i64,
}

fn list_blobs(blobs: &Path) -> io::Result<Vec<StoredBlob>> {
    let mut out = Vec::new();
    for fanout in std::fs::read_dir(blobs)? {
        let fanout = fanout?;
        if !fanout.file_type()?.is_dir() {
            continue;
        }
        for entry in std::fs::read_dir(fanout.path())? {
            let entry = entry?;
            let Some(blob) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<BlobId>().ok())
            else {
                continue;
            };
            let meta = match entry.metadata() {
                Ok(meta) => meta,
                // Deleted while we were listing.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            if !meta.is_file() {
                continue;
            }
            let modified_at_ms = meta.modified().map(zib_util::time::unix_ms).unwrap_or(0);
            out.push(StoredBlob {
                blob,
                size: meta.len(),
                modified_at_ms,
            });
        }
    }
    Ok(out)
}

/// Small records that must survive a crash whole or not at all: write a temporary
/// file, fsync it, rename it into place, fsync the directory.
async fn write_durably(path: PathBuf, contents: Vec<u8>) -> io::Result<()> {
    tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let dir = path
            .parent()
            .map(Path::to_path_buf)
            .ok_or_else(|| io::Error::other("a record path has no directory"))?;
        let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
        tmp_name.push(format!(".{}.tmp", uuid::Uuid::new_v4().simple()));
        let tmp = dir.join(tmp_name);
        let written = (|| {
            let mut file = std::fs::File::create(&tmp)?;
            file.write_all(&contents)?;
            file.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            std::fs::File::open(&dir)?.sync_all()
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written
    })
    .await
    .map_err(io::Error::other)?
}

/// A jti is chosen by the server, but it becomes a file name here: anything that is
/// not plainly safe is hashed rather than trusted.
fn token_file_name(jti: &str) -> String {
    let safe = !jti.is_empty()
        && jti.len() <= 128
        && jti
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if safe {
        jti.to_string()
    } else {
        format!("h-{}", blake3::hash(jti.as_bytes()).to_hex())
    }
}

async fn remove_if_present(path: &Path) -> io::Result<()> {
    match tokio::fs::remove_file(path).await {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Makes a rename durable: the directory entry must reach the disk too.
async fn sync_dir(dir: PathBuf) -> io::Result<()> {
    tokio::task::spawn_blocking(move || std::fs::File::open(dir)?.sync_all())
        .await
        .map_err(io::Error::other)?
}

fn walk_used_bytes(blobs: &Path) -> io::Result<u64> {
    let mut total = 0u64;
    for fanout in std::fs::read_dir(blobs)? {
        let fanout = fanout?;
        if !fanout.file_type()?.is_dir() {
            continue;
        }
        for entry in std::fs::read_dir(fanout.path())? {
            let meta = entry?.metadata()?;
            if meta.is_file() {
                total += meta.len();
            }
        }
    }
    Ok(total)
}

/// Best effort: clearing old leftovers must never stop a node from starting.
fn prune_stale(root: &Path) {
    let now = SystemTime::now();
    if let Ok(entries) = std::fs::read_dir(root.join("incoming")) {
        for entry in entries.flatten() {
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| now.duration_since(t).ok())
                .is_some_and(|age| age > STALE_INCOMING_AGE);
            if old {
                let path = entry.path();
                let _ = if path.is_dir() {
                    std::fs::remove_dir_all(&path)
                } else {
                    std::fs::remove_file(&path)
                };
            }
        }
    }
    // Records a crash caught between write and rename: never read, only in the way.
    for dir in ["used-tokens", "distributed", "pending", "segments"] {
        if let Ok(entries) = std::fs::read_dir(root.join(dir)) {
            for entry in entries.flatten() {
                if entry.file_name().to_string_lossy().ends_with(".tmp") {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
    }
    let now_unix = crate::unix_now();
    if let Ok(entries) = std::fs::read_dir(root.join("used-tokens")) {
        for entry in entries.flatten() {
            let expired = std::fs::read_to_string(entry.path())
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .is_some_and(|exp| exp.saturating_add(USED_TOKEN_GRACE_SECS) < now_unix);
            if expired {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

const PART_CODED: &str = "coded";

/// A part of a multipart upload this node took.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartHeld {
    /// Its ciphertext bytes.
    pub size: u64,
    /// Erasure-coded and recorded as it arrived; otherwise kept in the partial
    /// file at its offset, to be coded at `complete`.
    pub coded: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsafe_token_ids_are_hashed() {
        assert_eq!(token_file_name("abc-DEF_123"), "abc-DEF_123");
        assert!(token_file_name("../../etc/passwd").starts_with("h-"));
        assert!(token_file_name("").starts_with("h-"));
        assert!(token_file_name("a+b/c=").starts_with("h-"));
    }

    #[tokio::test]
    async fn used_bytes_follow_puts_and_deletes_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path().to_path_buf()).await.unwrap();
        let a = BlobId::new_random();
        let b = BlobId::new_random();
        store.put_bytes(a, &[1u8; 100]).await.unwrap();
        store.put_bytes(b, &[2u8; 50]).await.unwrap();
        assert_eq!(store.used_bytes(), 150);
        let name = a.to_string();
        assert!(store
            .blob_path(a)
            .ends_with(format!("{}/{}", &name[..2], name)));

        let reopened = BlobStore::open(dir.path().to_path_buf()).await.unwrap();
        assert_eq!(reopened.used_bytes(), 150);
        assert!(reopened.delete(a).await.unwrap());
        assert!(!reopened.delete(a).await.unwrap());
        assert_eq!(reopened.used_bytes(), 50);
    }

    #[tokio::test]
    async fn pending_markers_are_listed_cleared_and_deleted_with_their_blob() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path().to_path_buf()).await.unwrap();
        let (a, b) = (BlobId::new_random(), BlobId::new_random());
        store.mark_pending(a, 10).await.unwrap();
        store.mark_pending(b, 20).await.unwrap();
        // A record a crash caught before its rename is never taken for one.
        std::fs::write(dir.path().join("pending").join(format!("{a}.x.tmp")), b"").unwrap();
        let mut listed = store.pending().await.unwrap();
        listed.sort();
        let mut expected = vec![a, b];
        expected.sort();
        assert_eq!(listed, expected);

        store.clear_pending(a).await.unwrap();
        store.clear_pending(a).await.unwrap();
        store.put_bytes(b, &[0u8; 20]).await.unwrap();
        assert!(store.delete(b).await.unwrap());
        assert!(store.pending().await.unwrap().is_empty());
        let reopened = BlobStore::open(dir.path().to_path_buf()).await.unwrap();
        assert_eq!(
            std::fs::read_dir(dir.path().join("pending"))
                .unwrap()
                .count(),
            0,
            "leftover temporary records are pruned at start"
        );
        assert!(reopened.inventory().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_segment_marker_survives_reopen_and_goes_with_its_blob() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path().to_path_buf()).await.unwrap();
        let (segment, shard) = (BlobId::new_random(), BlobId::new_random());
        store.mark_segment(segment).await.unwrap();
        store.put_bytes(segment, &[7u8; 30]).await.unwrap();
        store.put_bytes(shard, &[8u8; 30]).await.unwrap();
        let reopened = BlobStore::open(dir.path().to_path_buf()).await.unwrap();
        assert!(reopened.is_segment(segment).await);
        assert!(!reopened.is_segment(shard).await);
        assert!(reopened.delete(segment).await.unwrap());
        assert!(!reopened.is_segment(segment).await);
    }

    #[tokio::test]
    async fn spent_tokens_are_remembered_and_expired_ones_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path().to_path_buf()).await.unwrap();
        store.mark_token_used("fresh", u64::MAX / 2).await.unwrap();
        store.mark_token_used("ancient", 1).await.unwrap();
        assert!(store.token_used("fresh").await);
        let reopened = BlobStore::open(dir.path().to_path_buf()).await.unwrap();
        assert!(reopened.token_used("fresh").await);
        assert!(!reopened.token_used("ancient").await);
    }
}

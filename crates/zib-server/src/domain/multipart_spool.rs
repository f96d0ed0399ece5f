//! The S3 multipart spool: where sealed parts wait for CompleteMultipartUpload, one
//! directory per upload id (docs/s3.md). The S3 surface writes it; the collector
//! removes uploads left neither completed nor aborted.

use std::path::Path;
use std::time::{Duration, SystemTime};

/// The upload's record inside its directory.
pub const UPLOAD_FILE: &str = "upload.json";

/// Upload ids are 32 lowercase hex digits; anything else never names a directory.
pub fn is_upload_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Removes spools whose newest file is older than `max_age`: uploads neither
/// completed nor aborted. Returns how many it removed.
pub async fn collect_abandoned(spool_dir: &Path, max_age: Duration) -> std::io::Result<usize> {
    let mut entries = match tokio::fs::read_dir(spool_dir).await {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let now = SystemTime::now();
    let mut removed = 0;
    while let Some(entry) = entries.next_entry().await? {
        let dir = entry.path();
        if !entry.file_name().to_str().is_some_and(is_upload_id) {
            continue;
        }
        let mut newest = entry.metadata().await?.modified()?;
        let mut files = tokio::fs::read_dir(&dir).await?;
        while let Some(file) = files.next_entry().await? {
            if let Ok(modified) = file.metadata().await.and_then(|m| m.modified()) {
                newest = newest.max(modified);
            }
        }
        if now.duration_since(newest).unwrap_or_default() > max_age {
            tokio::fs::remove_dir_all(&dir).await?;
            removed += 1;
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn age(path: &Path, by: Duration) {
        let when = SystemTime::now() - by;
        let file = std::fs::File::options()
            .read(true)
            .open(path)
            .expect("open to set its time");
        file.set_modified(when).expect("set modified");
    }

    #[tokio::test]
    async fn only_spools_idle_past_the_expiry_are_collected() {
        let root = tempfile::tempdir().unwrap();
        let day = Duration::from_secs(24 * 3600);
        let old = root.path().join("0".repeat(32));
        let busy = root.path().join("1".repeat(32));
        let stranger = root.path().join("not-an-upload");
        for dir in [&old, &busy, &stranger] {
            std::fs::create_dir(dir).unwrap();
            std::fs::write(dir.join(UPLOAD_FILE), b"{}").unwrap();
            age(&dir.join(UPLOAD_FILE), 10 * day);
            age(dir, 10 * day);
        }
        // A part arrived recently: the upload is still in use.
        std::fs::write(busy.join("part-00001"), b"sealed").unwrap();

        assert_eq!(collect_abandoned(root.path(), 7 * day).await.unwrap(), 1);
        assert!(!old.exists());
        assert!(busy.exists());
        assert!(stranger.exists(), "only upload ids are ever removed");
        assert_eq!(
            collect_abandoned(&root.path().join("missing"), day)
                .await
                .unwrap(),
            0
        );
    }

    #[test]
    fn upload_ids_cannot_name_other_paths() {
        assert!(is_upload_id(&"a".repeat(32)));
        for bad in [
            "../../etc/passwd",
            "",
            &"A".repeat(32),
            &"a".repeat(33),
            "..",
            "0000000000000000000000000000000/",
        ] {
            assert!(!is_upload_id(bad), "{bad}");
        }
    }
}

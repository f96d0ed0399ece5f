//! Paging through a bucket the way S3 does: keys in byte order, keys sharing a
//! `delimiter` after the `prefix` rolled up into one common prefix, pages of
//! `max-keys` entries and an opaque cursor to resume after the last one.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use zib_meta::{ListFrom, S3ObjectEntry, Store};

/// S3's ceiling (and default) for one page.
pub const MAX_KEYS: u32 = 1000;

pub enum Entry {
    Object(S3ObjectEntry),
    CommonPrefix(String),
}

pub struct Page {
    pub entries: Vec<Entry>,
    pub truncated: bool,
    /// Where the next page starts, when truncated.
    pub next: Option<ListFrom>,
}

impl Page {
    /// The key or common prefix listed last: V1's `NextMarker`.
    pub fn last_name(&self) -> Option<&str> {
        self.entries.last().map(|e| match e {
            Entry::Object(o) => o.key.as_str(),
            Entry::CommonPrefix(p) => p.as_str(),
        })
    }
}

/// The least string greater than every string that starts with `prefix`; `None`
/// when no such string exists (the prefix is all `char::MAX`).
pub fn after_all_starting_with(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let mut next = last as u32 + 1;
        if (0xD800..0xE000).contains(&next) {
            next = 0xE000;
        }
        if let Some(c) = char::from_u32(next) {
            chars.push(c);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

/// The common prefix `key` rolls up into: through the first `delimiter` after
/// `prefix`, if there is one. `key` starts with `prefix`.
pub fn common_prefix<'k>(key: &'k str, prefix: &str, delimiter: Option<&str>) -> Option<&'k str> {
    let d = delimiter.filter(|d| !d.is_empty())?;
    let pos = key.get(prefix.len()..)?.find(d)?;
    Some(&key[..prefix.len() + pos + d.len()])
}

/// Where a V1 `marker` resumes: past the whole common prefix when it names one.
pub fn from_marker(marker: &str, prefix: &str, delimiter: Option<&str>) -> Option<ListFrom> {
    let names_prefix = delimiter.is_some_and(|d| {
        !d.is_empty()
            && marker.ends_with(d)
            && marker.starts_with(prefix)
            && marker.len() > prefix.len()
    });
    if names_prefix {
        after_all_starting_with(marker).map(ListFrom::AtOrAfter)
    } else {
        Some(ListFrom::After(marker.to_string()))
    }
}

/// A name as `encoding-type=url` carries it: every byte of its UTF-8 but the
/// unreserved `A-Z a-z 0-9 - . _ ~` and `/` percent-encoded, so a space is `%20` and
/// a `+` is `%2B`. Decoders that read `+` as a space (botocore, Go's
/// `QueryUnescape`) and those that do not read it back alike.
pub fn url_encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub fn encode_token(from: &ListFrom) -> String {
    let raw = match from {
        ListFrom::After(k) => format!("a{k}"),
        ListFrom::AtOrAfter(k) => format!("i{k}"),
    };
    URL_SAFE_NO_PAD.encode(raw.as_bytes())
}

pub fn decode_token(token: &str) -> Option<ListFrom> {
    let raw = String::from_utf8(URL_SAFE_NO_PAD.decode(token.as_bytes()).ok()?).ok()?;
    let mut chars = raw.chars();
    match chars.next()? {
        'a' => Some(ListFrom::After(chars.as_str().to_string())),
        'i' => Some(ListFrom::AtOrAfter(chars.as_str().to_string())),
        _ => None,
    }
}

/// One page of at most `max_keys` entries (objects and common prefixes together, as
/// S3 counts them). Each store query is bounded by what the page still needs.
pub async fn list_page(
    store: &Store,
    tenant_id: &str,
    bucket: &str,
    prefix: &str,
    delimiter: Option<&str>,
    from: ListFrom,
    max_keys: u32,
) -> zib_meta::Result<Page> {
    let mut entries = Vec::new();
    let mut from = Some(from);
    'pages: while let Some(cursor) = from.clone() {
        let room = max_keys.saturating_sub(entries.len() as u32);
        if room == 0 {
            let more = store
                .list_s3_objects_page(tenant_id, bucket, prefix, &cursor, 1)
                .await?;
            return Ok(Page {
                entries,
                truncated: !more.is_empty(),
                next: if more.is_empty() { None } else { Some(cursor) },
            });
        }
        let batch = room.min(MAX_KEYS);
        let rows = store
            .list_s3_objects_page(tenant_id, bucket, prefix, &cursor, batch)
            .await?;
        let exhausted = (rows.len() as u32) < batch;
        for row in rows {
            if let Some(common) = common_prefix(&row.key, prefix, delimiter) {
                let common = common.to_string();
                from = after_all_starting_with(&common).map(ListFrom::AtOrAfter);
                entries.push(Entry::CommonPrefix(common));
                // Keys inside the common prefix are skipped by seeking past it.
                continue 'pages;
            }
            from = Some(ListFrom::After(row.key.clone()));
            entries.push(Entry::Object(row));
        }
        if exhausted {
            break;
        }
    }
    Ok(Page {
        entries,
        truncated: false,
        next: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn successor_skips_everything_under_a_prefix() {
        assert_eq!(after_all_starting_with("a/").as_deref(), Some("a0"));
        assert_eq!(after_all_starting_with("").as_deref(), None);
        let s = after_all_starting_with("x\u{D7FF}").unwrap();
        assert_eq!(s, "x\u{E000}");
        assert_eq!(
            after_all_starting_with(&format!("a{}", char::MAX)).as_deref(),
            Some("b")
        );
    }

    #[test]
    fn url_encoding_keeps_plus_and_space_apart() {
        assert_eq!(
            url_encode("a+b c%/\u{e9}?#=&"),
            "a%2Bb%20c%25/%C3%A9%3F%23%3D%26"
        );
        assert_eq!(url_encode("plain-key_1.txt~"), "plain-key_1.txt~");
    }

    #[test]
    fn tokens_round_trip() {
        for from in [
            ListFrom::After("photos/2024/ä.jpg".into()),
            ListFrom::AtOrAfter("b0".into()),
        ] {
            assert_eq!(decode_token(&encode_token(&from)), Some(from));
        }
        assert_eq!(decode_token("!!"), None);
    }

    #[test]
    fn markers_naming_a_common_prefix_skip_it() {
        assert_eq!(
            from_marker("a/", "", Some("/")),
            Some(ListFrom::AtOrAfter("a0".into()))
        );
        assert_eq!(
            from_marker("a/b", "", Some("/")),
            Some(ListFrom::After("a/b".into()))
        );
        assert_eq!(
            from_marker("a/", "", None),
            Some(ListFrom::After("a/".into()))
        );
    }
}

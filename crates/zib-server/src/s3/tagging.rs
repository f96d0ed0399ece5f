//! Object tags: `x-amz-tagging` on PUT / CreateMultipartUpload, and
//! Put/Get/DeleteObjectTagging. A tag set is stored on the file row
//! (`Store::set_object_tags`), so a new file under the key starts with its own.

use s3s::dto::{Tag, TagSet, Tagging};
use s3s::{s3_error, S3Error, S3Result};
use zib_meta::Tags;
use zib_proto::FileId;

use crate::state::AppState;

use super::errors::internal;

/// S3's limits on a tag set.
pub const MAX_TAGS: usize = 10;
pub const MAX_KEY_CHARS: usize = 128;
pub const MAX_VALUE_CHARS: usize = 256;

fn invalid(message: String) -> S3Error {
    s3_error!(InvalidTag, "{message}")
}

/// Checks a tag set as S3 does: at most 10 tags, keys of 1 to 128 characters and
/// values of at most 256, no key twice, none in the reserved `aws:` namespace.
pub fn validate(tags: &Tags) -> S3Result<()> {
    if tags.len() > MAX_TAGS {
        return Err(invalid(format!(
            "Object tags cannot be greater than {MAX_TAGS} ({} given)",
            tags.len()
        )));
    }
    for (i, (key, value)) in tags.iter().enumerate() {
        let key_chars = key.chars().count();
        if key_chars == 0 || key_chars > MAX_KEY_CHARS {
            return Err(invalid(format!(
                "The TagKey you have provided is invalid: keys are 1 to {MAX_KEY_CHARS} characters ({key_chars} given)"
            )));
        }
        if value.chars().count() > MAX_VALUE_CHARS {
            return Err(invalid(format!(
                "The TagValue you have provided is invalid: values are at most {MAX_VALUE_CHARS} characters (tag {key:?})"
            )));
        }
        if key.to_ascii_lowercase().starts_with("aws:") {
            return Err(invalid(format!(
                "Your TagKey cannot be prefixed with aws: ({key:?})"
            )));
        }
        if key.chars().chain(value.chars()).any(char::is_control) {
            return Err(invalid(format!("tag {key:?} holds a control character")));
        }
        if tags[..i].iter().any(|(k, _)| k == key) {
            return Err(invalid(format!(
                "Cannot provide multiple Tags with the same key ({key:?})"
            )));
        }
    }
    Ok(())
}

/// `x-amz-tagging`: URL query form (`k1=v1&k2=v2`, percent-encoded).
pub fn parse_header(header: &str) -> S3Result<Tags> {
    let mut tags = Tags::new();
    for pair in header.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let decode = |s: &str| {
            form_decode(s)
                .ok_or_else(|| invalid(format!("x-amz-tagging is not URL-encoded UTF-8 ({s:?})")))
        };
        tags.push((decode(key)?, decode(value)?));
    }
    validate(&tags)?;
    Ok(tags)
}

/// Decodes `application/x-www-form-urlencoded` text (`+` is a space).
fn form_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

pub fn from_tagging(tagging: Tagging) -> S3Result<Tags> {
    let tags: Tags = tagging
        .tag_set
        .into_iter()
        .map(|t| (t.key.unwrap_or_default(), t.value.unwrap_or_default()))
        .collect();
    validate(&tags)?;
    Ok(tags)
}

pub fn tag_set(tags: Tags) -> TagSet {
    tags.into_iter()
        .map(|(key, value)| Tag {
            key: Some(key),
            value: Some(value),
        })
        .collect()
}

pub async fn put(state: &AppState, file_id: FileId, tagging: Tagging) -> S3Result<()> {
    let tags = from_tagging(tagging)?;
    state
        .store
        .set_object_tags(file_id, &tags)
        .await
        .map_err(internal)
}

pub async fn get(state: &AppState, file_id: FileId) -> S3Result<TagSet> {
    Ok(tag_set(
        state.store.object_tags(file_id).await.map_err(internal)?,
    ))
}

pub async fn delete(state: &AppState, file_id: FileId) -> S3Result<()> {
    state
        .store
        .set_object_tags(file_id, &Tags::new())
        .await
        .map_err(internal)
}

/// `x-amz-tagging-count` for GET/HEAD: absent when the object has no tag.
pub async fn count(state: &AppState, file_id: FileId) -> S3Result<Option<i32>> {
    let tags = state.store.object_tags(file_id).await.map_err(internal)?;
    Ok((!tags.is_empty()).then_some(tags.len() as i32))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Tags {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn header_is_url_encoded() {
        assert_eq!(
            parse_header("project=zib&note=a%20b+c%2B&empty=").unwrap(),
            pairs(&[("project", "zib"), ("note", "a b c+"), ("empty", "")])
        );
        assert!(parse_header("k=%zz").is_err());
        assert!(parse_header("").unwrap().is_empty());
    }

    #[test]
    fn s3_limits() {
        let eleven: Tags = (0..11).map(|i| (format!("k{i}"), String::new())).collect();
        let code = |t: &Tags| validate(t).unwrap_err().code().clone();
        assert_eq!(code(&eleven), s3s::S3ErrorCode::InvalidTag);
        assert!(validate(&eleven[..10].to_vec()).is_ok());
        assert!(validate(&pairs(&[(&"k".repeat(128), &"v".repeat(256))])).is_ok());
        assert!(validate(&pairs(&[(&"k".repeat(129), "v")])).is_err());
        assert!(validate(&pairs(&[("k", &"v".repeat(257))])).is_err());
        assert!(validate(&pairs(&[("", "v")])).is_err());
        assert!(validate(&pairs(&[("a", "1"), ("a", "2")])).is_err());
        assert!(validate(&pairs(&[("aws:x", "1")])).is_err());
    }

    #[test]
    fn tagging_headers_decode_as_forms_and_keep_s3_limits() {
        let tags = parse_header("a=1&b%2Fc=x+y%26z&empty=").ok();
        let want: Tags = vec![
            ("a".into(), "1".into()),
            ("b/c".into(), "x y&z".into()),
            ("empty".into(), String::new()),
        ];
        assert_eq!(tags, Some(want));
        assert_eq!(parse_header("").ok(), Some(Vec::new()));
        let eleven: Vec<String> = (0..11).map(|n| format!("k{n}=v")).collect();
        for bad in [
            "a=1&a=2".to_string(),
            "=v".to_string(),
            "k=%zz".to_string(),
            eleven.join("&"),
            format!("{}=v", "k".repeat(129)),
        ] {
            let code = parse_header(&bad).err().map(|e| e.code().clone());
            assert_eq!(code, Some(s3s::S3ErrorCode::InvalidTag), "{bad}");
        }
    }
}

//! Conditional reads (RFC 9110 §13): `If-Match`, `If-None-Match`, `If-Modified-Since`
//! and `If-Unmodified-Since`, evaluated in the RFC's order, which is also S3's. One
//! evaluation for every surface; each compares the ETag it serves itself (S3: the MD5
//! or the file id; the CDN: the file id, and also S3's, since a presigned S3 GET that
//! passed its conditions is redirected to the CDN with the same headers).

use http::{header, HeaderMap};
use time::format_description::FormatItem;
use time::macros::format_description;
use time::PrimitiveDateTime;

/// What a read should answer, given its preconditions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precondition {
    /// Serve the object.
    Proceed,
    /// 304: the client's copy is current (If-None-Match / If-Modified-Since).
    NotModified,
    /// 412: the object is not the one the client expects (If-Match / If-Unmodified-Since).
    Failed,
}

/// IMF-fixdate, the HTTP-date every current client sends (`Sun, 06 Nov 1994 08:49:37 GMT`).
const HTTP_DATE: &[FormatItem<'static>] = format_description!(
    "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
);

/// An HTTP-date as unix seconds; `None` for anything else (which RFC 9110 says to ignore).
pub fn parse_http_date(text: &str) -> Option<i64> {
    PrimitiveDateTime::parse(text.trim(), HTTP_DATE)
        .ok()
        .map(|t| t.assume_utc().unix_timestamp())
}

/// Unix milliseconds as an HTTP-date (`Last-Modified`).
pub fn http_date(ms: i64) -> String {
    zib_util::time::datetime(ms)
        .format(HTTP_DATE)
        .unwrap_or_default()
}

/// Whether a list of entity tags (`"a", W/"b"`, or `*`) names `etag` (unquoted). The
/// weak comparison (If-None-Match) ignores `W/`; the strong one (If-Match) refuses it.
pub fn etag_list_matches(list: &str, etag: &str, weak: bool) -> bool {
    list.split(',').map(str::trim).any(|candidate| {
        if candidate == "*" {
            return true;
        }
        let (is_weak, tag) = match candidate.strip_prefix("W/") {
            Some(rest) => (true, rest),
            None => (false, candidate),
        };
        if is_weak && !weak {
            return false;
        }
        // Quoted per RFC; some clients send bare tags, which S3 also accepts.
        let tag = tag
            .strip_prefix('"')
            .and_then(|t| t.strip_suffix('"'))
            .unwrap_or(tag);
        tag == etag
    })
}

/// Whether a request carries an entity-tag condition (worth looking up a second ETag).
pub fn has_etag_condition(headers: &HeaderMap) -> bool {
    headers.contains_key(header::IF_MATCH) || headers.contains_key(header::IF_NONE_MATCH)
}

/// Evaluates the four preconditions of a GET or HEAD for an object whose ETags
/// (unquoted; any of them names it) are `etags` and that was last modified at
/// `modified_ms`.
pub fn evaluate(headers: &HeaderMap, etags: &[&str], modified_ms: i64) -> Precondition {
    let text = |name: header::HeaderName| -> Option<String> {
        let values: Vec<&str> = headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        (!values.is_empty()).then(|| values.join(","))
    };
    // HTTP dates have whole seconds: compare at that precision.
    let modified = modified_ms.div_euclid(1000);
    // 1. If-Match, else 2. If-Unmodified-Since.
    if let Some(list) = text(header::IF_MATCH) {
        if !etags
            .iter()
            .any(|etag| etag_list_matches(&list, etag, false))
        {
            return Precondition::Failed;
        }
    } else if let Some(since) = text(header::IF_UNMODIFIED_SINCE).and_then(|d| parse_http_date(&d))
    {
        if modified > since {
            return Precondition::Failed;
        }
    }
    // 3. If-None-Match, else 4. If-Modified-Since.
    if let Some(list) = text(header::IF_NONE_MATCH) {
        if etags
            .iter()
            .any(|etag| etag_list_matches(&list, etag, true))
        {
            return Precondition::NotModified;
        }
    } else if let Some(since) = text(header::IF_MODIFIED_SINCE).and_then(|d| parse_http_date(&d)) {
        if modified <= since {
            return Precondition::NotModified;
        }
    }
    Precondition::Proceed
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    const MODIFIED_MS: i64 = 784_111_777_000; // Sun, 06 Nov 1994 08:49:37 GMT

    fn with(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.append(*name, HeaderValue::from_str(value).unwrap());
        }
        h
    }

    fn eval(pairs: &[(&'static str, &str)]) -> Precondition {
        evaluate(&with(pairs), &["abc"], MODIFIED_MS + 400)
    }

    #[test]
    fn dates_round_trip_and_garbage_is_ignored() {
        assert_eq!(http_date(MODIFIED_MS), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(
            parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(MODIFIED_MS / 1000)
        );
        assert_eq!(parse_http_date("yesterday"), None);
        assert_eq!(
            eval(&[("if-modified-since", "yesterday")]),
            Precondition::Proceed
        );
    }

    #[test]
    fn each_header_alone() {
        use Precondition::*;
        assert_eq!(eval(&[]), Proceed);
        assert_eq!(eval(&[("if-match", "\"abc\"")]), Proceed);
        assert_eq!(eval(&[("if-match", "\"x\", \"abc\"")]), Proceed);
        assert_eq!(eval(&[("if-match", "*")]), Proceed);
        assert_eq!(eval(&[("if-match", "\"other\"")]), Failed);
        assert_eq!(eval(&[("if-match", "W/\"abc\"")]), Failed);
        assert_eq!(eval(&[("if-none-match", "\"abc\"")]), NotModified);
        assert_eq!(eval(&[("if-none-match", "W/\"abc\"")]), NotModified);
        assert_eq!(eval(&[("if-none-match", "*")]), NotModified);
        assert_eq!(eval(&[("if-none-match", "\"other\"")]), Proceed);
        let at = "Sun, 06 Nov 1994 08:49:37 GMT";
        let before = "Sun, 06 Nov 1994 08:49:36 GMT";
        assert_eq!(eval(&[("if-modified-since", at)]), NotModified);
        assert_eq!(eval(&[("if-modified-since", before)]), Proceed);
        assert_eq!(eval(&[("if-unmodified-since", at)]), Proceed);
        assert_eq!(eval(&[("if-unmodified-since", before)]), Failed);
    }

    #[test]
    fn any_of_the_etags_names_the_object() {
        let h = with(&[("if-match", "\"md5\"")]);
        assert_eq!(evaluate(&h, &["id", "md5"], 0), Precondition::Proceed);
        assert_eq!(evaluate(&h, &["id"], 0), Precondition::Failed);
    }

    #[test]
    fn precedence_is_rfc_9110s() {
        use Precondition::*;
        let before = "Sun, 06 Nov 1994 08:49:36 GMT";
        let at = "Sun, 06 Nov 1994 08:49:37 GMT";
        // If-Match that holds makes If-Unmodified-Since irrelevant (S3 answers 200).
        assert_eq!(
            eval(&[("if-match", "\"abc\""), ("if-unmodified-since", before)]),
            Proceed
        );
        // If-None-Match that fails makes If-Modified-Since irrelevant.
        assert_eq!(
            eval(&[("if-none-match", "\"other\""), ("if-modified-since", at)]),
            Proceed
        );
        // 412 wins over 304.
        assert_eq!(
            eval(&[("if-match", "\"other\""), ("if-none-match", "\"abc\"")]),
            Failed
        );
    }
}

//! `Range: bytes=...` for a single range (RFC 9110 §14.1.2). Several ranges are
//! answered with the whole body, which the RFC allows.

use std::ops::Range;

#[derive(Debug, PartialEq, Eq)]
pub enum RangeRequest {
    /// No (usable) Range header: the whole body.
    Full,
    /// One satisfiable range, end exclusive.
    Partial(Range<u64>),
    /// A well-formed range that lies outside the body.
    Unsatisfiable,
}

pub fn parse(header: Option<&str>, len: u64) -> RangeRequest {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return RangeRequest::Full;
    };
    if spec.contains(',') {
        return RangeRequest::Full;
    }
    let Some((start, end)) = spec.trim().split_once('-') else {
        return RangeRequest::Full;
    };
    let (start, end) = (start.trim(), end.trim());
    match (start.is_empty(), end.is_empty()) {
        // bytes=-N: the last N bytes.
        (true, false) => match end.parse::<u64>() {
            Ok(0) => RangeRequest::Unsatisfiable,
            // RFC 9110 §14.1.1: on an empty representation a suffix range is the one
            // satisfiable form. No `Content-Range` can name an empty part, so the
            // answer is the whole (empty) body, a 200, as S3 answers (tail readers
            // such as Parquet's ask this of every file, empty ones included).
            Ok(_) if len == 0 => RangeRequest::Full,
            Ok(n) => RangeRequest::Partial(len.saturating_sub(n)..len),
            Err(_) => RangeRequest::Full,
        },
        (false, _) => {
            let Ok(first) = start.parse::<u64>() else {
                return RangeRequest::Full;
            };
            let last = if end.is_empty() {
                u64::MAX
            } else {
                match end.parse::<u64>() {
                    Ok(v) => v,
                    Err(_) => return RangeRequest::Full,
                }
            };
            if last < first {
                return RangeRequest::Full;
            }
            if first >= len {
                return RangeRequest::Unsatisfiable;
            }
            RangeRequest::Partial(first..last.saturating_add(1).min(len))
        }
        (true, true) => RangeRequest::Full,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse(None, 10), RangeRequest::Full);
        assert_eq!(parse(Some("bytes=0-0"), 10), RangeRequest::Partial(0..1));
        assert_eq!(parse(Some("bytes=2-"), 10), RangeRequest::Partial(2..10));
        assert_eq!(parse(Some("bytes=-3"), 10), RangeRequest::Partial(7..10));
        assert_eq!(parse(Some("bytes=-30"), 10), RangeRequest::Partial(0..10));
        assert_eq!(parse(Some("bytes=5-100"), 10), RangeRequest::Partial(5..10));
        assert_eq!(parse(Some("bytes=10-"), 10), RangeRequest::Unsatisfiable);
        assert_eq!(parse(Some("bytes=-0"), 10), RangeRequest::Unsatisfiable);
        assert_eq!(parse(Some("bytes=5-2"), 10), RangeRequest::Full);
        assert_eq!(parse(Some("bytes=0-1,4-5"), 10), RangeRequest::Full);
        assert_eq!(parse(Some("items=0-1"), 10), RangeRequest::Full);
        assert_eq!(parse(Some("bytes=x-1"), 10), RangeRequest::Full);
    }

    /// S3's answers on an empty object: a range with a first byte is 416
    /// `InvalidRange`, a suffix range the empty body (200).
    #[test]
    fn ranges_on_an_empty_body() {
        assert_eq!(parse(None, 0), RangeRequest::Full);
        assert_eq!(parse(Some("bytes=0-0"), 0), RangeRequest::Unsatisfiable);
        assert_eq!(parse(Some("bytes=0-"), 0), RangeRequest::Unsatisfiable);
        assert_eq!(parse(Some("bytes=3-9"), 0), RangeRequest::Unsatisfiable);
        assert_eq!(parse(Some("bytes=-0"), 0), RangeRequest::Unsatisfiable);
        assert_eq!(parse(Some("bytes=-1"), 0), RangeRequest::Full);
        assert_eq!(parse(Some("bytes=-512"), 0), RangeRequest::Full);
    }
}

//! Reading a file's envelope ciphertext as stored (header, sealed chunks), from its
//! shards exactly as the plaintext read gets them: for an encoding node, which holds
//! the data key and decrypts in memory, so no plaintext crosses the wire. One
//! envelope's here; `ciphertext_stream` (in `read`) picks the envelopes of a file.

use bytes::Bytes;
use futures::{stream, Stream, StreamExt};

use super::segments::{Check, SegmentSource};
use crate::error::{ApiResult, InternalError};

/// Envelope bytes `window` (within it) of one envelope's segments.
pub(super) async fn envelope_ciphertext(
    source: SegmentSource,
    window: std::ops::Range<u64>,
) -> ApiResult<impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static> {
    let source = std::sync::Arc::new(source);
    let segment_at = |pos: u64| {
        source
            .layout
            .segment_at(pos)
            .ok_or_else(|| InternalError::Other(format!("no segment holds byte {pos}")))
    };
    let first_seg = segment_at(window.start)?;
    let last_seg = segment_at(window.end - 1)?;
    if let Some(e) = source.unavailable_segment(first_seg..last_seg + 1) {
        return Err(e.into());
    }
    let piece = move |source: std::sync::Arc<super::segments::SegmentSource>, s: u32| {
        let window = window.clone();
        async move {
            let r = source.layout.segment_range(s);
            let want = r.start.max(window.start)..r.end.min(window.end);
            let (offset, bytes) = source.read(s, want.clone(), Check::Eagerly).await?;
            let from = usize::try_from(want.start - offset).unwrap_or(usize::MAX);
            let to = usize::try_from(want.end - offset).unwrap_or(usize::MAX);
            match bytes.get(from..to) {
                Some(_) => Ok(bytes.freeze().slice(from..to)),
                None => Err(super::segments::SegmentError::Rebuild {
                    segment: s,
                    reason: format!("the segment read gave {} bytes from {offset}", bytes.len()),
                }),
            }
        }
    };
    let first = piece(source.clone(), first_seg).await?;
    let rest = stream::iter(first_seg + 1..=last_seg)
        .map(move |s| piece(source.clone(), s))
        .buffered(2)
        .map(|r| r.map_err(|e| std::io::Error::other(e.to_string())));
    Ok(stream::once(async move { Ok(first) }).chain(rest))
}

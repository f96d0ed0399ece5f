//! Reading a file stored as one envelope per part (an S3 multipart upload): a read
//! is cut at part boundaries, and each piece is read from its part's segments and
//! opened with its part's nonce prefix, as a whole file's envelope is. The first
//! piece is opened before this returns (so a file that cannot be read answers a
//! clean error first); a later part that fails cuts the stream short.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use futures::stream::{self, BoxStream};
use futures::StreamExt;
use zib_crypto::envelope::Header;
use zib_crypto::DataKey;
use zib_meta::{FilePart, FileRow};

use super::ciphertext::envelope_ciphertext;
use super::{envelope_plaintext, segment_source, Envelope, Segments};
use crate::domain::directory::NodeDirectory;
use crate::error::{ApiResult, InternalError};
use crate::state::AppState;

type Bodies = BoxStream<'static, Result<Bytes, std::io::Error>>;

/// The parts `window` touches (offsets counted by `len`), each with its own window.
fn pieces(
    parts: Vec<FilePart>,
    window: &Range<u64>,
    len: impl Fn(&FilePart) -> u64,
) -> Vec<(FilePart, Range<u64>)> {
    let mut at = 0;
    let mut out = Vec::new();
    for part in parts {
        let span = at..at + len(&part);
        at = span.end;
        let start = window.start.max(span.start);
        let end = window.end.min(span.end);
        if start < end {
            out.push((part, start - span.start..end - span.start));
        }
    }
    out
}

fn header_of(file: &FileRow, part: &FilePart) -> Result<Header, InternalError> {
    let nonce_prefix: [u8; 7] = part.nonce_prefix.as_slice().try_into().map_err(|_| {
        InternalError::Other(format!(
            "part {} of file {} has a malformed nonce prefix",
            part.number, file.file_id
        ))
    })?;
    Ok(Header {
        chunk_size: file.chunk_size,
        nonce_prefix,
    })
}

/// Plaintext bytes `window` of a file stored in parts.
pub(super) async fn plaintext_stream(
    state: &AppState,
    file: &FileRow,
    dek: DataKey,
    window: Range<u64>,
) -> ApiResult<Bodies> {
    let parts = state.store.file_parts(file.file_id).await?;
    let pieces = pieces(parts, &window, |p| p.size);
    in_pieces(
        state,
        file,
        pieces,
        move |state, directory, file, part, window| {
            let dek = dek.clone();
            async move {
                let envelope = Envelope {
                    header: header_of(&file, &part)?,
                    size: part.size,
                    source: segment_source(
                        &state,
                        &directory,
                        &file,
                        &Segments::part(&file, &part),
                    )
                    .await?,
                };
                envelope_plaintext(file.file_id, &dek, envelope, window)
                    .await
                    .map(StreamExt::boxed)
            }
        },
    )
    .await
}

/// Envelope bytes `window` of a file stored in parts: its parts' envelopes, one
/// after the other.
pub(super) async fn ciphertext_stream(
    state: &AppState,
    file: &FileRow,
    window: Range<u64>,
) -> ApiResult<Bodies> {
    let parts = state.store.file_parts(file.file_id).await?;
    let pieces = pieces(parts, &window, |p| p.ciphertext_size);
    if pieces.is_empty() {
        return Err(InternalError::Other(format!(
            "ciphertext window {window:?} is outside the parts of file {}",
            file.file_id
        ))
        .into());
    }
    in_pieces(
        state,
        file,
        pieces,
        |state, directory, file, part, window| async move {
            let source =
                segment_source(&state, &directory, &file, &Segments::part(&file, &part)).await?;
            envelope_ciphertext(source, window)
                .await
                .map(StreamExt::boxed)
        },
    )
    .await
}

/// The pieces' bodies, one after the other: the first opened now, each later one
/// when the stream reaches it.
async fn in_pieces<F, Fut>(
    state: &AppState,
    file: &FileRow,
    pieces: Vec<(FilePart, Range<u64>)>,
    open: F,
) -> ApiResult<Bodies>
where
    F: Fn(AppState, Arc<NodeDirectory>, FileRow, FilePart, Range<u64>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ApiResult<Bodies>> + Send + 'static,
{
    let mut pieces = pieces.into_iter();
    let Some(first) = pieces.next() else {
        return Ok(stream::empty().boxed());
    };
    // One snapshot of the nodes for every part, as for a whole file's read.
    let directory = Arc::new(NodeDirectory::load(state).await?);
    let (state, file) = (state.clone(), file.clone());
    let open = move |(part, window): (FilePart, Range<u64>)| {
        open(state.clone(), directory.clone(), file.clone(), part, window)
    };
    let head = open(first).await?;
    Ok(head.chain(later(pieces, open)).boxed())
}

/// The pieces after the first, each opened when the stream reaches it; one that
/// cannot be opened ends the stream with its error.
fn later<I, F, Fut>(
    pieces: I,
    open: F,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>>
where
    I: Iterator<Item = (FilePart, Range<u64>)> + Send + 'static,
    F: Fn((FilePart, Range<u64>)) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ApiResult<Bodies>> + Send + 'static,
{
    stream::iter(pieces)
        .then(open)
        .map(|opened| match opened {
            Ok(body) => body,
            Err(e) => {
                tracing::error!(error = %e, "a later part of a file could not be read");
                stream::once(async move { Err(std::io::Error::other(e.to_string())) }).boxed()
            }
        })
        .flatten()
        .scan(false, |failed, item| {
            // Nothing after an error: the client must see a short body, never a gap.
            if *failed {
                return futures::future::ready(None);
            }
            *failed = item.is_err();
            futures::future::ready(Some(item))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(number: u32, size: u64) -> FilePart {
        FilePart {
            number,
            first_segment: 0,
            segment_count: 1,
            size,
            ciphertext_size: size + 10,
            nonce_prefix: vec![0; 7],
            md5: String::new(),
            checksums: Default::default(),
            created_at: 0,
        }
    }

    #[test]
    fn a_window_is_cut_at_part_boundaries() {
        let parts = vec![part(1, 100), part(2, 0), part(3, 50), part(5, 30)];
        let cut = |w: Range<u64>| {
            pieces(parts.clone(), &w, |p| p.size)
                .into_iter()
                .map(|(p, r)| (p.number, r))
                .collect::<Vec<_>>()
        };
        assert_eq!(cut(0..180), vec![(1, 0..100), (3, 0..50), (5, 0..30)]);
        assert_eq!(cut(99..101), vec![(1, 99..100), (3, 0..1)]);
        assert_eq!(cut(150..151), vec![(5, 0..1)]);
        assert_eq!(cut(120..140), vec![(3, 20..40)]);
        assert!(cut(180..180).is_empty());
        // Ciphertext offsets count each part's envelope.
        let by_envelope: Vec<_> = pieces(parts.clone(), &(105..125), |p| p.ciphertext_size)
            .into_iter()
            .map(|(p, r)| (p.number, r))
            .collect();
        assert_eq!(by_envelope, vec![(1, 105..110), (2, 0..10), (3, 0..5)]);
    }
}

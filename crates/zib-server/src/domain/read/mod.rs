//! Reading a file back: its shards fetched from their holders (reading around lost
//! or corrupt ones, and queueing their repair), joined, and decrypted as a stream.
//! The CDN serves it over HTTP; the S3 gateway's GetObject serves the same stream.
//! An encoding node reads the ciphertext itself (`ciphertext_stream`), from the
//! same shard reads (`segment_source`).

mod ciphertext;
mod parts;
pub mod range;
mod segments;

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::{stream, Stream, StreamExt};
use tokio_util::task::AbortOnDropHandle;
use zib_crypto::envelope::{Header, Layout as EnvelopeLayout, Opener};
use zib_erasure::Codec;
use zib_meta::FileRow;

use super::directory::NodeDirectory;
use super::layout::layout_of;
use crate::error::{ApiError, ApiResult, InternalError};
use crate::state::AppState;
use segments::{Check, SegmentError, SegmentSource, ShardLocation};

/// Segments fetched ahead of the one being decrypted.
const SEGMENTS_IN_FLIGHT: usize = 4;

impl From<SegmentError> for ApiError {
    fn from(e: SegmentError) -> Self {
        ApiError::Unavailable(format!("file is temporarily unreadable: {e}"))
    }
}

/// Reads stopped because the file's bytes do not decrypt although every shard
/// matches its hash (and files whose data key does not unwrap): answered `502
/// unreadable` when it is the first chunk, cut short after that. Process-wide, as
/// a process runs one server; `/metrics` reports it as `zib_unreadable_reads`.
pub static UNREADABLE_READS: std::sync::LazyLock<prometheus_client::metrics::counter::Counter> =
    std::sync::LazyLock::new(Default::default);

/// Why a read stopped.
#[derive(Debug, thiserror::Error)]
enum ReadFailure {
    /// A chunk failed authentication even read with every shard BLAKE3-checked:
    /// the stored bytes are whole but are not this file's envelope under its key.
    #[error("chunk {chunk} does not decrypt although every shard matches its hash: {reason}")]
    Unreadable { chunk: u64, reason: String },
    /// Too few shards could be had, or a read task failed.
    #[error("{0}")]
    Unavailable(String),
}

impl ReadFailure {
    /// Counted once per read, where the read ends.
    fn into_io(self) -> std::io::Error {
        if matches!(self, ReadFailure::Unreadable { .. }) {
            UNREADABLE_READS.inc();
        }
        std::io::Error::other(self.to_string())
    }
}

/// The envelope header `file` was issued with (its chunk size and nonce prefix).
pub fn envelope_header(file: &FileRow) -> Result<Header, InternalError> {
    let nonce_prefix: [u8; 7] = file.nonce_prefix.as_slice().try_into().map_err(|_| {
        InternalError::Other(format!(
            "file {} has a malformed nonce prefix",
            file.file_id
        ))
    })?;
    Ok(Header {
        chunk_size: file.chunk_size,
        nonce_prefix,
    })
}

/// Streams plaintext bytes `window` of `file`. The first plaintext bytes (the
/// first chunk of the window, decrypted) are had before this returns, so a file
/// that cannot be read at all answers a clean error before any response head:
/// `503 unavailable` for missing shards, `502 unreadable` for bytes that do not
/// decrypt. A later failure aborts the body (the client sees a short read, never
/// wrong bytes).
pub async fn plaintext_stream(
    state: &AppState,
    file: &FileRow,
    window: std::ops::Range<u64>,
) -> ApiResult<stream::BoxStream<'static, Result<Bytes, std::io::Error>>> {
    let dek = state
        .config
        .master_key
        .unwrap(&file.wrapped_dek, file.file_id.0.as_bytes())
        .map_err(|e| {
            tracing::error!(file = %file.file_id, error = %e, "the file's data key does not unwrap");
            UNREADABLE_READS.inc();
            ApiError::Unreadable(format!(
                "file {} is unreadable: its data key does not unwrap under this server's master key",
                file.file_id
            ))
        })?;
    if file.in_listed_parts() {
        return parts::plaintext_stream(state, file, dek, window).await;
    }
    let envelope = Envelope {
        header: envelope_header(file)?,
        size: file.size,
        source: segment_source(
            state,
            &NodeDirectory::load(state).await?,
            file,
            &Segments::whole(file),
        )
        .await?,
    };
    envelope_plaintext(file.file_id, &dek, envelope, window)
        .await
        .map(StreamExt::boxed)
}

/// Streams envelope bytes `window` of `file` (offsets into the ciphertext). Every
/// shard is BLAKE3-checked (the bytes are not authenticated here), so a corrupt one
/// is read around and queued for repair. The first segment's bytes are had before
/// this returns, so a file that cannot be read answers a clean `503` first; a later
/// failure cuts the body short.
pub async fn ciphertext_stream(
    state: &AppState,
    file: &FileRow,
    window: std::ops::Range<u64>,
) -> ApiResult<stream::BoxStream<'static, Result<Bytes, std::io::Error>>> {
    if window.start >= window.end || window.end > file.ciphertext_size {
        return Err(InternalError::Other(format!(
            "ciphertext window {window:?} outside the envelope of {} bytes",
            file.ciphertext_size
        ))
        .into());
    }
    if file.in_listed_parts() {
        return parts::ciphertext_stream(state, file, window).await;
    }
    let source = segment_source(
        state,
        &NodeDirectory::load(state).await?,
        file,
        &Segments::whole(file),
    )
    .await?;
    ciphertext::envelope_ciphertext(source, window)
        .await
        .map(StreamExt::boxed)
}

/// One envelope of a file, and where its ciphertext is: the whole file, or one part
/// of a file stored in parts.
struct Envelope {
    header: Header,
    /// Plaintext bytes.
    size: u64,
    source: SegmentSource,
}

/// Plaintext bytes `window` of one envelope (see [`plaintext_stream`]).
async fn envelope_plaintext(
    file_id: zib_proto::FileId,
    dek: &zib_crypto::DataKey,
    envelope: Envelope,
    window: std::ops::Range<u64>,
) -> ApiResult<impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static> {
    let Envelope {
        header,
        size: file_size,
        source,
    } = envelope;
    let envelope = header.layout();
    let opener = Opener::new(dek, header);

    let chunks = envelope
        .chunks_covering(window.clone(), file_size)
        .map_err(|e| InternalError::Other(e.to_string()))?;
    let cipher_start = envelope.chunk_offset(chunks.start);
    let cipher_end = envelope.chunk_offset(chunks.end - 1)
        + envelope.sealed_chunk_len(chunks.end - 1, file_size);

    let source = Arc::new(source);
    let erasure = source.layout;
    let segment_at = |pos: u64| {
        erasure
            .segment_at(pos)
            .ok_or_else(|| InternalError::Other(format!("no segment holds byte {pos}")))
    };
    let first_seg = segment_at(cipher_start)?;
    let last_seg = segment_at(cipher_end - 1)?;
    if let Some(e) = source.unavailable_segment(first_seg..last_seg + 1) {
        return Err(e.into());
    }
    let windows: Vec<(u32, std::ops::Range<u64>)> = (first_seg..=last_seg)
        .map(|s| {
            let r = erasure.segment_range(s);
            (s, r.start.max(cipher_start)..r.end.min(cipher_end))
        })
        .collect();

    let decrypt = Arc::new(PieceDecryptor {
        opener,
        envelope,
        file_size,
        chunks,
        window,
    });
    let joiner = PieceJoiner {
        decrypt: decrypt.clone(),
        source: source.clone(),
        carry: BytesMut::new(),
        carry_parts: Vec::new(),
        carry_chunk: None,
        done: false,
    };
    let mut windows = windows.into_iter();
    let Some((s0, w0)) = windows.next() else {
        return Err(InternalError::Other("empty read plan".into()).into());
    };
    let first = read_piece(&source, &decrypt, s0, w0).await?;
    // Each later segment is fetched and decrypted by a task of its own, so reads and
    // AES run on every core and ahead of the socket, not only when the client asks
    // for more.
    let rest = stream::iter(windows)
        .map(move |(s, w)| {
            let source = source.clone();
            let decrypt = decrypt.clone();
            AbortOnDropHandle::new(tokio::spawn(async move {
                read_piece(&source, &decrypt, s, w).await
            }))
        })
        .buffered(SEGMENTS_IN_FLIGHT)
        .map(|joined| match joined {
            Ok(piece) => piece.map_err(|e| ReadFailure::Unavailable(e.to_string())),
            Err(e) => Err(ReadFailure::Unavailable(format!(
                "a segment read failed: {e}"
            ))),
        });
    let pieces = stream::once(async move { Ok(first) }).chain(rest);

    let plaintext = stream::unfold(
        (Box::pin(pieces), joiner),
        |(mut pieces, mut joiner)| async move {
            if joiner.done {
                return None;
            }
            let out = match pieces.next().await? {
                Ok(piece) => joiner.join(piece).await,
                Err(e) => {
                    joiner.done = true;
                    vec![Err(e)]
                }
            };
            Some((stream::iter(out), (pieces, joiner)))
        },
    );
    let mut plaintext = Box::pin(plaintext.flatten());
    // Before the response head: once a 200 is sent, a failure can only cut the body
    // short, which clients see as an empty reply or a truncated download.
    let first = match plaintext.next().await {
        Some(Ok(bytes)) => Some(bytes),
        Some(Err(e)) => {
            tracing::error!(file = %file_id, error = %e, "read refused before the first byte");
            return Err(match e {
                ReadFailure::Unreadable { .. } => {
                    UNREADABLE_READS.inc();
                    ApiError::Unreadable(format!("file {file_id} is unreadable: {e}"))
                }
                ReadFailure::Unavailable(reason) => {
                    ApiError::Unavailable(format!("file is temporarily unreadable: {reason}"))
                }
            });
        }
        None => None,
    };
    Ok(stream::iter(first.map(Ok))
        .chain(plaintext)
        .map(move |item| {
            item.map_err(|e| {
                tracing::error!(file = %file_id, error = %e, "read aborted mid-stream");
                e.into_io()
            })
        }))
}

/// Reads and decrypts one segment's window; if a chunk inside it fails
/// authentication, reads it again with every shard BLAKE3-checked (which reads
/// around a corrupt shard and queues its repair) and decrypts that.
async fn read_piece(
    source: &SegmentSource,
    decrypt: &PieceDecryptor,
    segment: u32,
    window: std::ops::Range<u64>,
) -> Result<DecryptedPiece, SegmentError> {
    let (offset, bytes) = source.read(segment, window.clone(), Check::Lazily).await?;
    let piece = decrypt.decrypt(segment, window.clone(), offset, bytes, false);
    if !piece.failed() {
        return Ok(piece);
    }
    tracing::warn!(
        segment,
        "a chunk failed authentication; reading the segment again with every shard checked"
    );
    let (offset, bytes) = source.read(segment, window.clone(), Check::Eagerly).await?;
    Ok(decrypt.decrypt(segment, window, offset, bytes, true))
}

/// Where some ciphertext bytes came from, to read them again checked.
#[derive(Clone)]
struct Origin {
    segment: u32,
    window: std::ops::Range<u64>,
    bytes: std::ops::Range<u64>,
}

/// What decrypting one piece of ciphertext (cut at arbitrary offsets) gives.
struct DecryptedPiece {
    /// Ciphertext before the first chunk that starts in the piece: the end of a
    /// chunk begun in earlier pieces.
    head: BytesMut,
    head_origin: Origin,
    /// Plaintext of the chunks wholly inside the piece, clipped to the window; an
    /// `Err` ends the read.
    plain: Vec<Result<Bytes, ReadFailure>>,
    /// The chunk that continues in the next piece: its index and first bytes.
    tail: (u64, BytesMut),
    tail_origin: Origin,
}

impl DecryptedPiece {
    fn failed(&self) -> bool {
        self.plain.iter().any(Result::is_err)
    }
}

/// Decrypts the chunks wholly inside a piece, in place.
struct PieceDecryptor {
    opener: Opener,
    envelope: EnvelopeLayout,
    file_size: u64,
    /// The chunks the window needs.
    chunks: std::ops::Range<u64>,
    window: std::ops::Range<u64>,
}

impl PieceDecryptor {
    /// `last_try`: whether a failing chunk is final (logged as an error) or will be
    /// read again checked.
    fn decrypt(
        &self,
        segment: u32,
        window: std::ops::Range<u64>,
        offset: u64,
        mut bytes: BytesMut,
        last_try: bool,
    ) -> DecryptedPiece {
        let end = offset + bytes.len() as u64;
        let mut index = self
            .envelope
            .first_chunk_at_or_after(offset)
            .max(self.chunks.start);
        let head_len = self.envelope.chunk_offset(index).saturating_sub(offset);
        let head = bytes.split_to(head_len.min(bytes.len() as u64) as usize);
        let mut plain = Vec::new();
        while index < self.chunks.end {
            let sealed_len = self.envelope.sealed_chunk_len(index, self.file_size) as usize;
            if bytes.len() < sealed_len {
                break;
            }
            let chunk = bytes.split_to(sealed_len);
            let opened = self.open(index, chunk, &mut plain, last_try);
            index += 1;
            if !opened {
                break;
            }
        }
        let origin = |bytes| Origin {
            segment,
            window: window.clone(),
            bytes,
        };
        DecryptedPiece {
            head_origin: origin(offset..offset + head.len() as u64),
            head,
            plain,
            tail_origin: origin(end - bytes.len() as u64..end),
            tail: (index, bytes),
        }
    }

    /// Opens chunk `index` in place and emits its part of the window; false if it
    /// failed authentication (logged only when `last_try`: a first failure is
    /// read again checked).
    fn open(
        &self,
        index: u64,
        mut sealed: BytesMut,
        out: &mut Vec<Result<Bytes, ReadFailure>>,
        last_try: bool,
    ) -> bool {
        let is_final = self.envelope.is_final(index, self.file_size);
        let plain_len = match self.opener.open_chunk(index, is_final, &mut sealed) {
            Ok(p) => p.len(),
            Err(e) => {
                if last_try {
                    tracing::error!(chunk = index, error = %e, "chunk failed authentication");
                }
                out.push(Err(ReadFailure::Unreadable {
                    chunk: index,
                    reason: e.to_string(),
                }));
                return false;
            }
        };
        sealed.truncate(plain_len);
        let chunk_start = index * self.envelope.chunk_size as u64;
        let from = self.window.start.max(chunk_start) - chunk_start;
        let to = self.window.end.min(chunk_start + plain_len as u64) - chunk_start;
        if from < to {
            out.push(Ok(sealed.freeze().slice(from as usize..to as usize)));
        }
        true
    }
}

/// Reads a segment's ciphertext again with every shard checked.
trait CheckedReader {
    fn read_checked(
        &self,
        segment: u32,
        window: std::ops::Range<u64>,
    ) -> impl std::future::Future<Output = Result<(u64, BytesMut), SegmentError>> + Send;
}

impl CheckedReader for SegmentSource {
    fn read_checked(
        &self,
        segment: u32,
        window: std::ops::Range<u64>,
    ) -> impl std::future::Future<Output = Result<(u64, BytesMut), SegmentError>> + Send {
        self.read(segment, window, Check::Eagerly)
    }
}

/// Puts decrypted pieces back in order: joins each chunk split between pieces
/// (the only bytes copied) and stops at the first error.
struct PieceJoiner<R> {
    decrypt: Arc<PieceDecryptor>,
    source: Arc<R>,
    /// Sealed bytes so far of chunk `carry_chunk`, which spans pieces, and where
    /// they came from.
    carry: BytesMut,
    carry_parts: Vec<Origin>,
    carry_chunk: Option<u64>,
    done: bool,
}

impl<R: CheckedReader> PieceJoiner<R> {
    async fn join(&mut self, piece: DecryptedPiece) -> Vec<Result<Bytes, ReadFailure>> {
        let mut out = Vec::new();
        if self.done {
            return out;
        }
        let failed = piece.failed();
        let (next, tail) = piece.tail;
        // (No carry and no head: the carried chunk starts exactly at this piece.)
        let carried = self
            .carry_chunk
            .filter(|_| !(self.carry.is_empty() && piece.head.is_empty()));
        if let Some(index) = carried {
            self.carry.extend_from_slice(&piece.head);
            self.carry_parts.push(piece.head_origin);
            let sealed_len = self
                .decrypt
                .envelope
                .sealed_chunk_len(index, self.decrypt.file_size);
            if (self.carry.len() as u64) < sealed_len {
                // A chunk longer than this piece (tiny shards): the whole piece was its
                // head, and more of it comes next.
                return out;
            }
            let chunk = std::mem::take(&mut self.carry);
            let mut opened = Vec::new();
            if self.decrypt.open(index, chunk, &mut opened, false) {
                out.extend(opened);
            } else {
                // Which segment holds the bad bytes is unknown: read them all checked.
                tracing::warn!(
                    chunk = index,
                    "a chunk failed authentication; reading it again with every shard checked"
                );
                let chunk = match self.read_carry_checked().await {
                    Ok(chunk) => chunk,
                    Err(e) => {
                        self.done = true;
                        out.push(Err(ReadFailure::Unavailable(e.to_string())));
                        return out;
                    }
                };
                if !self.decrypt.open(index, chunk, &mut out, true) {
                    self.done = true;
                    return out;
                }
            }
        }
        out.extend(piece.plain);
        if failed || next >= self.decrypt.chunks.end {
            self.done = true;
            return out;
        }
        self.carry_chunk = Some(next);
        self.carry = tail;
        self.carry_parts = vec![piece.tail_origin];
        out
    }

    /// The carried chunk's bytes, read again with every shard BLAKE3-checked.
    async fn read_carry_checked(&self) -> Result<BytesMut, SegmentError> {
        let mut chunk = BytesMut::new();
        for part in &self.carry_parts {
            let (offset, mut bytes) = self
                .source
                .read_checked(part.segment, part.window.clone())
                .await?;
            let from = (part.bytes.start - offset) as usize;
            let to = (part.bytes.end - offset) as usize;
            bytes.truncate(to);
            chunk.extend_from_slice(&bytes[from..]);
        }
        Ok(chunk)
    }
}

/// Which segments hold an envelope: the file's whole layout, or one part's of a file
/// stored in parts (numbered from its first segment).
struct Segments {
    layout: zib_erasure::Layout,
    first: u32,
    whole: bool,
}

impl Segments {
    fn whole(file: &FileRow) -> Self {
        Segments {
            layout: layout_of(file),
            first: 0,
            whole: true,
        }
    }

    fn part(file: &FileRow, part: &zib_meta::FilePart) -> Self {
        Segments {
            layout: zib_erasure::Layout::part(file.erasure(), part.ciphertext_size),
            first: part.first_segment,
            whole: false,
        }
    }
}

/// Where `segments`' shards are, from `directory` (one snapshot per request, however
/// many envelopes the file has).
async fn segment_source(
    state: &AppState,
    directory: &NodeDirectory,
    file: &FileRow,
    segments: &Segments,
) -> ApiResult<SegmentSource> {
    let params = file.erasure();
    let layout = segments.layout;
    let codec = Codec::new(params).map_err(|e| InternalError::Other(e.to_string()))?;
    let width = params.total_shards();
    let mut shards = vec![vec![None; width]; layout.segment_count() as usize];
    let rows = if segments.whole {
        state.store.shards_for_file(file.file_id).await?
    } else {
        let end = segments.first.saturating_add(layout.segment_count());
        state
            .store
            .shards_in_segments(file.file_id, segments.first..end)
            .await?
    };
    // A file without shard rows may be a small one kept whole in the store.
    let inline = if rows.is_empty() && segments.whole {
        state
            .store
            .inline_envelope(file.file_id)
            .await?
            .map(Bytes::from)
    } else {
        None
    };
    for row in rows {
        let (Some(slot_row), Ok(hash)) = (
            shards.get_mut(row.segment.wrapping_sub(segments.first) as usize),
            <[u8; 32]>::try_from(row.blake3.as_slice()),
        ) else {
            continue;
        };
        let node = directory.get(&row.node_id);
        if let Some(slot) = slot_row.get_mut(row.index as usize) {
            *slot = Some(ShardLocation {
                node_url: node.map(|n| n.public_url.clone()),
                online: node.is_some_and(|n| directory.is_online(n)),
                node_id: row.node_id,
                blob_id: row.blob_id,
                blake3: hash,
            });
        }
    }
    Ok(SegmentSource {
        layout,
        codec,
        shards,
        nodes: state.nodes.clone(),
        store: state.store.clone(),
        repairer: state.workers.handle(super::REPAIRER_WORKER),
        timeout: state.config.shard_fetch_timeout,
        local_nodes: state.config.local_nodes.clone(),
        inline,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use zib_crypto::envelope::encrypt;
    use zib_crypto::DataKey;

    /// Serves "checked" re-reads from a copy of the envelope (what parity would give).
    struct Pristine(Vec<u8>);

    impl CheckedReader for Pristine {
        async fn read_checked(
            &self,
            _segment: u32,
            window: std::ops::Range<u64>,
        ) -> Result<(u64, BytesMut), SegmentError> {
            let bytes = &self.0[window.start as usize..window.end as usize];
            Ok((window.start, BytesMut::from(bytes)))
        }
    }

    /// Reads `window` of `plaintext`'s envelope cut into pieces of `piece_len` bytes
    /// as the CDN reads segments (the first piece may start before the first needed
    /// chunk), with `served` standing for what nodes hand out (maybe tampered) and a
    /// pristine copy for checked re-reads.
    async fn read_window(
        served: &[u8],
        pristine: &[u8],
        plaintext_len: u64,
        piece_len: usize,
        window: std::ops::Range<u64>,
    ) -> Vec<Result<Bytes, ReadFailure>> {
        let header = test_header();
        let envelope = header.layout();
        let chunks = envelope
            .chunks_covering(window.clone(), plaintext_len)
            .unwrap();
        let cipher_start = envelope.chunk_offset(chunks.start);
        let decrypt = Arc::new(PieceDecryptor {
            opener: Opener::new(&test_key(), header),
            envelope,
            file_size: plaintext_len,
            chunks,
            window,
        });
        let reader = Arc::new(Pristine(pristine.to_vec()));
        let mut joiner = PieceJoiner {
            decrypt: decrypt.clone(),
            source: reader.clone(),
            carry: BytesMut::new(),
            carry_parts: Vec::new(),
            carry_chunk: None,
            done: false,
        };
        let first = (cipher_start as usize / piece_len) * piece_len;
        let mut out = Vec::new();
        for (n, at) in (first..served.len()).step_by(piece_len).enumerate() {
            let range = at as u64..(at + piece_len).min(served.len()) as u64;
            let bytes = BytesMut::from(&served[range.start as usize..range.end as usize]);
            let mut piece = decrypt.decrypt(n as u32, range.clone(), at as u64, bytes, false);
            if piece.failed() {
                let (offset, bytes) = reader.read_checked(n as u32, range.clone()).await.unwrap();
                piece = decrypt.decrypt(n as u32, range, offset, bytes, true);
            }
            out.extend(joiner.join(piece).await);
            if joiner.done {
                break;
            }
        }
        out
    }

    fn test_key() -> DataKey {
        DataKey::from_bytes([7; 32])
    }

    fn test_header() -> Header {
        Header {
            chunk_size: 64,
            nonce_prefix: [1; 7],
        }
    }

    fn concat(results: Vec<Result<Bytes, ReadFailure>>) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        for bytes in results {
            out.extend_from_slice(&bytes.map_err(|e| e.to_string())?);
        }
        Ok(out)
    }

    #[tokio::test]
    async fn pieces_of_any_size_decrypt_to_the_window() {
        let plaintext: Vec<u8> = (0..1000u32).map(|i| (i * 7 + 3) as u8).collect();
        let sealed = encrypt(&test_key(), test_header(), &plaintext);
        for piece_len in [1, 17, 63, 64, 80, 81, 200, 1100] {
            for window in [0..1000, 0..1, 999..1000, 63..65, 64..128, 100..901] {
                let got = read_window(&sealed, &sealed, 1000, piece_len, window.clone()).await;
                assert_eq!(
                    concat(got).unwrap(),
                    &plaintext[window.start as usize..window.end as usize],
                    "piece {piece_len}, window {window:?}"
                );
            }
        }
    }

    #[tokio::test]
    async fn a_tampered_byte_anywhere_is_read_again_checked() {
        let plaintext: Vec<u8> = (0..700u32).map(|i| (i * 13 + 1) as u8).collect();
        let sealed = encrypt(&test_key(), test_header(), &plaintext);
        for piece_len in [50, 80, 100, 333] {
            for flip in (0..sealed.len()).step_by(7) {
                let mut served = sealed.clone();
                served[flip] ^= 0x20;
                let got = read_window(&served, &sealed, 700, piece_len, 0..700).await;
                assert_eq!(
                    concat(got).unwrap(),
                    plaintext,
                    "piece {piece_len}, flipped byte {flip}"
                );
            }
        }
    }

    #[tokio::test]
    async fn a_chunk_bad_even_when_checked_ends_the_read_with_an_error() {
        let plaintext = vec![5u8; 300];
        let mut sealed = encrypt(&test_key(), test_header(), &plaintext);
        sealed[200] ^= 1;
        for piece_len in [60, 100, 1000] {
            let results = read_window(&sealed, &sealed, 300, piece_len, 0..300).await;
            let served: usize = results.iter().flatten().map(Bytes::len).sum();
            assert!(results.last().is_some_and(Result::is_err));
            assert_eq!(results.iter().filter(|r| r.is_err()).count(), 1);
            assert!(served < 200, "nothing past the tampered chunk is served");
        }
    }
}

//! A request body being received: exactly the bytes a capability token names, the
//! envelope header checked before anything is stored, then either written to a file
//! (a shard, a part, a spooled upload) or read segment by segment (an upload
//! erasure-coded as it arrives, `streamed`).

use std::collections::VecDeque;
use std::io::SeekFrom;
use std::path::Path;

use axum::body::{Body, BodyDataStream};
use axum::http::StatusCode;
use bytes::Bytes;
use futures::StreamExt;
use tokio::io::{AsyncSeekExt, AsyncWriteExt, BufWriter};
use zib_crypto::envelope::{Header, HEADER_LEN};
use zib_proto::error_codes as codes;
use zib_proto::EnvelopeParams;

use crate::error::NodeApiError;

/// Large enough that disk writes are few, small enough that hundreds of bodies
/// received at once (parts, pushed shards) stay out of the way: one per request.
const WRITE_BUFFER: usize = 128 * 1024;
/// How long a refused body is read (and dropped) so the client sees the refusal:
/// a 64 MiB upload at 20 Mbit/s; a slower one gets a closed connection instead.
const DISCARD_LIMIT: std::time::Duration = std::time::Duration::from_secs(30);

/// A body being received: exactly `expected` bytes, the first of them read ahead
/// to check the envelope header before the caller stores anything.
pub(crate) struct Incoming {
    /// Bytes already read (the header and whatever came with it), not yet written.
    head: VecDeque<Bytes>,
    stream: BodyDataStream,
    received: u64,
    expected: u64,
}

impl Incoming {
    /// Starts reading `body`. With `issued` (the header the token names), reads the
    /// first 16 bytes and refuses a body that does not start with exactly that
    /// header; nothing has been written anywhere when this fails.
    pub(crate) async fn start(
        body: Body,
        expected: u64,
        issued: Option<&EnvelopeParams>,
    ) -> Result<Self, NodeApiError> {
        let mut incoming = Incoming {
            head: VecDeque::new(),
            stream: body.into_data_stream(),
            received: 0,
            expected,
        };
        let Some(params) = issued else {
            return Ok(incoming);
        };
        let issued = Header::from_params(params).map_err(|e| {
            NodeApiError::forbidden(
                codes::INVALID_TOKEN,
                format!("the token's envelope header is malformed: {e}"),
            )
        })?;
        while incoming.received < HEADER_LEN {
            match incoming.next_chunk().await? {
                Some(chunk) => incoming.head.push_back(chunk),
                None => break,
            }
        }
        if incoming.received < HEADER_LEN.min(expected) {
            return Err(incoming.too_short());
        }
        let mut first = Vec::with_capacity(HEADER_LEN as usize);
        for chunk in &incoming.head {
            let want = HEADER_LEN as usize - first.len();
            first.extend_from_slice(&chunk[..chunk.len().min(want)]);
        }
        if let Err(e) = Header::check_issued(&first, &issued) {
            incoming.discard_rest().await;
            return Err(NodeApiError::bad_request(
                codes::INVALID_ENVELOPE,
                format!(
                    "the body does not start with the envelope header issued for this upload \
                     (docs/envelope.md): {e}"
                ),
            ));
        }
        Ok(incoming)
    }

    /// Reads and drops the rest of a refused body (at most `expected` bytes, for at
    /// most [`DISCARD_LIMIT`]): a client that reads the answer only once it has sent
    /// everything (Python's urllib, many scripts) would otherwise see its write
    /// reset by the closing connection instead of the refusal.
    pub(crate) async fn discard_rest(&mut self) {
        self.head.clear();
        let drain = async { while let Ok(Some(_)) = self.next_chunk().await {} };
        let _ = tokio::time::timeout(DISCARD_LIMIT, drain).await;
    }

    /// The next piece of the body, counted; refuses a body that breaks off or runs
    /// past `expected`.
    async fn next_chunk(&mut self) -> Result<Option<Bytes>, NodeApiError> {
        let Some(chunk) = self.stream.next().await else {
            return Ok(None);
        };
        let chunk = chunk.map_err(|e| {
            NodeApiError::bad_request(
                codes::BODY_INTERRUPTED,
                format!(
                    "the upload body was interrupted after {} bytes: {e}",
                    self.received
                ),
            )
        })?;
        let len = chunk.len() as u64;
        if self.received + len > self.expected {
            return Err(NodeApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                codes::BODY_TOO_LARGE,
                format!(
                    "the body is larger than the {} bytes this token allows",
                    self.expected
                ),
            ));
        }
        self.received += len;
        Ok(Some(chunk))
    }

    /// Fills `buf` with the body's next bytes; a body that ends first is too short.
    pub(crate) async fn fill(&mut self, mut buf: &mut [u8]) -> Result<(), NodeApiError> {
        while !buf.is_empty() {
            let mut chunk = match self.head.pop_front() {
                Some(chunk) => chunk,
                None => match self.next_chunk().await? {
                    Some(chunk) => chunk,
                    None => return Err(self.too_short()),
                },
            };
            let n = chunk.len().min(buf.len());
            buf[..n].copy_from_slice(&chunk[..n]);
            if n < chunk.len() {
                self.head.push_front(chunk.split_off(n));
            }
            buf = &mut buf[n..];
        }
        Ok(())
    }

    /// After the last byte the token names has been taken: the body must end there.
    pub(crate) async fn finish(&mut self) -> Result<(), NodeApiError> {
        while self.next_chunk().await?.is_some() {}
        if self.received != self.expected || !self.head.is_empty() {
            return Err(self.too_short());
        }
        Ok(())
    }

    fn too_short(&self) -> NodeApiError {
        NodeApiError::bad_request(
            codes::BODY_TOO_SHORT,
            format!(
                "the body ended after {} bytes, but this token is for {} bytes",
                self.received, self.expected
            ),
        )
    }

    /// Streams the body into `path` (at `offset` for a part, else replacing the
    /// file), then makes it durable.
    pub(crate) async fn write_to(
        mut self,
        path: &Path,
        offset: Option<u64>,
    ) -> Result<blake3::Hash, NodeApiError> {
        let io_error =
            |e: std::io::Error| NodeApiError::internal("could not write the upload to disk", e);
        let mut file = match offset {
            None => tokio::fs::File::create(path).await.map_err(io_error)?,
            Some(offset) => {
                let mut file = tokio::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(path)
                    .await
                    .map_err(io_error)?;
                file.seek(SeekFrom::Start(offset)).await.map_err(io_error)?;
                file
            }
        };
        // tokio's file copies each write into a buffer of its own (2 MiB by default).
        file.set_max_buf_size(WRITE_BUFFER);
        let mut writer = BufWriter::with_capacity(WRITE_BUFFER, file);
        let mut hasher = blake3::Hasher::new();
        for chunk in std::mem::take(&mut self.head) {
            hasher.update(&chunk);
            writer.write_all(&chunk).await.map_err(io_error)?;
        }
        while let Some(chunk) = self.next_chunk().await? {
            hasher.update(&chunk);
            writer.write_all(&chunk).await.map_err(io_error)?;
        }
        if self.received != self.expected {
            return Err(self.too_short());
        }
        writer.flush().await.map_err(io_error)?;
        writer.into_inner().sync_all().await.map_err(io_error)?;
        Ok(hasher.finalize())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zib_crypto::envelope::encrypt;
    use zib_crypto::DataKey;

    fn issued() -> Header {
        Header {
            chunk_size: 64,
            nonce_prefix: [3; 7],
        }
    }

    /// A body that arrives in pieces of `piece` bytes, as a network delivers it.
    fn body_in_pieces(bytes: &[u8], piece: usize) -> Body {
        let pieces: Vec<Result<Bytes, std::io::Error>> = bytes
            .chunks(piece.max(1))
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        Body::from_stream(futures::stream::iter(pieces))
    }

    async fn start(bytes: &[u8], piece: usize) -> Result<Incoming, NodeApiError> {
        let params = issued().to_params();
        Incoming::start(
            body_in_pieces(bytes, piece),
            bytes.len() as u64,
            Some(&params),
        )
        .await
    }

    #[tokio::test]
    async fn the_issued_header_passes_however_the_body_is_cut() {
        let envelope = encrypt(&DataKey::from_bytes([1; 32]), issued(), &[9u8; 200]);
        let dir = tempfile::tempdir().unwrap();
        for piece in [1, 5, 15, 16, 17, 1000] {
            let incoming = start(&envelope, piece).await.unwrap();
            let path = dir.path().join(format!("p{piece}"));
            let hash = incoming.write_to(&path, None).await.unwrap();
            assert_eq!(std::fs::read(&path).unwrap(), envelope, "piece {piece}");
            assert_eq!(hash, blake3::hash(&envelope));
        }
    }

    #[tokio::test]
    async fn anything_else_is_refused_naming_the_problem() {
        let key = DataKey::from_bytes([1; 32]);
        let other_prefix = encrypt(
            &key,
            Header {
                nonce_prefix: [4; 7],
                ..issued()
            },
            &[9u8; 200],
        );
        let other_size = encrypt(
            &key,
            Header {
                chunk_size: 128,
                ..issued()
            },
            &[9u8; 200],
        );
        let random: Vec<u8> = (0..other_prefix.len())
            .map(|i| (i * 31 + 7) as u8)
            .collect();
        for (bytes, names) in [
            (random, "magic"),
            (other_prefix, "nonce prefix"),
            (other_size, "chunk size"),
        ] {
            for piece in [3, 100] {
                let err = start(&bytes, piece).await.err().unwrap();
                assert_eq!(err.status, StatusCode::BAD_REQUEST);
                assert_eq!(err.code, codes::INVALID_ENVELOPE);
                assert!(err.message.contains(names), "{}", err.message);
            }
        }
    }

    #[tokio::test]
    async fn a_body_ending_inside_the_header_is_too_short() {
        let envelope = encrypt(&DataKey::from_bytes([1; 32]), issued(), b"x");
        let params = issued().to_params();
        let err = Incoming::start(body_in_pieces(&envelope[..10], 4), 33, Some(&params))
            .await
            .err()
            .unwrap();
        assert_eq!(err.code, codes::BODY_TOO_SHORT);
        // Without a claim (a token from before the check) the body is taken as is.
        let incoming = Incoming::start(body_in_pieces(b"not an envelope", 4), 15, None)
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        incoming
            .write_to(&dir.path().join("old"), None)
            .await
            .unwrap();
    }
}

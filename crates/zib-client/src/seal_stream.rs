//! Streams one part of a file as sealed envelope bytes, chunk by chunk, so memory
//! stays at a few chunks whatever the file size.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::Stream;
use zib_crypto::envelope::TAG_LEN;

use crate::plan::{EnvelopePlan, PartPlan};
use crate::ClientError;

/// Called once per yielded piece with (plaintext bytes sealed, envelope bytes yielded).
pub(crate) type ChunkObserver = Arc<dyn Fn(u64, u64) + Send + Sync>;

/// Where the stream leaves the real error of a failed read. The HTTP client only passes
/// an opaque body error up, and a local read failure must not be retried as if the
/// network had failed.
#[derive(Clone, Default)]
pub(crate) struct FailureSlot(Arc<Mutex<Option<ClientError>>>);

impl FailureSlot {
    fn put(&self, err: ClientError) {
        if let Ok(mut slot) = self.0.lock() {
            slot.get_or_insert(err);
        }
    }

    pub fn take(&self) -> Option<ClientError> {
        self.0.lock().ok().and_then(|mut slot| slot.take())
    }
}

struct State {
    file: Option<File>,
    /// Chunks of this part already yielded.
    done: u64,
    header_pending: bool,
}

/// The sealed bytes of `part`: the header first when the part carries it, then each
/// chunk, read and sealed on the blocking pool (one hop per chunk).
pub(crate) fn sealed_part_stream(
    path: Arc<Path>,
    plan: Arc<EnvelopePlan>,
    part: PartPlan,
    observer: ChunkObserver,
    failure: FailureSlot,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    let state = State {
        file: None,
        done: 0,
        header_pending: part.with_header,
    };
    futures::stream::try_unfold(state, move |mut state| {
        let path = path.clone();
        let plan = plan.clone();
        let observer = observer.clone();
        let failure = failure.clone();
        async move {
            if state.header_pending {
                state.header_pending = false;
                let header = Bytes::copy_from_slice(&plan.header.encode());
                observer(0, header.len() as u64);
                return Ok(Some((header, state)));
            }
            if state.done == part.chunk_count {
                return Ok(None);
            }
            let index = part.first_chunk + state.done;
            let file = state.file.take();
            let sealed =
                tokio::task::spawn_blocking(move || read_and_seal(file, &path, &plan, part, index))
                    .await
                    .map_err(|join| ClientError::io("sealing a chunk", std::io::Error::other(join)))
                    .and_then(|result| result);
            match sealed {
                Ok((file, chunk)) => {
                    state.file = Some(file);
                    state.done += 1;
                    let sealed_len = chunk.len() as u64;
                    observer(sealed_len - TAG_LEN, sealed_len);
                    Ok(Some((Bytes::from(chunk), state)))
                }
                Err(err) => {
                    let for_http = std::io::Error::other(err.to_string());
                    failure.put(err);
                    Err(for_http)
                }
            }
        }
    })
}

/// Reads chunk `index` (opening the file at the part's start on first use) and seals it.
fn read_and_seal(
    file: Option<File>,
    path: &Path,
    plan: &EnvelopePlan,
    part: PartPlan,
    index: u64,
) -> Result<(File, Vec<u8>), ClientError> {
    let shown = path.display();
    let mut file = match file {
        Some(file) => file,
        None => {
            let mut file =
                File::open(path).map_err(|e| ClientError::io(format!("opening {shown}"), e))?;
            file.seek(SeekFrom::Start(part.plaintext_offset))
                .map_err(|e| ClientError::io(format!("seeking in {shown}"), e))?;
            file
        }
    };
    let chunk_size = u64::from(plan.header.chunk_size);
    let chunk_start = index * chunk_size;
    let chunk_len = chunk_size.min(plan.file_size.saturating_sub(chunk_start)) as usize;
    let mut buf = Vec::with_capacity(chunk_len + TAG_LEN as usize);
    buf.resize(chunk_len, 0);
    file.read_exact(&mut buf).map_err(|e| {
        let context = if e.kind() == std::io::ErrorKind::UnexpectedEof {
            format!(
                "reading {shown}: the file is shorter than the {} bytes registered (modified during the upload?)",
                plan.file_size
            )
        } else {
            format!("reading {shown}")
        };
        ClientError::io(context, e)
    })?;
    let is_final = index + 1 == plan.total_chunks;
    plan.sealer.seal_chunk(index, is_final, &mut buf);
    Ok((file, buf))
}

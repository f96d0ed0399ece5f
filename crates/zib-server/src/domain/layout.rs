//! Where a file's ciphertext lives among segments and shards: the one place that
//! turns a file row into an erasure layout (distribution, reads, repair).

use zib_crypto::envelope::{HEADER_LEN, TAG_LEN};
use zib_erasure::{Layout, Parts};
use zib_meta::FileRow;

/// Where a file's ciphertext lives among segments: a multipart file with a part
/// size has its parts segmented on their own (each coded as it arrived).
pub fn layout_of(file: &FileRow) -> Layout {
    let erasure = file.erasure();
    let chunk = u64::from(file.chunk_size);
    if file.part_size == 0 || chunk == 0 {
        return Layout::new(erasure, file.ciphertext_size);
    }
    // Parts are whole chunks; part 1 also carries the envelope header.
    let stride = (file.part_size / chunk) * (chunk + TAG_LEN);
    Layout::in_parts(
        erasure,
        file.ciphertext_size,
        Parts {
            first_len: HEADER_LEN + stride,
            stride,
        },
    )
}

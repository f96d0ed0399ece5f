//! Where a file's ciphertext lives among segments and shards: the one place that
//! turns a file row into an erasure layout (distribution, reads, repair).

use zib_crypto::envelope::{HEADER_LEN, TAG_LEN};
use zib_erasure::{Layout, Parts};
use zib_meta::{FilePart, FileRow};

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

/// The length of segment `segment`'s shards. A file stored in parts (`parts`, as
/// `Store::file_parts` gives them) takes it from the part holding the segment; `None`
/// when no part does.
pub fn shard_len_of(file: &FileRow, parts: &[FilePart], segment: u32) -> Option<u64> {
    if !file.in_listed_parts() {
        return Some(layout_of(file).shard_len(segment));
    }
    let part = parts
        .iter()
        .find(|p| segment >= p.first_segment && segment - p.first_segment < p.segment_count)?;
    Some(Layout::part(file.erasure(), part.ciphertext_size).shard_len(segment - part.first_segment))
}

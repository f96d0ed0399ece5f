//! Part planning and stream encryption, checked by decrypting what the streams yield
//! with the reference implementation in `zib_crypto`.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use futures::TryStreamExt;
use zib_crypto::envelope::{decrypt, HEADER_LEN, TAG_LEN};
use zib_crypto::{DataKey, Header};
use zib_proto::api::{PartTarget, Registration, UploadType};
use zib_proto::{EnvelopeParams, FileId, NodeId};

use crate::plan::{EnvelopePlan, PartPlan};
use crate::seal_stream::{sealed_part_stream, ChunkObserver, FailureSlot};
use crate::ClientError;

pub(crate) const CHUNK: u32 = 1024;
pub(crate) const PREFIX: [u8; 7] = [1, 2, 3, 4, 5, 6, 7];

pub(crate) fn key() -> DataKey {
    DataKey::from_bytes([42; 32])
}

pub(crate) fn plaintext(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

pub(crate) fn temp_file(data: &[u8]) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(data).unwrap();
    file.flush().unwrap();
    file
}

/// The multipart registration a server would issue: parts of `chunks_per_part` chunks.
pub(crate) fn registration(file_size: u64, chunks_per_part: u64, base_url: &str) -> Registration {
    registration_with_chunk(file_size, CHUNK, chunks_per_part, base_url)
}

pub(crate) fn registration_with_chunk(
    file_size: u64,
    chunk_size: u32,
    chunks_per_part: u64,
    base_url: &str,
) -> Registration {
    let header = Header {
        chunk_size,
        nonce_prefix: PREFIX,
    };
    let layout = header.layout();
    let chunk = u64::from(chunk_size);
    let part_plain = chunks_per_part * chunk;
    let mut parts = Vec::new();
    let mut offset = 0;
    let mut ciphertext_offset = 0;
    while offset < file_size || (file_size == 0 && parts.is_empty()) {
        let size = part_plain.min(file_size - offset);
        let chunks = if file_size == 0 {
            1
        } else {
            size.div_ceil(chunk)
        };
        let ciphertext_size = size + chunks * TAG_LEN + if offset == 0 { HEADER_LEN } else { 0 };
        let number = parts.len() as u32 + 1;
        parts.push(PartTarget {
            part_number: number,
            // Like a real node URL, the capability token travels in the query.
            upload_url: format!("{base_url}/part/{number}?token=secret-{number}"),
            plaintext_offset: offset,
            plaintext_size: size,
            ciphertext_offset,
            ciphertext_size,
        });
        offset += size;
        ciphertext_offset += ciphertext_size;
    }
    Registration {
        upload_type: UploadType::Multipart,
        file_id: FileId::new_random(),
        bucket: "photos".into(),
        key: "cat.bin".into(),
        file_size,
        content_type: "application/octet-stream".into(),
        node_id: NodeId::new_random(),
        node_url: base_url.into(),
        upload_url: None,
        upload_id: Some("up-1".into()),
        parts,
        complete_url: Some(format!("{base_url}/complete")),
        encryption_key: key().to_base64(),
        envelope: EnvelopeParams {
            version: 1,
            chunk_size,
            nonce_prefix: hex::encode(PREFIX),
        },
        ciphertext_size: layout.ciphertext_len(file_size),
        cdn_url: format!("{base_url}/objects/x"),
        expires_at: "2999-01-01T00:00:00Z".into(),
    }
}

async fn stream_part(
    path: &Path,
    plan: &Arc<EnvelopePlan>,
    part: PartPlan,
) -> Result<Vec<u8>, ClientError> {
    let observer: ChunkObserver = Arc::new(|_, _| {});
    let failure = FailureSlot::default();
    let pieces: Result<Vec<bytes::Bytes>, _> = sealed_part_stream(
        Arc::from(path),
        plan.clone(),
        part,
        observer,
        failure.clone(),
    )
    .try_collect()
    .await;
    match pieces {
        Ok(pieces) => Ok(pieces.concat()),
        Err(_) => Err(failure.take().expect("a failed stream leaves its error")),
    }
}

/// Encrypts every part on its own and checks the concatenation is one valid envelope.
async fn roundtrip(file_size: usize, chunks_per_part: u64) {
    let data = plaintext(file_size);
    let file = temp_file(&data);
    let reg = registration(file_size as u64, chunks_per_part, "http://node");
    let plan = Arc::new(EnvelopePlan::from_registration(&reg).unwrap());
    let parts = plan.parts(&reg).unwrap();
    assert_eq!(parts.len(), reg.parts.len());
    let mut envelope = Vec::new();
    for ((_, _, part), target) in parts.into_iter().zip(&reg.parts) {
        let sealed = stream_part(file.path(), &plan, part).await.unwrap();
        assert_eq!(
            sealed.len() as u64,
            target.ciphertext_size,
            "part {}",
            target.part_number
        );
        assert_eq!(envelope.len() as u64, target.ciphertext_offset);
        envelope.extend_from_slice(&sealed);
    }
    assert_eq!(envelope.len() as u64, reg.ciphertext_size);
    assert_eq!(
        decrypt(&key(), &envelope).unwrap(),
        data,
        "size {file_size}"
    );

    // The whole envelope in one stream (single uploads) is the same bytes.
    let whole = stream_part(file.path(), &plan, plan.whole()).await.unwrap();
    assert_eq!(whole, envelope);
    let header = Header {
        chunk_size: CHUNK,
        nonce_prefix: PREFIX,
    };
    assert_eq!(whole, zib_crypto::envelope::encrypt(&key(), header, &data));
}

#[tokio::test]
async fn parts_decrypt_as_one_envelope() {
    let chunk = CHUNK as usize;
    for size in [
        0,
        1,
        chunk - 1,
        chunk,
        chunk + 1,
        3 * chunk,
        10 * chunk + 100,
    ] {
        for chunks_per_part in [1, 3] {
            roundtrip(size, chunks_per_part).await;
        }
    }
}

#[test]
fn inconsistent_registrations_are_refused() {
    let good = registration(10 * u64::from(CHUNK) + 5, 3, "http://node");
    let plan = EnvelopePlan::from_registration(&good).unwrap();
    assert_eq!(plan.parts(&good).unwrap().len(), 4);

    let mut reg = good.clone();
    reg.parts[1].ciphertext_size += 1;
    let err = plan.parts(&reg).unwrap_err().to_string();
    assert!(err.contains("ciphertext sizes add up"), "{err}");

    let mut reg = good.clone();
    reg.parts[0].plaintext_size -= 16;
    reg.parts[0].ciphertext_size -= 16;
    reg.parts[1].plaintext_size += 16;
    reg.parts[1].ciphertext_size += 16;
    reg.parts[1].plaintext_offset -= 16;
    reg.parts[1].ciphertext_offset -= 16;
    let err = plan.parts(&reg).unwrap_err().to_string();
    assert!(err.contains("part 1 ends at plaintext byte"), "{err}");

    let mut reg = good.clone();
    reg.parts.swap(0, 1);
    assert!(
        plan.parts(&reg).is_ok(),
        "order of the list does not matter"
    );
    reg.parts[0].part_number = 7;
    assert!(plan.parts(&reg).is_err());

    let mut reg = good.clone();
    reg.ciphertext_size += 16;
    let err = EnvelopePlan::from_registration(&reg)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("ciphertext_size"), "{err}");

    let mut reg = good.clone();
    reg.envelope.nonce_prefix = "0011".into();
    let err = EnvelopePlan::from_registration(&reg)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("nonce_prefix"), "{err}");

    let mut reg = good;
    reg.encryption_key = "not a key".into();
    let err = EnvelopePlan::from_registration(&reg)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("encryption_key"), "{err}");
}

#[tokio::test]
async fn a_file_shorter_than_registered_fails_with_its_path() {
    let data = plaintext(3000);
    let file = temp_file(&data[..2000]);
    let reg = registration(3000, 4, "http://node");
    let plan = Arc::new(EnvelopePlan::from_registration(&reg).unwrap());
    let err = stream_part(file.path(), &plan, plan.whole())
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, ClientError::Io { .. }), "{text}");
    assert!(text.contains("shorter than the 3000 bytes"), "{text}");
    assert!(text.contains(&file.path().display().to_string()), "{text}");
}

mod fake_node;

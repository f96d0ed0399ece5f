//! Turns a registration into an envelope plan: the key, the header, and which chunks
//! every part carries. Everything the server sent is checked here, before any byte
//! leaves the machine, so a bad registration fails with a sentence instead of a
//! half-finished upload.

use zib_crypto::envelope::{Sealer, HEADER_LEN, NONCE_PREFIX_LEN, TAG_LEN, VERSION};
use zib_crypto::{DataKey, Header};
use zib_proto::api::{Registration, UploadType};

use crate::ClientError;

/// The envelope of one file: what every part of the upload shares.
pub(crate) struct EnvelopePlan {
    pub header: Header,
    pub sealer: Sealer,
    pub file_size: u64,
    pub total_chunks: u64,
    pub ciphertext_size: u64,
}

/// One request body: a run of whole chunks, with the header in front for the first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PartPlan {
    /// Global index of the first chunk (indices continue across parts).
    pub first_chunk: u64,
    pub chunk_count: u64,
    pub plaintext_offset: u64,
    pub plaintext_len: u64,
    pub ciphertext_len: u64,
    pub with_header: bool,
}

fn invalid(msg: impl Into<String>) -> ClientError {
    ClientError::Registration(format!("invalid registration: {}", msg.into()))
}

impl EnvelopePlan {
    pub fn new(key: &DataKey, header: Header, file_size: u64) -> Self {
        let layout = header.layout();
        Self {
            sealer: Sealer::new(key, header),
            header,
            file_size,
            total_chunks: layout.chunk_count(file_size),
            ciphertext_size: layout.ciphertext_len(file_size),
        }
    }

    pub fn from_registration(reg: &Registration) -> Result<Self, ClientError> {
        let env = &reg.envelope;
        if env.version != VERSION {
            return Err(invalid(format!(
                "envelope version {} is not supported (this SDK speaks version {VERSION})",
                env.version
            )));
        }
        if env.chunk_size == 0 {
            return Err(invalid("envelope chunk_size is 0"));
        }
        let prefix = hex::decode(&env.nonce_prefix)
            .ok()
            .and_then(|bytes| <[u8; NONCE_PREFIX_LEN]>::try_from(bytes).ok())
            .ok_or_else(|| {
                invalid(format!(
                    "envelope nonce_prefix must be {NONCE_PREFIX_LEN} bytes of hex, got {:?}",
                    env.nonce_prefix
                ))
            })?;
        let key = DataKey::from_base64(&reg.encryption_key)
            .map_err(|_| invalid("encryption_key is not a 32-byte base64 key"))?;
        let header = Header {
            chunk_size: env.chunk_size,
            nonce_prefix: prefix,
        };
        let plan = Self::new(&key, header, reg.file_size);
        if plan.ciphertext_size != reg.ciphertext_size {
            return Err(invalid(format!(
                "ciphertext_size {} does not match the envelope of a {}-byte file ({} bytes)",
                reg.ciphertext_size, reg.file_size, plan.ciphertext_size
            )));
        }
        Ok(plan)
    }

    /// The whole envelope as one body (single uploads).
    pub fn whole(&self) -> PartPlan {
        PartPlan {
            first_chunk: 0,
            chunk_count: self.total_chunks,
            plaintext_offset: 0,
            plaintext_len: self.file_size,
            ciphertext_len: self.ciphertext_size,
            with_header: true,
        }
    }

    /// The plan of the part covering `plaintext_len` bytes from `plaintext_offset`,
    /// which must start on a chunk boundary and end on one (or at the end of the file).
    pub fn part(&self, plaintext_offset: u64, plaintext_len: u64) -> Result<PartPlan, String> {
        let chunk_size = u64::from(self.header.chunk_size);
        let end = plaintext_offset
            .checked_add(plaintext_len)
            .filter(|end| *end <= self.file_size)
            .ok_or_else(|| format!("reaches past the end of the {}-byte file", self.file_size))?;
        if !plaintext_offset.is_multiple_of(chunk_size) {
            return Err(format!(
                "starts at plaintext byte {plaintext_offset}, not on a {chunk_size}-byte chunk boundary"
            ));
        }
        if end != self.file_size && !end.is_multiple_of(chunk_size) {
            return Err(format!(
                "ends at plaintext byte {end}, neither a chunk boundary nor the end of the file"
            ));
        }
        let first_chunk = plaintext_offset / chunk_size;
        let chunk_count = if self.file_size == 0 {
            // The empty file is one empty (final) chunk.
            1
        } else {
            if plaintext_len == 0 {
                return Err("is empty".to_string());
            }
            end.div_ceil(chunk_size) - first_chunk
        };
        let with_header = plaintext_offset == 0;
        let header_len = if with_header { HEADER_LEN } else { 0 };
        Ok(PartPlan {
            first_chunk,
            chunk_count,
            plaintext_offset,
            plaintext_len,
            ciphertext_len: header_len + plaintext_len + chunk_count * TAG_LEN,
            with_header,
        })
    }

    /// Checks the multipart targets tile the envelope exactly, in order, and plans each.
    pub fn parts<'r>(
        &self,
        reg: &'r Registration,
    ) -> Result<Vec<(u32, &'r str, PartPlan)>, ClientError> {
        if reg.upload_type != UploadType::Multipart {
            return Err(invalid("not a multipart registration"));
        }
        if reg.parts.is_empty() {
            return Err(invalid("multipart registration lists no parts"));
        }
        let plaintext_sum: u64 = reg.parts.iter().map(|p| p.plaintext_size).sum();
        let ciphertext_sum: u64 = reg.parts.iter().map(|p| p.ciphertext_size).sum();
        if ciphertext_sum != reg.ciphertext_size {
            return Err(invalid(format!(
                "part ciphertext sizes add up to {ciphertext_sum}, not ciphertext_size {}",
                reg.ciphertext_size
            )));
        }
        if plaintext_sum != reg.file_size {
            return Err(invalid(format!(
                "part plaintext sizes add up to {plaintext_sum}, not file_size {}",
                reg.file_size
            )));
        }
        let mut sorted: Vec<_> = reg.parts.iter().collect();
        sorted.sort_by_key(|p| p.part_number);
        let mut next_plaintext = 0;
        let mut next_ciphertext = 0;
        let mut planned = Vec::with_capacity(sorted.len());
        for (i, target) in sorted.into_iter().enumerate() {
            let n = target.part_number;
            if u64::from(n) != i as u64 + 1 {
                return Err(invalid(format!(
                    "part numbers are not 1..={}",
                    reg.parts.len()
                )));
            }
            if target.plaintext_offset != next_plaintext
                || target.ciphertext_offset != next_ciphertext
            {
                return Err(invalid(format!(
                    "part {n} starts at plaintext {} / ciphertext {}, expected {next_plaintext} / {next_ciphertext}",
                    target.plaintext_offset, target.ciphertext_offset
                )));
            }
            let part = self
                .part(target.plaintext_offset, target.plaintext_size)
                .map_err(|why| invalid(format!("part {n} {why}")))?;
            if part.ciphertext_len != target.ciphertext_size {
                return Err(invalid(format!(
                    "part {n} declares {} ciphertext bytes, its chunks seal to {}",
                    target.ciphertext_size, part.ciphertext_len
                )));
            }
            next_plaintext += target.plaintext_size;
            next_ciphertext += target.ciphertext_size;
            planned.push((n, target.upload_url.as_str(), part));
        }
        Ok(planned)
    }
}

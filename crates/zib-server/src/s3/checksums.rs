//! The checksums AWS SDKs send with uploads (`x-amz-checksum-crc32`, `crc32c`, `sha1`,
//! `sha256`, `crc64nvme`), in a header or as the trailer of an aws-chunked body.
//!
//! The gateway hashes the plaintext as it seals it and compares at the end of the body,
//! before the last chunk is sealed, so a mismatch never completes an upload
//! (`BadDigest`). The values are kept with the file (`files.checksums`, algorithm →
//! base64) and with each spooled part, and returned on PUT, UploadPart, Complete,
//! ListParts and a full GET/HEAD with `x-amz-checksum-mode: ENABLED`. Every object also
//! gets a CRC64NVME of its whole plaintext, as S3 computes by default.
//!
//! A multipart object's checksum is S3's COMPOSITE one (the checksum of the parts'
//! checksums, `<base64>-N`) for an upload created with CRC32, CRC32C, SHA1 or SHA256,
//! or the FULL_OBJECT one for CRC64NVME or when the upload asks for it. Complete reads
//! no bytes (parts are coded as they arrive): a full-object CRC is combined from the
//! parts' CRCs (`crc_combine`), which is why every part also gets a CRC64NVME. (An
//! upload spooled before parts were coded re-reads its parts, and hashes them then.)

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use s3s::crypto::{Checksum as _, Crc32, Crc32c, Crc64Nvme, Sha1, Sha256};
use s3s::dto::{self, ChecksumAlgorithm, ChecksumType};
use s3s::{s3_error, S3Error, S3Result, TrailingHeaders};
use zib_meta::Checksums;

use super::crc_combine::{self, Crc};

/// A checksum algorithm S3 clients send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algo {
    Crc32,
    Crc32c,
    Sha1,
    Sha256,
    Crc64Nvme,
}

impl Algo {
    pub const ALL: [Algo; 5] = [
        Algo::Crc32,
        Algo::Crc32c,
        Algo::Sha1,
        Algo::Sha256,
        Algo::Crc64Nvme,
    ];

    /// The key in `files.checksums` and the suffix of `x-amz-checksum-*`.
    pub fn key(self) -> &'static str {
        match self {
            Algo::Crc32 => "crc32",
            Algo::Crc32c => "crc32c",
            Algo::Sha1 => "sha1",
            Algo::Sha256 => "sha256",
            Algo::Crc64Nvme => "crc64nvme",
        }
    }

    /// S3's name for it (`x-amz-checksum-algorithm`, error messages).
    pub fn s3_name(self) -> &'static str {
        match self {
            Algo::Crc32 => "CRC32",
            Algo::Crc32c => "CRC32C",
            Algo::Sha1 => "SHA1",
            Algo::Sha256 => "SHA256",
            Algo::Crc64Nvme => "CRC64NVME",
        }
    }

    /// `CRC32`, `crc32` or `x-amz-checksum-crc32`.
    pub fn parse(name: &str) -> Option<Algo> {
        let lower = name.trim().to_ascii_lowercase();
        let bare = lower.strip_prefix("x-amz-checksum-").unwrap_or(&lower);
        Algo::ALL.into_iter().find(|a| a.key() == bare)
    }

    fn from_dto(algorithm: &ChecksumAlgorithm) -> S3Result<Algo> {
        Algo::parse(algorithm.as_str()).ok_or_else(|| {
            s3_error!(
                InvalidRequest,
                "Checksum algorithm {} is not supported",
                algorithm.as_str()
            )
        })
    }

    fn raw_len(self) -> usize {
        match self {
            Algo::Crc32 | Algo::Crc32c => 4,
            Algo::Crc64Nvme => 8,
            Algo::Sha1 => 20,
            Algo::Sha256 => 32,
        }
    }

    /// Whether S3 can give a multipart object this algorithm's whole-object checksum.
    fn has_full_object(self) -> bool {
        matches!(self, Algo::Crc32 | Algo::Crc32c | Algo::Crc64Nvme)
    }

    fn digest(self, data: &[u8]) -> Vec<u8> {
        let mut running = Running::new(self);
        running.update(data);
        running.finalize()
    }
}

enum Running {
    Crc32(Crc32),
    Crc32c(Crc32c),
    Sha1(Sha1),
    Sha256(Sha256),
    Crc64Nvme(Crc64Nvme),
}

impl Running {
    fn new(algo: Algo) -> Self {
        match algo {
            Algo::Crc32 => Running::Crc32(Crc32::new()),
            Algo::Crc32c => Running::Crc32c(Crc32c::new()),
            Algo::Sha1 => Running::Sha1(Sha1::new()),
            Algo::Sha256 => Running::Sha256(Sha256::new()),
            Algo::Crc64Nvme => Running::Crc64Nvme(Crc64Nvme::new()),
        }
    }

    fn update(&mut self, data: &[u8]) {
        match self {
            Running::Crc32(h) => h.update(data),
            Running::Crc32c(h) => h.update(data),
            Running::Sha1(h) => h.update(data),
            Running::Sha256(h) => h.update(data),
            Running::Crc64Nvme(h) => h.update(data),
        }
    }

    fn finalize(self) -> Vec<u8> {
        match self {
            Running::Crc32(h) => h.finalize().to_vec(),
            Running::Crc32c(h) => h.finalize().to_vec(),
            Running::Sha1(h) => h.finalize().as_ref().to_vec(),
            Running::Sha256(h) => h.finalize().as_ref().to_vec(),
            Running::Crc64Nvme(h) => h.finalize().to_vec(),
        }
    }
}

/// The trailing headers of an aws-chunked body (`x-amz-trailer`), which the outer s3s
/// service verified and hands to the inner request: readable once the body has ended.
#[derive(Clone)]
pub struct Trailer {
    /// The `x-amz-trailer` header: the name of the trailing checksum.
    pub name: String,
    pub headers: TrailingHeaders,
}

/// The checksums one body must have and the ones to compute for it.
#[derive(Clone, Default)]
pub struct Expected {
    compute: Vec<Algo>,
    /// Values the client sent in headers, decoded.
    sent: Vec<(Algo, Vec<u8>)>,
    /// A value that arrives after the body.
    trailer: Option<(Algo, TrailingHeaders)>,
    /// Values known without hashing (a multipart object's composite checksum).
    known: Checksums,
}

/// The five `x-amz-checksum-*` values of a request or a listed part, by algorithm.
pub fn sent_values(c: &dto::Checksum) -> [(Algo, Option<&str>); 5] {
    [
        (Algo::Crc32, c.checksum_crc32.as_deref()),
        (Algo::Crc32c, c.checksum_crc32c.as_deref()),
        (Algo::Sha1, c.checksum_sha1.as_deref()),
        (Algo::Sha256, c.checksum_sha256.as_deref()),
        (Algo::Crc64Nvme, c.checksum_crc64nvme.as_deref()),
    ]
}

fn decode(algo: Algo, b64: &str) -> S3Result<Vec<u8>> {
    STANDARD
        .decode(b64.trim())
        .ok()
        .filter(|raw| raw.len() == algo.raw_len())
        .ok_or_else(|| {
            s3_error!(
                InvalidRequest,
                "Value for x-amz-checksum-{} header is invalid.",
                algo.key()
            )
        })
}

fn mismatch(algo: Algo) -> S3Error {
    s3_error!(
        BadDigest,
        "The {} you specified did not match the calculated checksum.",
        algo.s3_name()
    )
}

impl Expected {
    /// From a PutObject or UploadPart: the checksum headers, the SDK's algorithm
    /// (`x-amz-sdk-checksum-algorithm`) and the trailer the outer service forwarded.
    pub fn from_request(
        sent: &dto::Checksum,
        algorithm: Option<&ChecksumAlgorithm>,
        trailer: Option<&Trailer>,
    ) -> S3Result<Expected> {
        let mut expected = Expected::default();
        for (algo, value) in sent_values(sent) {
            if let Some(b64) = value {
                expected.sent.push((algo, decode(algo, b64)?));
                expected = expected.with(algo);
            }
        }
        if let Some(trailer) = trailer {
            let algo = Algo::parse(&trailer.name).ok_or_else(|| {
                s3_error!(
                    InvalidRequest,
                    "x-amz-trailer {} is not a supported checksum",
                    trailer.name
                )
            })?;
            expected.trailer = Some((algo, trailer.headers.clone()));
            expected = expected.with(algo);
        }
        if let Some(algorithm) = algorithm {
            expected = expected.with(Algo::from_dto(algorithm)?);
        }
        Ok(expected)
    }

    /// Also computes `algo`.
    pub fn with(mut self, algo: Algo) -> Self {
        if !self.compute.contains(&algo) {
            self.compute.push(algo);
        }
        self
    }

    /// Whether `algo` is computed (sent, asked for, or added with [`Expected::with`]).
    pub fn computes(&self, algo: Algo) -> bool {
        self.compute.contains(&algo)
    }

    pub fn start(&self) -> Hashing {
        Hashing {
            running: self.compute.iter().map(|&a| (a, Running::new(a))).collect(),
            sent: self.sent.clone(),
            trailer: self.trailer.clone(),
            known: self.known.clone(),
        }
    }
}

/// The checksums of a body being read.
pub struct Hashing {
    running: Vec<(Algo, Running)>,
    sent: Vec<(Algo, Vec<u8>)>,
    trailer: Option<(Algo, TrailingHeaders)>,
    known: Checksums,
}

impl Hashing {
    pub fn update(&mut self, data: &[u8]) {
        for (_, running) in &mut self.running {
            running.update(data);
        }
    }

    /// Once the body has ended (so its trailer has arrived): the checksums, or
    /// `BadDigest` when one the client sent does not match.
    pub fn finish(self) -> S3Result<Checksums> {
        let mut sent = self.sent;
        if let Some((algo, trailers)) = self.trailer {
            let value = trailers
                .read(|h| {
                    h.get(format!("x-amz-checksum-{}", algo.key()))
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string)
                })
                .flatten()
                .ok_or_else(|| {
                    s3_error!(
                        InvalidRequest,
                        "the trailing x-amz-checksum-{} did not arrive",
                        algo.key()
                    )
                })?;
            sent.push((algo, decode(algo, &value)?));
        }
        let mut sums = self.known;
        for (algo, running) in self.running {
            let raw = running.finalize();
            if sent.iter().any(|(a, v)| *a == algo && *v != raw) {
                return Err(mismatch(algo));
            }
            // A composite checksum stays the object's checksum for its algorithm.
            sums.entry(algo.key().to_string())
                .or_insert_with(|| STANDARD.encode(raw));
        }
        Ok(sums)
    }
}

/// The checksums as S3's DTO (for parts, whose outputs have no checksum type).
pub fn to_dto(sums: &Checksums) -> dto::Checksum {
    let get = |a: Algo| sums.get(a.key()).cloned();
    dto::Checksum {
        checksum_crc32: get(Algo::Crc32),
        checksum_crc32c: get(Algo::Crc32c),
        checksum_sha1: get(Algo::Sha1),
        checksum_sha256: get(Algo::Sha256),
        checksum_crc64nvme: get(Algo::Crc64Nvme),
        ..Default::default()
    }
}

/// COMPOSITE when the object's checksums were made from its parts' (`…-N`).
pub fn checksum_type(sums: &Checksums) -> Option<ChecksumType> {
    if sums.is_empty() {
        return None;
    }
    let composite = sums.values().any(|v| v.contains('-'));
    Some(ChecksumType::from_static(if composite {
        ChecksumType::COMPOSITE
    } else {
        ChecksumType::FULL_OBJECT
    }))
}

/// Sets the five `checksum_*` fields of an S3 output from stored checksums.
macro_rules! fill {
    ($out:expr, $sums:expr) => {{
        let c = $crate::s3::checksums::to_dto($sums);
        $out.checksum_crc32 = c.checksum_crc32;
        $out.checksum_crc32c = c.checksum_crc32c;
        $out.checksum_sha1 = c.checksum_sha1;
        $out.checksum_sha256 = c.checksum_sha256;
        $out.checksum_crc64nvme = c.checksum_crc64nvme;
    }};
    // Outputs for a whole object also say whether it is COMPOSITE or FULL_OBJECT.
    ($out:expr, $sums:expr, typed) => {{
        $crate::s3::checksums::fill!($out, $sums);
        $out.checksum_type = $crate::s3::checksums::checksum_type($sums);
    }};
}
pub(crate) use fill;

/// What a PutObject or UploadPart input must be checked against: its checksum
/// headers, its `x-amz-sdk-checksum-algorithm`, its forwarded trailer.
macro_rules! expected {
    ($req:expr, $input:expr) => {
        $crate::s3::checksums::Expected::from_request(
            &$crate::s3::checksums::sent!($input),
            $input.checksum_algorithm.as_ref(),
            $req.extensions.get::<$crate::s3::checksums::Trailer>(),
        )
    };
}
pub(crate) use expected;

/// The five `x-amz-checksum-*` values of an S3 input (or a listed part) as the DTO.
macro_rules! sent {
    ($input:expr) => {
        s3s::dto::Checksum {
            checksum_crc32: $input.checksum_crc32.clone(),
            checksum_crc32c: $input.checksum_crc32c.clone(),
            checksum_sha1: $input.checksum_sha1.clone(),
            checksum_sha256: $input.checksum_sha256.clone(),
            checksum_crc64nvme: $input.checksum_crc64nvme.clone(),
            ..Default::default()
        }
    };
}
pub(crate) use sent;

/// A file's stored checksums when a full GET/HEAD asked for them
/// (`x-amz-checksum-mode: ENABLED`); S3 returns none for a range.
pub async fn stored_if_asked(
    state: &crate::state::AppState,
    file_id: zib_proto::FileId,
    mode: Option<&dto::ChecksumMode>,
) -> S3Result<Checksums> {
    if !mode.is_some_and(|m| m.as_str().eq_ignore_ascii_case(dto::ChecksumMode::ENABLED)) {
        return Ok(Checksums::new());
    }
    state
        .store
        .object_checksums(file_id)
        .await
        .map_err(super::errors::internal)
}

/// How a multipart upload's object gets its checksum, chosen at CreateMultipartUpload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UploadChecksum {
    pub algo: Algo,
    pub full_object: bool,
}

impl UploadChecksum {
    /// From `x-amz-checksum-algorithm` and `x-amz-checksum-type`; CRC64NVME is always
    /// FULL_OBJECT, the others COMPOSITE unless asked (S3's defaults).
    pub fn from_request(
        algorithm: Option<&ChecksumAlgorithm>,
        kind: Option<&ChecksumType>,
    ) -> S3Result<Option<UploadChecksum>> {
        let full = kind.map(|k| k.as_str().eq_ignore_ascii_case(ChecksumType::FULL_OBJECT));
        let Some(algorithm) = algorithm else {
            return match full {
                Some(_) => Err(s3_error!(
                    InvalidRequest,
                    "x-amz-checksum-type needs x-amz-checksum-algorithm"
                )),
                None => Ok(None),
            };
        };
        let algo = Algo::from_dto(algorithm)?;
        let full_object = full.unwrap_or(algo == Algo::Crc64Nvme);
        if full_object && !algo.has_full_object() {
            return Err(s3_error!(
                InvalidRequest,
                "The FULL_OBJECT checksum type is not supported with {}",
                algo.s3_name()
            ));
        }
        if !full_object && algo == Algo::Crc64Nvme {
            return Err(s3_error!(
                InvalidRequest,
                "The COMPOSITE checksum type is not supported with CRC64NVME"
            ));
        }
        Ok(Some(UploadChecksum { algo, full_object }))
    }

    pub fn algorithm(self) -> ChecksumAlgorithm {
        ChecksumAlgorithm::from(self.algo.s3_name().to_string())
    }

    pub fn kind(self) -> ChecksumType {
        ChecksumType::from_static(if self.full_object {
            ChecksumType::FULL_OBJECT
        } else {
            ChecksumType::COMPOSITE
        })
    }
}

/// The checksums of a parts' list named by Complete against the stored ones: a part
/// listed with another value is `InvalidPart`, as S3 answers.
pub fn check_listed_part(number: i32, listed: &dto::Checksum, stored: &Checksums) -> S3Result<()> {
    for (algo, value) in sent_values(listed) {
        let Some(value) = value else { continue };
        let raw = decode(algo, value)?;
        let same = stored
            .get(algo.key())
            .and_then(|v| STANDARD.decode(v).ok())
            .is_some_and(|s| s == raw);
        if !same {
            return Err(s3_error!(
                InvalidPart,
                "part {number} has another {} than the one listed",
                algo.s3_name()
            ));
        }
    }
    Ok(())
}

/// What Complete's re-reading of the parts must compute and check: the whole-object
/// CRC64NVME always; a FULL_OBJECT upload's checksum (compared with the one the
/// client sent to Complete, if any); a COMPOSITE upload's checksum is made here from
/// the parts' ones.
pub fn for_complete(
    upload: Option<UploadChecksum>,
    parts: &[Checksums],
    sent: &dto::Checksum,
) -> S3Result<Expected> {
    let mut expected = Expected::default().with(Algo::Crc64Nvme);
    for (algo, value) in sent_values(sent) {
        let Some(b64) = value else { continue };
        // A composite value (`…-N`) is checked against the parts, not the bytes.
        if b64.contains('-') {
            continue;
        }
        expected.sent.push((algo, decode(algo, b64)?));
        expected = expected.with(algo);
    }
    let Some(upload) = upload else {
        return Ok(expected);
    };
    if upload.full_object {
        return Ok(expected.with(upload.algo));
    }
    let composite = composite(upload.algo, parts.iter())?;
    let sent_composite = sent_values(sent)
        .into_iter()
        .find(|(a, _)| *a == upload.algo)
        .and_then(|(_, v)| v);
    if sent_composite.is_some_and(|v| v.contains('-') && v != composite) {
        return Err(mismatch(upload.algo));
    }
    expected
        .known
        .insert(upload.algo.key().to_string(), composite);
    Ok(expected)
}

/// The checksums of a multipart object whose parts were coded as they arrived, from
/// the parts' own (`parts`: each part's plaintext size and checksums, in order), with
/// no second pass over the bytes: CRCs are combined (CRC64NVME always, and a
/// FULL_OBJECT upload's), a COMPOSITE upload's is the checksum of the parts'
/// checksums. A whole-object value sent to Complete is checked against the combined
/// CRC; one that cannot be combined (SHA) is refused, as S3 refuses it.
pub fn for_parts_complete(
    upload: Option<UploadChecksum>,
    parts: &[(u64, &Checksums)],
    sent: &dto::Checksum,
) -> S3Result<Checksums> {
    let combined = |algo: Algo| -> Option<Vec<u8>> {
        let crc = match algo {
            Algo::Crc32 => Crc::Crc32,
            Algo::Crc32c => Crc::Crc32c,
            Algo::Crc64Nvme => Crc::Crc64Nvme,
            Algo::Sha1 | Algo::Sha256 => return None,
        };
        parts
            .iter()
            .try_fold(crc_combine::empty(crc), |whole, (len, sums)| {
                let part = STANDARD.decode(sums.get(algo.key())?).ok()?;
                crc_combine::combine(crc, &whole, &part, *len)
            })
    };
    let mut sums = Checksums::new();
    if let Some(raw) = combined(Algo::Crc64Nvme) {
        sums.insert(Algo::Crc64Nvme.key().to_string(), STANDARD.encode(raw));
    }
    if let Some(upload) = upload {
        let value = if upload.full_object {
            STANDARD.encode(combined(upload.algo).ok_or_else(|| internal_missing(upload.algo))?)
        } else {
            composite(upload.algo, parts.iter().map(|(_, sums)| *sums))?
        };
        sums.insert(upload.algo.key().to_string(), value);
    }
    for (algo, value) in sent_values(sent) {
        let Some(value) = value else { continue };
        if value.contains('-') {
            // A composite value is checked against the one made from the parts.
            let ours = sums.get(algo.key()).filter(|v| v.contains('-'));
            if ours.is_some_and(|ours| ours != value) {
                return Err(mismatch(algo));
            }
            continue;
        }
        let raw = decode(algo, value)?;
        match combined(algo) {
            Some(ours) if ours == raw => {
                sums.insert(algo.key().to_string(), STANDARD.encode(ours));
            }
            Some(_) => return Err(mismatch(algo)),
            None => {
                return Err(s3_error!(
                    InvalidRequest,
                    "the whole-object {} of a multipart upload can only be checked for a CRC \
                     every part was uploaded with",
                    algo.s3_name()
                ))
            }
        }
    }
    Ok(sums)
}

/// S3's COMPOSITE checksum of a multipart object: `algo` over the parts' raw
/// checksums concatenated, then `-N`.
fn composite<'a>(
    algo: Algo,
    parts: impl ExactSizeIterator<Item = &'a Checksums>,
) -> S3Result<String> {
    let count = parts.len();
    let mut joined = Vec::new();
    for part in parts {
        let raw = part
            .get(algo.key())
            .and_then(|v| STANDARD.decode(v).ok())
            .ok_or_else(|| internal_missing(algo))?;
        joined.extend_from_slice(&raw);
    }
    Ok(format!("{}-{count}", STANDARD.encode(algo.digest(&joined))))
}

fn internal_missing(algo: Algo) -> S3Error {
    s3_error!(
        InvalidRequest,
        "a part of this upload was stored without its {} checksum",
        algo.s3_name()
    )
}

/// The headers of a request whose aws-chunked body the outer service de-chunked, as
/// the inner request must see them: botocore sends trailing checksums with
/// `Transfer-Encoding: chunked` and no Content-Length, so the decoded length becomes
/// the Content-Length.
pub fn dechunked(headers: &mut http::HeaderMap) {
    if !headers.contains_key(http::header::CONTENT_LENGTH) {
        if let Some(decoded) = headers.get("x-amz-decoded-content-length").cloned() {
            headers.insert(http::header::CONTENT_LENGTH, decoded);
            headers.remove(http::header::TRANSFER_ENCODING);
        }
    }
    // `aws-chunked` is the framing the outer service removed, not the object's encoding.
    if headers.contains_key("x-amz-decoded-content-length") {
        let rest = headers
            .get(http::header::CONTENT_ENCODING)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|t| !t.is_empty() && !t.eq_ignore_ascii_case("aws-chunked"))
                    .collect::<Vec<_>>()
                    .join(",")
            });
        match rest.map(|r| http::HeaderValue::from_str(&r)) {
            Some(Ok(v)) if !v.is_empty() => {
                headers.insert(http::header::CONTENT_ENCODING, v);
            }
            Some(_) => {
                headers.remove(http::header::CONTENT_ENCODING);
            }
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hashed(expected: &Expected, data: &[u8]) -> S3Result<Checksums> {
        let mut h = expected.start();
        h.update(data);
        h.finish()
    }

    #[test]
    fn known_vectors_and_mismatch_names_the_algorithm() {
        // CRC32("hello") = 0x3610a686, CRC32C("hello") = 0x9a71bb4c.
        let sent = dto::Checksum {
            checksum_crc32: Some(STANDARD.encode(0x3610a686u32.to_be_bytes())),
            checksum_crc32c: Some(STANDARD.encode(0x9a71bb4cu32.to_be_bytes())),
            ..Default::default()
        };
        let expected = Expected::from_request(&sent, None, None).unwrap();
        let sums = hashed(&expected, b"hello").unwrap();
        assert_eq!(sums.len(), 2);
        let err = hashed(&expected, b"hellO").unwrap_err();
        assert_eq!(err.code().as_str(), "BadDigest");
        assert!(err.message().unwrap_or("").contains("CRC32"), "{err:?}");
    }

    #[test]
    fn malformed_values_are_refused() {
        let sent = dto::Checksum {
            checksum_sha256: Some("AAAA".into()),
            ..Default::default()
        };
        let Err(err) = Expected::from_request(&sent, None, None) else {
            panic!("a 3-byte SHA256 was accepted");
        };
        assert_eq!(err.code().as_str(), "InvalidRequest");
    }

    #[test]
    fn composite_is_the_checksum_of_the_parts_checksums() {
        let parts: Vec<Checksums> = [&b"ab"[..], b"cd"]
            .iter()
            .map(|p| {
                let mut sums = Checksums::new();
                sums.insert("sha256".into(), STANDARD.encode(Algo::Sha256.digest(p)));
                sums
            })
            .collect();
        let upload = UploadChecksum {
            algo: Algo::Sha256,
            full_object: false,
        };
        let expected = for_complete(Some(upload), &parts, &dto::Checksum::default()).unwrap();
        let sums = hashed(&expected, b"abcd").unwrap();
        let mut joined = Algo::Sha256.digest(b"ab");
        joined.extend(Algo::Sha256.digest(b"cd"));
        assert_eq!(
            sums["sha256"],
            format!("{}-2", STANDARD.encode(Algo::Sha256.digest(&joined)))
        );
        assert_eq!(
            sums["crc64nvme"],
            STANDARD.encode(Algo::Crc64Nvme.digest(b"abcd"))
        );
        assert_eq!(
            checksum_type(&sums).map(|t| t.as_str().to_string()),
            Some("COMPOSITE".to_string())
        );
    }

    #[test]
    fn dechunked_bodies_carry_their_decoded_length_and_no_framing() {
        let mut h = http::HeaderMap::new();
        h.insert("transfer-encoding", "chunked".parse().unwrap());
        h.insert("content-encoding", "gzip, aws-chunked".parse().unwrap());
        h.insert("x-amz-decoded-content-length", "42".parse().unwrap());
        dechunked(&mut h);
        assert_eq!(h["content-length"], "42");
        assert_eq!(h["content-encoding"], "gzip");
        assert!(!h.contains_key("transfer-encoding"));
        let mut only = http::HeaderMap::new();
        only.insert("content-length", "7".parse().unwrap());
        only.insert("content-encoding", "aws-chunked".parse().unwrap());
        only.insert("x-amz-decoded-content-length", "5".parse().unwrap());
        dechunked(&mut only);
        assert_eq!(only["content-length"], "7", "s3s already rewrote it");
        assert!(!only.contains_key("content-encoding"));
    }

    #[test]
    fn upload_checksum_defaults_follow_s3() {
        let alg = |s: &str| ChecksumAlgorithm::from(s.to_string());
        let full = ChecksumType::from_static(ChecksumType::FULL_OBJECT);
        let crc64 = UploadChecksum::from_request(Some(&alg("CRC64NVME")), None).unwrap();
        assert!(crc64.is_some_and(|u| u.full_object));
        let crc32 = UploadChecksum::from_request(Some(&alg("CRC32")), None).unwrap();
        assert!(crc32.is_some_and(|u| !u.full_object));
        assert!(UploadChecksum::from_request(Some(&alg("SHA1")), Some(&full)).is_err());
        assert!(UploadChecksum::from_request(None, None).unwrap().is_none());
    }
}

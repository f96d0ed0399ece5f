//! The stable machine codes of every JSON error answer (`ErrorBody::code`), one
//! constant each, so the party that sends a code and the party that branches on it
//! cannot drift apart. Codes are API: never change a string, only add new ones.
//! (The S3 surface answers with S3's own XML codes, which are not listed here.)

// --- shared by the server and the nodes ---

/// A field of the request is missing or malformed; the sentence names the field.
pub const INVALID_FIELD: &str = "invalid_field";
/// The body is not JSON (or not the JSON shape the endpoint takes).
pub const INVALID_JSON: &str = "invalid_json";
/// A request that is malformed in a way no single field explains.
pub const INVALID_REQUEST: &str = "invalid_request";
/// No credentials, or credentials that do not check out.
pub const UNAUTHORIZED: &str = "unauthorized";
/// Valid credentials that do not reach this resource.
pub const FORBIDDEN: &str = "forbidden";
pub const NOT_FOUND: &str = "not_found";
pub const CONFLICT: &str = "conflict";
/// `DELETE /v1/api/me/buckets/{bucket}` of a bucket holding objects or uploads.
pub const BUCKET_NOT_EMPTY: &str = "bucket_not_empty";
pub const RANGE_NOT_SATISFIABLE: &str = "range_not_satisfiable";
/// A conditional request (`If-Match`, `If-Unmodified-Since`) whose condition does not hold.
pub const PRECONDITION_FAILED: &str = "precondition_failed";
pub const METHOD_NOT_ALLOWED: &str = "method_not_allowed";
pub const PAYLOAD_TOO_LARGE: &str = "payload_too_large";
pub const UNSUPPORTED_MEDIA_TYPE: &str = "unsupported_media_type";
/// No node (or other capacity) can take the request now; retrying later may work.
pub const UNAVAILABLE: &str = "unavailable";
/// A party the server relies on (a node) failed to answer usefully.
pub const UPSTREAM_FAILED: &str = "upstream_failed";
/// Our fault, not the caller's.
pub const INTERNAL: &str = "internal";
/// A file whose stored bytes are all there and match their hashes, but do not
/// decrypt (garbage uploaded under a valid header, a client bug, a wrong key in the
/// metadata): retrying will not help.
pub const UNREADABLE: &str = "unreadable";

// --- storage node answers (uploads, shards, audits) ---

pub const INVALID_BLOB_ID: &str = "invalid_blob_id";
pub const INVALID_CONTENT_LENGTH: &str = "invalid_content_length";
pub const INVALID_NONCE: &str = "invalid_nonce";
pub const INVALID_PART_NUMBER: &str = "invalid_part_number";
/// The capability token is malformed or its signature does not verify.
pub const INVALID_TOKEN: &str = "invalid_token";
/// The capability token has expired: the client must initiate a new upload.
pub const TOKEN_EXPIRED: &str = "token_expired";
/// The capability token was already spent on a completed upload.
pub const TOKEN_USED: &str = "token_used";
/// The token was issued for another node.
pub const WRONG_NODE: &str = "wrong_node";
/// The token was issued for another blob.
pub const WRONG_BLOB: &str = "wrong_blob";
/// The token authorises another operation (e.g. a part token on a single upload).
pub const WRONG_OPERATION: &str = "wrong_operation";
/// The token authorises another part.
pub const WRONG_PART: &str = "wrong_part";
/// The body's length is not the size the token names.
pub const SIZE_MISMATCH: &str = "size_mismatch";
pub const BODY_TOO_SHORT: &str = "body_too_short";
pub const BODY_TOO_LARGE: &str = "body_too_large";
pub const BODY_INTERRUPTED: &str = "body_interrupted";
/// Another request is writing the same blob or part right now.
pub const IN_PROGRESS: &str = "in_progress";
/// A retried part had in fact been stored the first time.
pub const PART_ALREADY_UPLOADED: &str = "part_already_uploaded";
/// The upload is already stored and distributed.
pub const UPLOAD_ALREADY_COMPLETED: &str = "upload_already_completed";
/// A pushed shard's blob is already stored.
pub const BLOB_EXISTS: &str = "blob_exists";
/// Multipart completion before every part is stored.
pub const MISSING_PARTS: &str = "missing_parts";
pub const INSUFFICIENT_STORAGE: &str = "insufficient_storage";
/// The node has not registered with its server yet.
pub const NODE_NOT_REGISTERED: &str = "node_not_registered";
/// The server refused the upload the node reported.
pub const UPLOAD_REFUSED: &str = "upload_refused";
/// The node stored the upload but could not place its shards on peers.
pub const DISTRIBUTION_FAILED: &str = "distribution_failed";
/// Too few storage nodes are online to give every shard of a segment its own node:
/// the originator keeps the upload and asks again later (node RPC only).
pub const TOO_FEW_NODES: &str = "too_few_nodes";
/// An encoding node's lease on a job lapsed, or the job was cancelled: stop working on it.
pub const LEASE_GONE: &str = "lease_gone";
/// The upload does not start with the envelope header the server issued for it
/// (not an envelope at all, another version, or another chunk size or nonce prefix).
pub const INVALID_ENVELOPE: &str = "invalid_envelope";

// --- clients ---

/// What a client records when an error answer carried no JSON error body.
pub const UNKNOWN: &str = "unknown";

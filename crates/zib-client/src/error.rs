//! One error type for the SDK. Every message names the party that failed (API, node,
//! CDN) and what it said, so a CLI can print it as is.

use std::fmt;

use zib_proto::api::ErrorBody;
use zib_proto::error_codes as codes;

/// Which HTTP party answered (or failed to answer).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// The tenant API (`/v1/api/...`).
    Api,
    /// A storage node (upload URLs).
    Node,
    /// The CDN (`/objects/...`).
    Cdn,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Origin::Api => "ZiB API",
            Origin::Node => "node",
            Origin::Cdn => "CDN",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// A non-success answer. `code` is the server's stable machine code (`"unknown"` when
    /// the body was not a JSON error), `message` its sentence (or the raw body).
    #[error("{}", describe_answer(*origin, *status, code, message))]
    Api {
        origin: Origin,
        status: u16,
        code: String,
        message: String,
    },
    /// The party could not be reached at all (DNS, refused, reset, timeout).
    #[error("{origin} unreachable at {url}: {reason}")]
    Unreachable {
        origin: Origin,
        url: String,
        /// The innermost cause, e.g. "Connection refused (os error 111)".
        reason: String,
        #[source]
        source: reqwest::Error,
    },
    #[error(transparent)]
    Http(#[from] reqwest::Error),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("configuration: {0}")]
    Config(String),
    /// The registration cannot be used as is (expired, inconsistent, wrong file).
    #[error("{0}")]
    Registration(String),
    #[error(transparent)]
    Crypto(#[from] zib_crypto::EnvelopeError),
    /// The upload failed after its bytes were committed on the node (the answer to
    /// the last call was lost, the node or server failed while distributing): the
    /// file may well become readable. Never report this as a plain failure.
    #[error("file {file_id}: outcome unknown — check `zib pipeline {file_id}` (the bytes reached the node, then: {source})")]
    OutcomeUnknown {
        file_id: zib_proto::FileId,
        cdn_url: String,
        #[source]
        source: Box<ClientError>,
    },
}

impl ClientError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }

    /// Maps a transport failure: connection-level problems name the unreachable party.
    /// Node URLs carry a capability token in their query: it is cut from the message and
    /// from the wrapped error, so errors can be logged.
    pub(crate) fn transport(origin: Origin, url: &str, err: reqwest::Error) -> Self {
        let err = if origin == Origin::Node {
            err.without_url()
        } else {
            err
        };
        if err.is_connect() || err.is_timeout() {
            Self::Unreachable {
                origin,
                url: redact(url).to_string(),
                reason: root_cause(&err),
                source: err,
            }
        } else {
            Self::Http(err)
        }
    }

    /// A node refused the registration's token because it has expired.
    pub fn is_registration_expired(&self) -> bool {
        matches!(self, Self::Api { origin: Origin::Node, status, code, message }
            if is_expired_answer(*status, code, message))
    }

    /// A node refused the registration because it was already used for an upload.
    pub fn is_registration_used(&self) -> bool {
        matches!(self, Self::Api { origin: Origin::Node, status, code, .. }
            if is_used_answer(*status, code))
    }

    /// Names the piece of work an answer was about, e.g. "part 3".
    pub(crate) fn about(self, what: &str) -> Self {
        match self {
            Self::Api {
                origin,
                status,
                code,
                message,
            } => Self::Api {
                origin,
                status,
                code,
                message: format!("{message} ({what})"),
            },
            Self::Unreachable {
                origin,
                url,
                reason,
                source,
            } => Self::Unreachable {
                origin,
                url,
                reason: format!("{reason} ({what})"),
                source,
            },
            other => other,
        }
    }

    /// The file whose upload may or may not have completed ([`ClientError::OutcomeUnknown`]).
    pub fn outcome_unknown(&self) -> Option<zib_proto::FileId> {
        match self {
            Self::OutcomeUnknown { file_id, .. } => Some(*file_id),
            _ => None,
        }
    }

    /// Worth running the same upload again with the same registration: nothing
    /// refused it for good (network loss, a node or server down, 5xx).
    pub fn is_resumable(&self) -> bool {
        match self {
            Self::Api { status, code, .. } => {
                *status >= 500
                    || *status == 408
                    || *status == 429
                    || code == codes::IN_PROGRESS
                    || code == codes::NODE_NOT_REGISTERED
            }
            Self::Unreachable { .. } | Self::Http(_) | Self::OutcomeUnknown { .. } => true,
            _ => false,
        }
    }

    /// The HTTP status, when the party answered with one.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Api { status, .. } => Some(*status),
            Self::Http(e) => e.status().map(|s| s.as_u16()),
            _ => None,
        }
    }
}

/// Reads a non-success response into [`ClientError::Api`]: the JSON [`ErrorBody`] when
/// there is one, else the raw text.
pub(crate) async fn error_from_response(origin: Origin, resp: reqwest::Response) -> ClientError {
    /// Enough of a proxy's HTML error page to recognise it, not a whole page in a terminal.
    const MAX_RAW_MESSAGE: usize = 300;

    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    let (code, message) = match serde_json::from_str::<ErrorBody>(&text) {
        Ok(body) => (body.code, body.error),
        Err(_) => {
            let raw = text.trim();
            let message = if raw.is_empty() {
                status.canonical_reason().unwrap_or("no body").to_string()
            } else if raw.len() > MAX_RAW_MESSAGE {
                let mut cut = MAX_RAW_MESSAGE;
                while !raw.is_char_boundary(cut) {
                    cut -= 1;
                }
                format!("{}…", &raw[..cut])
            } else {
                raw.to_string()
            };
            (codes::UNKNOWN.to_string(), message)
        }
    };
    ClientError::Api {
        origin,
        status: status.as_u16(),
        code,
        message,
    }
}

/// The words every SDK uses for a node's answer, naming spent and expired
/// registrations first (the browser SDK words them the same).
fn describe_answer(origin: Origin, status: u16, code: &str, message: &str) -> String {
    let answer = format!("HTTP {status} from {origin}: {message}");
    if origin != Origin::Node {
        answer
    } else if is_expired_answer(status, code, message) {
        format!("upload registration expired (initiate a new upload): {answer}")
    } else if is_used_answer(status, code) {
        format!("upload registration already used (each registration uploads once; initiate a new upload): {answer}")
    } else {
        answer
    }
}

fn is_expired_answer(status: u16, code: &str, message: &str) -> bool {
    matches!(status, 401 | 403)
        && (code.to_ascii_lowercase().contains("expired")
            || message.to_ascii_lowercase().contains("expired"))
}

fn is_used_answer(status: u16, code: &str) -> bool {
    status == 409 && (code == codes::TOKEN_USED || code == codes::UPLOAD_ALREADY_COMPLETED)
}

/// The URL without its query (where upload tokens travel).
pub(crate) fn redact(url: &str) -> &str {
    url.split_once('?').map_or(url, |(base, _)| base)
}

fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = err;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

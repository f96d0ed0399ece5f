//! One error type for the SDK. Every message names the party that failed (API, node,
//! CDN) and what it said, so a CLI can print it as is.

use std::fmt;

use zib_proto::api::ErrorBody;

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
    #[error("HTTP {status} from {origin}: {message}")]
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
}

impl ClientError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }

    /// Maps a transport failure: connection-level problems name the unreachable party.
    pub(crate) fn transport(origin: Origin, url: &str, err: reqwest::Error) -> Self {
        if err.is_connect() || err.is_timeout() {
            Self::Unreachable {
                origin,
                url: url.to_string(),
                reason: root_cause(&err),
                source: err,
            }
        } else {
            Self::Http(err)
        }
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
            other => other,
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
            ("unknown".to_string(), message)
        }
    };
    ClientError::Api {
        origin,
        status: status.as_u16(),
        code,
        message,
    }
}

fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = err;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

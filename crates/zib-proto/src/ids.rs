//! Identifiers. Node-facing ids ([`BlobId`]) are fresh random UUIDs that never
//! equal or derive from a [`FileId`]: the file id is a public read capability.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A tenant-visible file id (UUIDv4). Also the CDN path: `/objects/{file_id}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct FileId(pub Uuid);

/// An opaque id under which a node stores bytes (a whole upload or one shard).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct BlobId(pub Uuid);

macro_rules! uuid_id {
    ($t:ident) => {
        impl $t {
            pub fn new_random() -> Self {
                Self(Uuid::new_v4())
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.hyphenated().fmt(f)
            }
        }
        impl FromStr for $t {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }
    };
}
uuid_id!(FileId);
uuid_id!(BlobId);

/// A storage node id: `ZB-` followed by six upper-case alphanumerics.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct NodeId(String);

#[derive(Debug, thiserror::Error)]
#[error("node id must look like ZB-XXXXXX (six of A-Z, 0-9), got {0:?}")]
pub struct InvalidNodeId(String);

impl NodeId {
    const ALPHABET: &'static [u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";

    pub fn new_random() -> Self {
        use rand::Rng;
        let mut rng = rand::thread_rng();
        let tail: String = (0..6)
            .map(|_| Self::ALPHABET[rng.gen_range(0..Self::ALPHABET.len())] as char)
            .collect();
        Self(format!("ZB-{tail}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for NodeId {
    type Error = InvalidNodeId;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        let ok = s.len() == 9
            && s.starts_with("ZB-")
            && s[3..]
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
        if ok {
            Ok(Self(s))
        } else {
            Err(InvalidNodeId(s))
        }
    }
}

impl From<NodeId> for String {
    fn from(n: NodeId) -> String {
        n.0
    }
}

impl FromStr for NodeId {
    type Err = InvalidNodeId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::try_from(s.to_string())
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ids_are_validated() {
        let id = NodeId::new_random();
        assert!(NodeId::from_str(id.as_str()).is_ok());
        assert!(NodeId::from_str("ZB-abc123").is_err());
        assert!(NodeId::from_str("XX-ABCDEF").is_err());
        assert!(NodeId::from_str("ZB-ABCDEFG").is_err());
    }
}

//! What an object carries besides its bytes: the standard headers and user metadata
//! an S3 client stored with it, its tags and the checksums it was sent with. Kept on
//! the file row, so a new file (a re-upload, a copy) starts with its own.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sqlx::Row;
use zib_proto::FileId;

use crate::{MetaError, Result, Store};

/// Headers a client sets at upload and gets back on every read (S3 GET/HEAD, CDN).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectHeaders {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_disposition: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_encoding: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_language: Option<String>,
    /// As the client sent it (an HTTP date).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
    /// `x-amz-meta-*` without the prefix, names lower-case.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
}

impl ObjectHeaders {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// A tag set, in the order the client gave it.
pub type Tags = Vec<(String, String)>;

/// Algorithm name (`crc32`, `crc32c`, `sha1`, `sha256`, `crc64nvme`) → base64 checksum.
pub type Checksums = BTreeMap<String, String>;

impl Store {
    pub async fn set_object_headers(&self, file_id: FileId, headers: &ObjectHeaders) -> Result<()> {
        self.set_json_column(Column::Headers, file_id, headers, headers.is_empty())
            .await
    }

    /// The headers stored with a file (empty for none, or an unknown file).
    pub async fn object_headers(&self, file_id: FileId) -> Result<ObjectHeaders> {
        Ok(self
            .json_column(Column::Headers, file_id)
            .await?
            .unwrap_or_default())
    }

    pub async fn set_object_tags(&self, file_id: FileId, tags: &Tags) -> Result<()> {
        self.set_json_column(Column::Tags, file_id, tags, tags.is_empty())
            .await
    }

    pub async fn object_tags(&self, file_id: FileId) -> Result<Tags> {
        Ok(self
            .json_column(Column::Tags, file_id)
            .await?
            .unwrap_or_default())
    }

    pub async fn set_object_checksums(&self, file_id: FileId, sums: &Checksums) -> Result<()> {
        self.set_json_column(Column::Checksums, file_id, sums, sums.is_empty())
            .await
    }

    pub async fn object_checksums(&self, file_id: FileId) -> Result<Checksums> {
        Ok(self
            .json_column(Column::Checksums, file_id)
            .await?
            .unwrap_or_default())
    }

    /// What the S3 gateway learns as it seals a PUT's body: the plaintext MD5 (the
    /// ETag) and the checksums, in one statement.
    pub async fn set_s3_content(
        &self,
        file_id: FileId,
        md5_hex: &str,
        sums: &Checksums,
    ) -> Result<()> {
        let sums = json_text(Column::Checksums, sums, sums.is_empty())?;
        sqlx::query("UPDATE files SET plaintext_md5 = $1, checksums = $2 WHERE file_id = $3")
            .bind(md5_hex)
            .bind(sums)
            .bind(file_id.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn set_json_column<T: Serialize>(
        &self,
        column: Column,
        file_id: FileId,
        value: &T,
        empty: bool,
    ) -> Result<()> {
        let json = json_text(column, value, empty)?;
        sqlx::query(column.update_sql())
            .bind(json)
            .bind(file_id.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn json_column<T: for<'de> Deserialize<'de>>(
        &self,
        column: Column,
        file_id: FileId,
    ) -> Result<Option<T>> {
        let row = sqlx::query(column.select_sql())
            .bind(file_id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let Some(text) = row.try_get::<Option<String>, _>("v")? else {
            return Ok(None);
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| MetaError::Corrupt {
                what: column.name(),
                detail: e.to_string(),
            })
    }
}

/// What the S3 gateway knows of an object besides its bytes once it has sealed
/// them: the MD5 that is its ETag, the checksums the client sent, and the headers
/// and tags the PUT carried (each kept with the file row).
#[derive(Clone, Copy, Debug)]
pub struct S3Content<'a> {
    pub md5_hex: &'a str,
    pub checksums: &'a Checksums,
    pub headers: &'a ObjectHeaders,
    pub tags: &'a Tags,
}

/// [`S3Content`] as `files` column texts (`None`: empty, the column stays NULL).
pub(crate) struct S3Columns {
    pub checksums: Option<String>,
    pub headers: Option<String>,
    pub tags: Option<String>,
}

impl S3Content<'_> {
    pub(crate) fn columns(&self) -> Result<S3Columns> {
        Ok(S3Columns {
            checksums: json_text(Column::Checksums, self.checksums, self.checksums.is_empty())?,
            headers: json_text(Column::Headers, self.headers, self.headers.is_empty())?,
            tags: json_text(Column::Tags, self.tags, self.tags.is_empty())?,
        })
    }
}

/// A JSON column's text; `None` (SQL NULL) when `empty`.
fn json_text<T: Serialize>(column: Column, value: &T, empty: bool) -> Result<Option<String>> {
    if empty {
        return Ok(None);
    }
    serde_json::to_string(value)
        .map(Some)
        .map_err(|e| MetaError::Corrupt {
            what: column.name(),
            detail: e.to_string(),
        })
}

/// The JSON columns of `files` this module reads and writes.
#[derive(Clone, Copy)]
enum Column {
    Headers,
    Tags,
    Checksums,
}

impl Column {
    fn name(self) -> &'static str {
        match self {
            Column::Headers => "files.object_headers",
            Column::Tags => "files.tags",
            Column::Checksums => "files.checksums",
        }
    }

    fn update_sql(self) -> &'static str {
        match self {
            Column::Headers => "UPDATE files SET object_headers = $1 WHERE file_id = $2",
            Column::Tags => "UPDATE files SET tags = $1 WHERE file_id = $2",
            Column::Checksums => "UPDATE files SET checksums = $1 WHERE file_id = $2",
        }
    }

    fn select_sql(self) -> &'static str {
        match self {
            Column::Headers => "SELECT object_headers AS v FROM files WHERE file_id = $1",
            Column::Tags => "SELECT tags AS v FROM files WHERE file_id = $1",
            Column::Checksums => "SELECT checksums AS v FROM files WHERE file_id = $1",
        }
    }
}

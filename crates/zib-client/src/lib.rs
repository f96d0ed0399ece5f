//! The Rust SDK for ZiB: initiate an upload with tenant credentials, encrypt the file
//! with envelope v1 exactly as the browser SDK does, upload it to the node, and read
//! files back through the CDN.
//!
//! The split mirrors the browser flow: [`Client::initiate`] needs the tenant secret
//! (a backend's job), [`upload_with_registration`] needs only the registration (what a
//! browser or any untrusted uploader gets).

mod download;
mod error;
mod plan;
mod seal_stream;
mod upload;

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderValue, AUTHORIZATION};
use reqwest::{Method, Url};
use serde::de::DeserializeOwned;
use zib_proto::api::{
    BucketDeleted, BucketInfo, BucketList, BucketSettings, FileInfo, InitiateRequest, ObjectList,
    OverwriteMode, Registration, UploadResult,
};
use zib_proto::FileId;

pub use download::download;
pub use error::{ClientError, Origin};
pub use upload::{upload_parts_held, upload_with_registration};

/// Where the API is when `ZIB_API_URL` is unset: what `zib dev` listens on.
pub const DEFAULT_API_URL: &str = "http://127.0.0.1:7070";

/// Gives up on a connection attempt that long; transfers themselves have no deadline
/// (multi-GiB uploads are legitimately slow).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub struct ClientConfig {
    pub api_url: String,
    pub access_key: String,
    pub secret_key: String,
}

impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConfig")
            .field("api_url", &self.api_url)
            .field("access_key", &self.access_key)
            .field("secret_key", &"..")
            .finish()
    }
}

impl ClientConfig {
    /// `ZIB_API_URL` (default [`DEFAULT_API_URL`]), `ZIB_ACCESS_KEY`, `ZIB_SECRET_KEY`.
    pub fn from_env() -> Result<Self, ClientError> {
        fn required(name: &str) -> Result<String, ClientError> {
            match std::env::var(name) {
                Ok(value) if !value.trim().is_empty() => Ok(value.trim().to_string()),
                _ => Err(ClientError::Config(format!(
                    "{name} is not set (the tenant credentials; `zib dev` prints working ones)"
                ))),
            }
        }
        let api_url = match std::env::var("ZIB_API_URL") {
            Ok(url) if !url.trim().is_empty() => url.trim().to_string(),
            _ => DEFAULT_API_URL.to_string(),
        };
        Ok(Self {
            api_url,
            access_key: required("ZIB_ACCESS_KEY")?,
            secret_key: required("ZIB_SECRET_KEY")?,
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// `done`/`total` are plaintext bytes sealed.
    Encrypting,
    /// `done`/`total` are envelope bytes handed to the connection.
    Uploading,
    /// 0 of 1 while the node stores and distributes, 1 of 1 once it has answered.
    Completing,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    pub stage: Stage,
    pub done: u64,
    pub total: u64,
}

/// Called from upload tasks, possibly several at once: keep it quick.
pub type ProgressFn = Arc<dyn Fn(Progress) + Send + Sync>;

#[derive(Clone)]
pub struct UploadOptions {
    /// Multipart parts in flight at once.
    pub concurrency: usize,
    /// Extra attempts for a part that failed on the network or with a 5xx.
    pub part_retries: u32,
    pub progress: Option<ProgressFn>,
    /// Ask the node which parts it already holds and send only the others (a
    /// registration used before, by a process that crashed or lost the network).
    pub resume: bool,
}

impl Default for UploadOptions {
    fn default() -> Self {
        Self {
            concurrency: 4,
            part_retries: 3,
            progress: None,
            resume: false,
        }
    }
}

impl fmt::Debug for UploadOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UploadOptions")
            .field("concurrency", &self.concurrency)
            .field("part_retries", &self.part_retries)
            .field("progress", &self.progress.is_some())
            .field("resume", &self.resume)
            .finish()
    }
}

/// A tenant's handle on the API.
///
/// The credential is added per API request, never as a default header of the inner
/// HTTP client: that client is also used against nodes and the CDN, which must never
/// see it.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    api_url: Url,
    authorization: HeaderValue,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("api_url", &self.api_url.as_str())
            .finish()
    }
}

impl Client {
    pub fn new(config: ClientConfig) -> Result<Self, ClientError> {
        let mut api_url = Url::parse(config.api_url.trim()).map_err(|e| {
            ClientError::Config(format!(
                "ZIB_API_URL {:?} is not a URL: {e}",
                config.api_url
            ))
        })?;
        if !matches!(api_url.scheme(), "http" | "https") || api_url.cannot_be_a_base() {
            return Err(ClientError::Config(format!(
                "ZIB_API_URL {:?} must be an http:// or https:// URL",
                config.api_url
            )));
        }
        // So that joining "v1/api/..." keeps any path prefix the API is mounted under.
        if !api_url.path().ends_with('/') {
            let path = format!("{}/", api_url.path());
            api_url.set_path(&path);
        }
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("zib-client/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let mut authorization = HeaderValue::from_str(&format!(
            "Bearer {}:{}",
            config.access_key, config.secret_key
        ))
        .map_err(|_| {
            ClientError::Config(
                "the access or secret key contains characters not allowed in a header".into(),
            )
        })?;
        authorization.set_sensitive(true);
        Ok(Self {
            http,
            api_url,
            authorization,
        })
    }

    /// The HTTP client, carrying no credential: fit for nodes and the CDN.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// The API base URL, always ending in `/`.
    pub fn api_url(&self) -> &Url {
        &self.api_url
    }

    /// The CDN URL of a file: `{api}/objects/{file_id}` (the server also serves the CDN).
    pub fn cdn_url(&self, file_id: FileId) -> String {
        format!("{}objects/{file_id}", self.api_url)
    }

    pub async fn initiate(
        &self,
        bucket: &str,
        key: &str,
        file_size: u64,
        content_type: Option<&str>,
    ) -> Result<Registration, ClientError> {
        let body = InitiateRequest {
            bucket: Some(bucket.to_string()),
            key: Some(key.to_string()),
            file_size: Some(file_size.into()),
            content_type: content_type.map(str::to_string),
            pipeline: None,
            capabilities: None,
        };
        let url = self.endpoint(&["v1", "api", "upload", "initiate"])?;
        self.call(self.http.post(url).json(&body)).await
    }

    /// Initiates and uploads in one go, for callers that hold the credentials anyway.
    pub async fn upload_path(
        &self,
        path: &Path,
        bucket: &str,
        key: &str,
        content_type: Option<&str>,
        opts: &UploadOptions,
    ) -> Result<UploadResult, ClientError> {
        let metadata = upload::regular_file_metadata(path).await?;
        let registration = self
            .initiate(bucket, key, metadata.len(), content_type)
            .await?;
        upload_with_registration(&self.http, &registration, path, opts).await
    }

    pub async fn file_info(&self, file_id: FileId) -> Result<FileInfo, ClientError> {
        let url = self.endpoint(&["v1", "api", "file", &file_id.to_string()])?;
        self.call(self.http.get(url)).await
    }

    pub async fn delete_file(&self, file_id: FileId) -> Result<serde_json::Value, ClientError> {
        let url = self.endpoint(&["v1", "api", "file", &file_id.to_string()])?;
        self.call(self.http.request(Method::DELETE, url)).await
    }

    /// `DELETE /v1/api/storage/{bucket}/{key}`: the current file of that key.
    pub async fn delete_object(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<serde_json::Value, ClientError> {
        let mut segments = vec!["v1", "api", "storage", bucket];
        segments.extend(key.split('/'));
        let url = self.endpoint(&segments)?;
        self.call(self.http.request(Method::DELETE, url)).await
    }

    /// `GET /v1/api/pipeline/{file_id}`: phase and every declared stage.
    pub async fn pipeline(&self, file_id: FileId) -> Result<serde_json::Value, ClientError> {
        let url = self.endpoint(&["v1", "api", "pipeline", &file_id.to_string()])?;
        self.call(self.http.get(url)).await
    }

    pub async fn list_buckets(&self) -> Result<BucketList, ClientError> {
        let url = self.endpoint(&["v1", "api", "me", "buckets"])?;
        self.call(self.http.get(url)).await
    }

    /// `PATCH /v1/api/me/buckets/{bucket}`: what an S3 PUT onto an existing key does
    /// in this bucket (the bucket is created if missing).
    pub async fn set_bucket_overwrite(
        &self,
        bucket: &str,
        overwrite: OverwriteMode,
    ) -> Result<BucketInfo, ClientError> {
        let url = self.endpoint(&["v1", "api", "me", "buckets", bucket])?;
        self.call(
            self.http
                .request(Method::PATCH, url)
                .json(&BucketSettings { overwrite }),
        )
        .await
    }

    /// `DELETE /v1/api/me/buckets/{bucket}`: only an empty bucket.
    pub async fn delete_bucket(&self, bucket: &str) -> Result<BucketDeleted, ClientError> {
        let url = self.endpoint(&["v1", "api", "me", "buckets", bucket])?;
        self.call(self.http.request(Method::DELETE, url)).await
    }

    pub async fn list_objects(
        &self,
        bucket: &str,
        prefix: Option<&str>,
    ) -> Result<ObjectList, ClientError> {
        let mut url = self.endpoint(&["v1", "api", "storage", bucket])?;
        if let Some(prefix) = prefix {
            url.query_pairs_mut().append_pair("prefix", prefix);
        }
        self.call(self.http.get(url)).await
    }

    /// `{api}/` plus `segments`, each percent-encoded as one path segment.
    fn endpoint(&self, segments: &[&str]) -> Result<Url, ClientError> {
        let mut url = self.api_url.clone();
        url.path_segments_mut()
            .map_err(|_| ClientError::Config(format!("{} cannot take a path", self.api_url)))?
            .pop_if_empty()
            .extend(segments);
        Ok(url)
    }

    async fn call<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<T, ClientError> {
        let base = self.api_url.as_str();
        let resp = request
            .header(AUTHORIZATION, self.authorization.clone())
            .send()
            .await
            .map_err(|e| ClientError::transport(Origin::Api, base, e))?;
        if !resp.status().is_success() {
            return Err(error::error_from_response(Origin::Api, resp).await);
        }
        resp.json::<T>()
            .await
            .map_err(|e| ClientError::transport(Origin::Api, base, e))
    }
}

#[cfg(test)]
mod tests;

//! Request bodies, read the same way by every surface.

use crate::error::ApiError;

/// Parses a JSON body into `T`, turning every failure into a 400 that says what is wrong.
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.is_empty() {
        return Err(ApiError::BadJson("body is empty".into()));
    }
    serde_json::from_slice(body).map_err(|e| ApiError::BadJson(e.to_string()))
}

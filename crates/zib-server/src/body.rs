//! Request bodies, read the same way by every surface.

use crate::error::ApiError;

/// Parses a JSON body into `T`, turning every failure into a 400 that says what is wrong.
/// Every body the server reads is an object: serde would also fill a struct from a JSON
/// array (`[null, null]`), which no client means and the OpenAPI document forbids.
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.is_empty() {
        return Err(ApiError::BadJson("body is empty".into()));
    }
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| ApiError::BadJson(e.to_string()))?;
    if !value.is_object() {
        return Err(ApiError::BadJson(format!(
            "the body must be a JSON object, not {}",
            kind(&value)
        )));
    }
    serde_json::from_value(value).map_err(|e| ApiError::BadJson(e.to_string()))
}

fn kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

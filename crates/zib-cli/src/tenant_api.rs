//! The tenant API as the client verbs call it: credentials from the environment,
//! Bearer auth, JSON in and out, and the API's error sentence on a refusal.

use anyhow::{Context, Result};
use reqwest::Method;
use serde_json::Value;
use zib_client::{Client, ClientConfig};

/// An API refusal with its HTTP status, so a caller can tell "not yet" from "no".
#[derive(Debug, thiserror::Error)]
#[error("{status}: {message}")]
pub struct ApiError {
    pub status: reqwest::StatusCode,
    pub message: String,
}

pub struct Api {
    client: Client,
    auth: String,
}

impl Api {
    pub fn from_env() -> Result<Self> {
        let config = ClientConfig::from_env()?;
        let auth = format!("Bearer {}:{}", config.access_key, config.secret_key);
        Ok(Self {
            client: Client::new(config)?,
            auth,
        })
    }

    pub async fn call(&self, method: Method, path: &[&str], body: Option<Value>) -> Result<Value> {
        self.request(method, path, &[], body).await
    }

    pub async fn call_with_query(
        &self,
        method: Method,
        path: &[&str],
        query: &[(&str, &str)],
    ) -> Result<Value> {
        self.request(method, path, query, None).await
    }

    async fn request(
        &self,
        method: Method,
        path: &[&str],
        query: &[(&str, &str)],
        body: Option<Value>,
    ) -> Result<Value> {
        let mut url = self.client.api_url().clone();
        url.path_segments_mut()
            .map_err(|_| anyhow::anyhow!("ZIB_API_URL cannot take a path"))?
            .pop_if_empty()
            .extend(path);
        for (k, v) in query {
            url.query_pairs_mut().append_pair(k, v);
        }
        let mut req = self
            .client
            .http()
            .request(method, url.clone())
            .header(reqwest::header::AUTHORIZATION, &self.auth);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("calling {}", self.client.api_url()))?;
        let status = resp.status();
        let value: Value = resp.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            let message = value["error"]
                .as_str()
                .unwrap_or("no error message")
                .to_string();
            return Err(ApiError { status, message }.into());
        }
        Ok(value)
    }
}

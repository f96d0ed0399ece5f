//! Reading through the CDN: the CDN decrypts, so a download is a plain streamed GET.

use std::ops::Range;

use futures::StreamExt;
use reqwest::header::RANGE;
use reqwest::StatusCode;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::error::{error_from_response, Origin};
use crate::ClientError;

pub async fn download<W: AsyncWrite + Unpin>(
    http: &reqwest::Client,
    cdn_url: &str,
    range: Option<Range<u64>>,
    out: &mut W,
) -> Result<u64, ClientError> {
    let mut request = http.get(cdn_url);
    if let Some(range) = &range {
        if range.start > range.end {
            return Err(ClientError::Config(format!(
                "byte range {}..{} ends before it starts",
                range.start, range.end
            )));
        }
        if range.is_empty() {
            return Ok(0);
        }
        request = request.header(RANGE, format!("bytes={}-{}", range.start, range.end - 1));
    }
    let resp = request
        .send()
        .await
        .map_err(|e| ClientError::transport(Origin::Cdn, cdn_url, e))?;
    if !resp.status().is_success() {
        return Err(error_from_response(Origin::Cdn, resp).await);
    }
    // A server that ignores Range answers 200 with the whole object: cut it here.
    let (mut skip, mut keep) = match (&range, resp.status()) {
        (Some(range), StatusCode::OK) => (range.start, range.end - range.start),
        _ => (0, u64::MAX),
    };
    let mut written = 0u64;
    let mut body = resp.bytes_stream();
    while let Some(piece) = body.next().await {
        let piece = piece.map_err(|e| ClientError::transport(Origin::Cdn, cdn_url, e))?;
        let mut piece = &piece[..];
        let skipped = skip.min(piece.len() as u64);
        skip -= skipped;
        piece = &piece[skipped as usize..];
        let taken = keep.min(piece.len() as u64);
        keep -= taken;
        piece = &piece[..taken as usize];
        if !piece.is_empty() {
            out.write_all(piece)
                .await
                .map_err(|e| ClientError::io("writing the download", e))?;
            written += piece.len() as u64;
        }
        if keep == 0 {
            break;
        }
    }
    out.flush()
        .await
        .map_err(|e| ClientError::io("writing the download", e))?;
    Ok(written)
}

//! `zib bucket ...`: a bucket's settings and its deletion through the tenant API.
//! Each prints one JSON line.

use anyhow::{Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use zib_client::{Client, ClientConfig};
use zib_proto::api::OverwriteMode;

#[derive(Args, Debug)]
pub struct BucketArgs {
    #[command(subcommand)]
    pub command: BucketCommand,
}

#[derive(Subcommand, Debug)]
pub enum BucketCommand {
    /// What an S3 PUT onto a key holding an object does in BUCKET: `conflict` (409
    /// unless the bytes are the same; the default) or `supersede` (replace it, as an
    /// SDK re-upload does, so `rclone sync` / `aws s3 sync` of changed files work).
    /// Creates the bucket if it does not exist.
    SetOverwrite { bucket: String, mode: Mode },
    /// Delete an empty bucket (no object, no upload in progress).
    Rm { bucket: String },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Mode {
    Conflict,
    Supersede,
}

pub async fn run(args: BucketArgs) -> Result<()> {
    let client = Client::new(ClientConfig::from_env()?)?;
    let printed = match args.command {
        BucketCommand::SetOverwrite { bucket, mode } => {
            let mode = match mode {
                Mode::Conflict => OverwriteMode::Conflict,
                Mode::Supersede => OverwriteMode::Supersede,
            };
            let info = client
                .set_bucket_overwrite(&bucket, mode)
                .await
                .with_context(|| format!("setting the overwrite mode of bucket {bucket:?}"))?;
            serde_json::to_string(&info)?
        }
        BucketCommand::Rm { bucket } => {
            let deleted = client
                .delete_bucket(&bucket)
                .await
                .with_context(|| format!("deleting bucket {bucket:?}"))?;
            serde_json::to_string(&deleted)?
        }
    };
    println!("{printed}");
    Ok(())
}

//! The storage group: where file bytes live, and the S3 bucket's settings, checked.

use std::path::PathBuf;

use anyhow::bail;
use clap::Args;
use secrecy::SecretString;

use super::{parse_secret, S3Settings, Storage};

/// Where file bytes live: a local directory or an S3 bucket.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Storage")]
pub struct StorageConfig {
    /// Where file bytes live; every api and worker process of a deployment must use the same.
    #[arg(long = "storage", env = "STORAGE", value_enum, default_value_t = Storage::Local)]
    pub backend: Storage,

    /// `STORAGE=local`: the root directory; files live at `UPLOAD_DIR/{organization_id}/{file_id}`.
    #[arg(long, env = "UPLOAD_DIR", default_value = "./data/uploads")]
    pub upload_dir: PathBuf,

    /// `STORAGE=s3`: the bucket (it must exist); objects are keyed `{organization_id}/{file_id}`.
    /// Credentials come from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (or the host's role).
    #[arg(long, env = "S3_BUCKET")]
    pub s3_bucket: Option<String>,

    /// `STORAGE=s3`: the S3 API's URL, for a store other than AWS (SeaweedFS, MinIO, …);
    /// requests use path-style addressing (`{endpoint}/{bucket}/{key}`).
    #[arg(long, env = "S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,

    /// `STORAGE=s3`: the bucket's region.
    #[arg(long, env = "S3_REGION", default_value = "us-east-1")]
    pub s3_region: String,

    /// `STORAGE=s3`: a prefix before every key (`{prefix}/{organization_id}/{file_id}`), so
    /// several deployments (or test runs) can share a bucket.
    #[arg(long, env = "S3_PREFIX", default_value = "")]
    pub s3_prefix: String,

    /// `STORAGE=s3`: the access key, under the AWS tools' usual name. Without it (and its
    /// secret), credentials come from AWS_SESSION_TOKEN, AWS_WEB_IDENTITY_TOKEN_FILE or the
    /// host's instance role.
    #[arg(long, env = "AWS_ACCESS_KEY_ID", value_parser = parse_secret, hide_env_values = true)]
    pub aws_access_key_id: Option<SecretString>,

    /// `STORAGE=s3`: the secret key that goes with AWS_ACCESS_KEY_ID.
    #[arg(long, env = "AWS_SECRET_ACCESS_KEY", value_parser = parse_secret, hide_env_values = true)]
    pub aws_secret_access_key: Option<SecretString>,
}

impl StorageConfig {
    pub(super) fn validate(&self) -> anyhow::Result<()> {
        if self.backend == Storage::S3 {
            self.s3_settings()?;
        }
        Ok(())
    }

    /// The bucket's settings, checked; an error names the setting at fault.
    pub fn s3_settings(&self) -> anyhow::Result<S3Settings> {
        let Some(bucket) = self.s3_bucket.clone() else {
            bail!("missing S3_BUCKET: required when STORAGE=s3");
        };
        let valid_name = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.';
        if !(3..=63).contains(&bucket.len()) || !bucket.chars().all(valid_name) {
            bail!("invalid S3_BUCKET {bucket:?}: 3 to 63 lowercase letters, digits, '-' or '.'");
        }
        if let Some(endpoint) = &self.s3_endpoint {
            if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
                bail!("invalid S3_ENDPOINT {endpoint:?}: must start with http:// or https://");
            }
        }
        let credentials = match (&self.aws_access_key_id, &self.aws_secret_access_key) {
            (Some(id), Some(secret)) => Some((id.clone(), secret.clone())),
            (None, None) => None,
            (Some(_), None) => bail!("missing AWS_SECRET_ACCESS_KEY: required with AWS_ACCESS_KEY_ID"),
            (None, Some(_)) => bail!("missing AWS_ACCESS_KEY_ID: required with AWS_SECRET_ACCESS_KEY"),
        };
        let prefix = self.s3_prefix.trim_matches('/').to_owned();
        if prefix.split('/').any(|part| part == "." || part == "..") {
            bail!("invalid S3_PREFIX {prefix:?}: no '.' or '..' segments");
        }
        Ok(S3Settings {
            endpoint: self.s3_endpoint.clone(),
            bucket,
            region: self.s3_region.clone(),
            prefix,
            credentials,
        })
    }
}

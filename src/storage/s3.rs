//! The S3 backend: any S3-compatible object store (AWS S3, SeaweedFS, MinIO, …), for
//! deployments where several api and worker hosts share the files. Credentials come from the
//! usual AWS environment variables (`AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`, read with
//! the other settings; otherwise `AWS_SESSION_TOKEN`, a web identity or the instance's role).

use std::time::Duration;

use object_store::{aws::AmazonS3Builder, prefix::PrefixStore, BackoffConfig, ClientOptions, RetryConfig};
use secrecy::ExposeSecret;

use super::FileStore;
use crate::config::S3Settings;

/// No answer (or no next chunk of one) within this long means the store is failing. A total
/// request timeout would cut long downloads, so none is set.
const READ_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

impl FileStore {
    /// A store on the bucket. Nothing is contacted here: a wrong endpoint or bucket shows in
    /// readiness (`/readyz`), a malformed setting fails here.
    pub fn s3(settings: &S3Settings) -> anyhow::Result<Self> {
        let client = ClientOptions::new()
            .with_timeout_disabled()
            .with_read_timeout(READ_TIMEOUT)
            .with_connect_timeout(CONNECT_TIMEOUT);
        // A failing store is reported soon (readiness, 503) instead of after minutes of retries.
        let retry =
            RetryConfig { backoff: BackoffConfig::default(), max_retries: 3, retry_timeout: Duration::from_secs(10) };
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(&settings.bucket)
            .with_region(&settings.region)
            .with_client_options(client)
            .with_retry(retry);
        if let Some(endpoint) = &settings.endpoint {
            builder = builder.with_endpoint(endpoint).with_allow_http(endpoint.starts_with("http://"));
        }
        if let Some((id, secret)) = &settings.credentials {
            builder = builder.with_access_key_id(id.expose_secret()).with_secret_access_key(secret.expose_secret());
        }
        let bucket = builder.build()?;
        Ok(if settings.prefix.is_empty() {
            Self::new(bucket)
        } else {
            Self::new(PrefixStore::new(bucket, settings.prefix.as_str()))
        })
    }
}

//! The test's own view of the file store an app writes to, from outside the app: a temporary
//! directory, or (`TEST_STORAGE=s3`, or a test that asks for it) the dev SeaweedFS bucket
//! under a prefix of the test's own.

use std::{path::PathBuf, sync::Arc};

use futures_util::TryStreamExt;
use object_store::{aws::AmazonS3Builder, path::Path, prefix::PrefixStore, ObjectStore, ObjectStoreExt, PutPayload};

use crate::helpers::{Settings, TcpProxy, TestApp, TestUser};

/// The S3 API `make test` starts (SeaweedFS), and its bucket.
pub fn s3_endpoint() -> String {
    std::env::var("TEST_S3_ENDPOINT").unwrap_or_else(|_| "http://127.0.0.1:38333".into())
}
pub const S3_BUCKET: &str = "tenant-files";
/// SeaweedFS without an identity file takes any key; these stand for real credentials.
pub const S3_ACCESS_KEY: &str = "tenant-files-test";
pub const S3_SECRET_KEY: &str = "tenant-files-test-secret";

/// Whether this run tests the S3 backend everywhere (`make test` runs the suite both ways).
pub fn s3_by_default() -> bool {
    std::env::var("TEST_STORAGE").as_deref() == Ok("s3")
}

pub enum TestStore {
    Local(PathBuf),
    S3(Arc<dyn ObjectStore>),
}

impl TestStore {
    /// The bucket under `prefix`, as the app sees it.
    pub fn s3(prefix: &str) -> Self {
        let bucket = AmazonS3Builder::new()
            .with_endpoint(s3_endpoint())
            .with_allow_http(true)
            .with_bucket_name(S3_BUCKET)
            .with_region("us-east-1")
            .with_access_key_id(S3_ACCESS_KEY)
            .with_secret_access_key(S3_SECRET_KEY)
            .build()
            .expect("test S3 client");
        TestStore::S3(Arc::new(PrefixStore::new(bucket, prefix)))
    }

    fn key(user: &TestUser, file_id: &str) -> String {
        format!("{}/{file_id}", user.org_id)
    }

    /// Every stored object (or file, part files included): what requests left behind.
    pub async fn keys(&self) -> Vec<String> {
        match self {
            TestStore::Local(root) => {
                let mut out = Vec::new();
                walk(root, root, &mut out);
                out
            }
            TestStore::S3(bucket) => {
                let listed: Vec<_> = bucket.list(None).try_collect().await.expect("list the test's objects");
                listed.into_iter().map(|meta| meta.location.to_string()).collect()
            }
        }
    }

    pub async fn read(&self, user: &TestUser, file_id: &str) -> Option<Vec<u8>> {
        let key = Self::key(user, file_id);
        match self {
            TestStore::Local(root) => std::fs::read(root.join(key)).ok(),
            TestStore::S3(bucket) => match bucket.get(&Path::from(key.as_str())).await {
                Ok(found) => Some(found.bytes().await.expect("read object").to_vec()),
                Err(object_store::Error::NotFound { .. }) => None,
                Err(e) => panic!("cannot read {key}: {e}"),
            },
        }
    }

    /// Replaces a file's stored bytes behind the app's back.
    pub async fn write(&self, user: &TestUser, file_id: &str, bytes: impl Into<Vec<u8>>) {
        self.put(&Self::key(user, file_id), bytes).await;
    }

    /// Writes an object under `key` behind the app's back.
    pub async fn put(&self, key: &str, bytes: impl Into<Vec<u8>>) {
        match self {
            TestStore::Local(root) => {
                let path = root.join(key);
                std::fs::create_dir_all(path.parent().unwrap()).expect("make the object's directory");
                std::fs::write(path, bytes.into()).expect("write stored file")
            }
            TestStore::S3(bucket) => {
                bucket.put(&Path::from(key), PutPayload::from(bytes.into())).await.expect("put object");
            }
        }
    }

    /// The file's path, for failure injections only a local directory allows (a FIFO that
    /// blocks the reader, a directory where the file should be); `None` on S3.
    pub fn local_path(&self, user: &TestUser, file_id: &str) -> Option<PathBuf> {
        match self {
            TestStore::Local(root) => Some(root.join(Self::key(user, file_id))),
            TestStore::S3(_) => None,
        }
    }
}

fn walk(root: &std::path::Path, dir: &std::path::Path, out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            walk(root, &path, out);
        } else {
            out.push(path.strip_prefix(root).unwrap_or(&path).display().to_string());
        }
    }
}

/// Faults in the store under a running app, for both backends: on a local directory, the file
/// itself is replaced; on S3, the app reaches the store through a proxy that goes down or hangs.
pub struct StorageFault {
    proxy: Option<TcpProxy>,
}

/// What [`StorageFault::repair`] puts back.
pub enum Injected {
    Local { path: PathBuf, bytes: Vec<u8> },
    S3,
}

impl StorageFault {
    pub async fn prepare() -> Self {
        let proxy = if s3_by_default() {
            let proxy = TcpProxy::start(s3_addr()).await;
            proxy.set_up(true);
            Some(proxy)
        } else {
            None
        };
        Self { proxy }
    }

    /// `settings` with the app's S3 traffic through the fault's proxy (if on S3).
    pub fn settings(&self, settings: Settings) -> Settings {
        match &self.proxy {
            Some(proxy) => Settings { s3_endpoint: Some(format!("http://127.0.0.1:{}", proxy.port)), ..settings },
            None => settings,
        }
    }

    /// Reading the file fails, with an error that is not "missing" (so it is retried): a
    /// symlink to itself where the file was (ELOOP), or the store refusing connections.
    pub async fn break_file(&self, app: &TestApp, user: &TestUser, file_id: &str) -> Injected {
        match (&self.proxy, app.store.local_path(user, file_id)) {
            (Some(proxy), _) => {
                proxy.set_up(false);
                Injected::S3
            }
            (None, Some(path)) => {
                let bytes = std::fs::read(&path).unwrap();
                std::fs::remove_file(&path).unwrap();
                std::os::unix::fs::symlink(&path, &path).unwrap();
                Injected::Local { path, bytes }
            }
            (None, None) => panic!("a storage fault needs its proxy for S3: spawn the app with fault.settings(…)"),
        }
    }

    /// Reading the file hangs, mid-job, until repaired: a FIFO nobody writes to yet, or a store
    /// that stops answering.
    pub async fn block_file(&self, app: &TestApp, user: &TestUser, file_id: &str) -> Injected {
        match (&self.proxy, app.store.local_path(user, file_id)) {
            (Some(proxy), _) => {
                proxy.freeze();
                Injected::S3
            }
            (None, Some(path)) => {
                let bytes = std::fs::read(&path).unwrap();
                std::fs::remove_file(&path).unwrap();
                let made = std::process::Command::new("mkfifo").arg(&path).status().expect("mkfifo");
                assert!(made.success());
                Injected::Local { path, bytes }
            }
            (None, None) => panic!("a storage fault needs its proxy for S3: spawn the app with fault.settings(…)"),
        }
    }

    /// The file reads as before again, for the next reader.
    pub async fn repair(&self, injected: Injected) {
        match injected {
            Injected::S3 => self.proxy.as_ref().expect("S3 fault has a proxy").set_up(true),
            Injected::Local { path, bytes } => {
                std::fs::remove_file(&path).unwrap();
                std::fs::write(&path, bytes).unwrap();
            }
        }
    }

    /// The reader blocked by [`Self::block_file`] gets the bytes (from the FIFO), or has its
    /// hung connection cut and retries.
    pub async fn unblock(&self, injected: Injected) {
        match injected {
            Injected::S3 => self.proxy.as_ref().expect("S3 fault has a proxy").set_up(true),
            // Opening the FIFO for writing waits for its reader: off the async threads.
            Injected::Local { path, bytes } => {
                tokio::task::spawn_blocking(move || std::fs::write(path, bytes)).await.unwrap().unwrap()
            }
        }
    }
}

/// The S3 API's address, for a proxy in front of it.
pub fn s3_addr() -> std::net::SocketAddr {
    let endpoint = s3_endpoint();
    let host_port = endpoint.trim_start_matches("http://").trim_end_matches('/');
    host_port.replace("localhost", "127.0.0.1").parse().expect("TEST_S3_ENDPOINT is http://host:port")
}

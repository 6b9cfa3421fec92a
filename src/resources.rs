//! What api and worker processes both open from their configuration: the app role's database
//! pool and the file store.

use anyhow::Context;

use crate::{
    config::{Config, Pooler, Storage},
    db::{Db, Statements},
    storage::FileStore,
};

/// The app role's pool and the file store, as api and worker both use them. The pool connects
/// lazily, so this never waits on the network.
pub fn open_db_and_store(config: &Config) -> anyhow::Result<(Db, FileStore)> {
    let db = Db::new(
        config.database.database_url.clone(),
        usize::from(config.database.db_pool_size),
        std::time::Duration::from_millis(config.database.db_pool_timeout_ms),
        match config.database.db_pooler {
            Pooler::None => Statements::Prepared,
            Pooler::Transaction => Statements::Unnamed,
        },
    )
    .context("invalid DATABASE_URL")?;
    let store = match config.storage.backend {
        Storage::Local => FileStore::local(&config.storage.upload_dir)
            .with_context(|| format!("cannot create UPLOAD_DIR {}", config.storage.upload_dir.display()))?,
        Storage::S3 => FileStore::s3(&config.storage.s3_settings()?).context("invalid S3 settings")?,
    };
    Ok((db, store))
}

//! `--mode migrate`: applies `migrations/` (embedded at build time) as the owner role.

use anyhow::Context;
use tokio_postgres::NoTls;

refinery::embed_migrations!("migrations");

/// Applies every pending migration and returns how many ran.
pub async fn run(owner: &tokio_postgres::Config) -> anyhow::Result<usize> {
    let (mut client, connection) = owner.connect(NoTls).await.context("cannot connect with MIGRATION_DATABASE_URL")?;
    let connection = tokio::spawn(connection);
    let report = migrations::runner()
        .set_migration_table_name("app_schema_history")
        .run_async(&mut client)
        .await
        .context("migration failed")?;
    drop(client);
    // The connection task ends once the client is gone; its error (if any) adds nothing.
    let _ = connection.await;
    Ok(report.applied_migrations().len())
}

//! THE way to reach tenant rows.
//!
//! [`Db::read`](super::Db::read), [`Db::write`](super::Db::write) and
//! [`Db::begin`](super::Db::begin) hand out a pooled connection bound to a tenant context, as one
//! of three types, one per kind of transaction. The first statement is sent together with
//! `BEGIN` and the context statement in one write, so every statement runs inside the
//! transaction, under the RLS policies for that organization. The context is either known ids
//! (`SET_TENANT_CONTEXT` in [`caller`]: bound parameters, transaction scope) or, for a read, the caller's
//! credential, which a registry function resolves and sets in that same first statement
//! ([`Caller`]): an authenticated read is one round trip, the session included. The settings
//! die with the transaction: a pooled connection never carries one request's tenant into the
//! next.
//!
//! - [`ReadTx`]: `BEGIN · context, read-only · statement · COMMIT` in one write. Its methods take
//!   it by value, so a second statement does not compile, and the database refuses a write
//!   (the context statement turns the transaction read-only, after a token's `last_used_at`
//!   stamp, which the COMMIT keeps).
//! - [`WriteTx`]: `BEGIN · context · statement · COMMIT` in one write, likewise consumed: row
//!   locks (the organization's counters row, say) are held for the server's work only, not for a
//!   round trip to the client and back. Should the statement fail, PostgreSQL turns that COMMIT
//!   into a rollback.
//! - [`Tx`]: any number of statements, ending with [`Tx::commit`] (awaited). One dropped without
//!   commit (a handler returning early with `?`) is rolled back in the background and only then
//!   returns to the pool: nothing half-written.
//!
//! Query functions in `db::*` take `impl `[`TenantRead`] or `impl `[`TenantWrite`]: a one-shot
//! transaction, a `&Tx` for a statement among others, or (a write) the `Tx` itself for its last
//! statement, sent with its `COMMIT`. The traits are sealed and their statement methods live in
//! a module only `db` can name, so handlers cannot send SQL of their own.
//!
//! `BEGIN` and `COMMIT` are prepared statements like the rest (cached per pooled connection),
//! so the server never parses them again.
//!
//! Its parts: [`caller`] (who a transaction acts for and the statement that says so), [`wire`]
//! (the pooled connection bound to it: framing, pipelining, rollback on drop) and [`kinds`]
//! (the three transaction types and the two traits query functions take them by).

mod caller;
mod kinds;
mod wire;

pub use caller::{Caller, Credential};
pub(super) use caller::{Context, KnownOrgs, Resolution};
pub use kinds::{ReadTx, TenantRead, TenantWrite, Tx, WriteTx};
pub use wire::Plans;

use crate::domain::{OrgId, UserId};

/// Who is acting: built by the HTTP extractor from the server-side session or a bearer token
/// (or by the worker from a message), never from request parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TenantCtx {
    pub org_id: OrgId,
    pub user_id: UserId,
}

/// The helper's own guarantees, with raw SQL through it (only the `db` layer can send any), on
/// a scratch database as the app role. The rest of "the database is the guard" is in
/// tests/api/database_guard.rs.
#[cfg(test)]
mod tests {
    use tokio_postgres::error::SqlState;
    use uuid::Uuid;

    use super::{
        super::{
            files, system,
            testing::{left_on_the_connection, scratch_db, tenant},
            tokens, Db, DbError, Plans,
        },
        // `Write` by path only: in scope, `tx.query` on a `Tx` would take the `Tx` by value.
        kinds::exec::{self, Read},
        Caller,
        Credential,
        TenantCtx,
    };

    const NO_TENANT_NOTHING_VISIBLE: (Option<String>, i64) = (Some(String::new()), 0);
    const ALL_FILES: &str = "select organization_id from app.files";

    #[tokio::test]
    async fn a_pooled_connection_carries_no_tenant_after_its_transaction() {
        // One connection in the pool: every checkout below gets the same server session.
        let db = scratch_db(1).await;
        let (a, _) = tenant(&db, "a.txt").await;
        let (b, b_file) = tenant(&db, "b.txt").await;

        let tx = db.begin(&a).await.unwrap();
        assert_eq!(tx.query("select id from app.files", &[]).await.unwrap().len(), 1, "a's file only");
        tx.commit().await.unwrap();
        assert_eq!(left_on_the_connection(&db).await, NO_TENANT_NOTHING_VISIBLE);

        // A transaction dropped without commit (a handler's early return) rolls back and also
        // leaves nothing behind.
        let tx = db.begin(&b).await.unwrap();
        tx.execute("update app.files set filename = 'rolled back'", &[]).await.unwrap();
        drop(tx);
        assert_eq!(left_on_the_connection(&db).await, NO_TENANT_NOTHING_VISIBLE);
        let file = super::super::files::find(db.read(&b).await.unwrap(), b_file).await.unwrap().unwrap();
        assert_eq!(file.file.filename, "b.txt");
    }

    /// A read is one statement (a second does not compile: `ReadTx` is consumed), it cannot
    /// write (read-only from its context statement on), and it ends its own transaction.
    #[tokio::test]
    async fn a_read_sees_one_tenant_never_writes_and_ends_its_own_transaction() {
        let db = scratch_db(1).await;
        let (a, a_file) = tenant(&db, "a.txt").await;
        tenant(&db, "b.txt").await;

        let read = db.read(&a).await.unwrap();
        let orgs: Vec<Uuid> =
            read.query("select organization_id from app.files", &[]).await.unwrap().iter().map(|r| r.get(0)).collect();
        assert_eq!(orgs, [*a.org_id.as_uuid()], "an unfiltered read sees one tenant");
        assert_eq!(left_on_the_connection(&db).await, NO_TENANT_NOTHING_VISIBLE);

        let read = db.read(&a).await.unwrap();
        let write = read.query("update app.files set filename = 'never kept' returning id", &[]).await;
        let code = write.err().and_then(|e| match e {
            crate::db::DbError::Query(e) => e.code().cloned(),
            _ => None,
        });
        assert_eq!(code, Some(SqlState::READ_ONLY_SQL_TRANSACTION));
        assert_eq!(left_on_the_connection(&db).await, NO_TENANT_NOTHING_VISIBLE);
        let file = super::super::files::find(db.read(&a).await.unwrap(), a_file).await.unwrap().unwrap();
        assert_eq!(file.file.filename, "a.txt");
    }

    /// A write commits with its one statement; a statement the policies refuse leaves nothing,
    /// and the connection comes back clean.
    #[tokio::test]
    async fn a_write_commits_with_its_statement_or_leaves_nothing() {
        let db = scratch_db(1).await;
        let (a, a_file) = tenant(&db, "a.txt").await;
        let (b, b_file) = tenant(&db, "b.txt").await;
        let name = |ctx, id| {
            let db = &db;
            async move { super::super::files::find(db.read(&ctx).await.unwrap(), id).await.unwrap().unwrap().file.filename }
        };

        let write = db.write(&a).await.unwrap();
        assert_eq!(exec::Write::execute(write, "update app.files set filename = 'kept'", &[]).await.unwrap(), 1);
        assert_eq!(name(a, a_file).await, "kept", "committed once it returned");

        // Moving b's file into a's organization: WITH CHECK refuses the row, and the COMMIT
        // sent behind the statement rolls back.
        let write = db.write(&b).await.unwrap();
        let moved = exec::Write::execute(
            write,
            "update app.files set filename = 'moved', organization_id = $1",
            &[a.org_id.as_uuid()],
        )
        .await;
        assert!(moved.is_err(), "WITH CHECK refuses the row");
        assert_eq!(name(b, b_file).await, "b.txt");
        assert_eq!(left_on_the_connection(&db).await, NO_TENANT_NOTHING_VISIBLE);
    }

    fn org_ids(rows: &[tokio_postgres::Row]) -> Vec<Uuid> {
        rows.iter().map(|r| r.get(0)).collect()
    }

    /// Every organization an unfiltered read for `caller` sees, and who the read says it was.
    async fn read_all_files_as(db: &Db, caller: Caller) -> Result<(Vec<Uuid>, TenantCtx), DbError> {
        let read = db.read_as(&caller, Plans::Generic, |tx| async { tx.query(ALL_FILES, &[]).await }).await?;
        Ok((org_ids(&read.0), read.1))
    }

    /// A read made with a session's key resolves it in its own first statement: it acts for that
    /// user's organization only (an unfiltered query sees one tenant), and returns who it was. With a key that is not valid (unknown, expired) the read fails as unauthenticated
    /// and its statement never runs; nothing is left on the connection either way.
    #[tokio::test]
    async fn a_read_made_with_a_session_key_acts_for_its_user_only_and_a_bad_key_reads_nothing() {
        let db = scratch_db(1).await;
        let (a, _) = tenant(&db, "a.txt").await;
        tenant(&db, "b.txt").await;
        let (live, expired) = (vec![1u8; 32], vec![2u8; 32]);
        let state = serde_json::json!({});
        for (key_hash, ttl_seconds) in [(&live, 60), (&expired, -1)] {
            let conn = db.system_conn().await.unwrap();
            assert!(system::session_save(&conn, key_hash, a, &state, ttl_seconds).await.unwrap());
        }

        // The key names its organization (V26), or, made before, none.
        for org in [Some(a.org_id), None] {
            let (orgs, who) =
                read_all_files_as(&db, Caller::Session(Credential::new(org, live.clone()))).await.unwrap();
            assert_eq!(orgs, [*a.org_id.as_uuid()], "an unfiltered read sees the session's tenant only");
            assert_eq!(who, a);
            assert_eq!(left_on_the_connection(&db).await, NO_TENANT_NOTHING_VISIBLE);
        }

        let named_elsewhere = Credential::new(Some(crate::domain::OrgId::new()), live);
        for key in [Credential::new(Some(a.org_id), expired), Credential::new(None, vec![3u8; 32]), named_elsewhere] {
            let read = read_all_files_as(&db, Caller::Session(key)).await;
            assert!(matches!(read, Err(DbError::Unauthenticated)), "{read:?}");
            assert_eq!(left_on_the_connection(&db).await, NO_TENANT_NOTHING_VISIBLE);
        }
    }

    /// A read made with a bearer token acts for the token's user, stamps its `last_used_at`
    /// (kept: the read commits) and is read-only from then on; a revoked token reads nothing.
    #[tokio::test]
    async fn a_read_made_with_a_token_stamps_it_and_still_cannot_write() {
        let db = scratch_db(1).await;
        let (a, a_file) = tenant(&db, "a.txt").await;
        let (token_id, token_hash) = (crate::domain::TokenId::new(), vec![4u8; 32]);
        let expires_at = chrono::Utc::now() + chrono::Duration::days(1);
        let tx = db.begin(&a).await.unwrap();
        tokens::insert(&tx, token_id, "script", &token_hash, expires_at).await.unwrap();
        tx.commit().await.unwrap();
        let last_used = |db: &Db| {
            let db = db.clone();
            async move { tokens::list(db.read(&a).await.unwrap()).await.unwrap()[0].last_used_at }
        };
        assert_eq!(last_used(&db).await, None);

        let (orgs, who) =
            read_all_files_as(&db, Caller::Token(Credential::new(Some(a.org_id), token_hash.clone()))).await.unwrap();
        assert_eq!(orgs, [*a.org_id.as_uuid()]);
        assert_eq!(who, a);
        assert!(last_used(&db).await.is_some(), "the stamp commits with the read");

        let caller = Caller::Token(Credential::new(Some(a.org_id), token_hash.clone()));
        let update = "update app.files set filename = 'never kept' returning id";
        let write = db.read_as(&caller, Plans::Generic, |tx| async { tx.query(update, &[]).await }).await;
        let code = write.err().and_then(|e| match e {
            DbError::Query(e) => e.code().cloned(),
            _ => None,
        });
        assert_eq!(code, Some(SqlState::READ_ONLY_SQL_TRANSACTION));
        let file = files::find(db.read(&a).await.unwrap(), a_file).await.unwrap().unwrap();
        assert_eq!(file.file.filename, "a.txt");

        assert!(tokens::revoke(db.write(&a).await.unwrap(), token_id).await.unwrap());
        let read = read_all_files_as(&db, Caller::Token(Credential::new(Some(a.org_id), token_hash))).await;
        assert!(matches!(read, Err(DbError::Unauthenticated)), "{read:?}");
    }

    /// Past PostgreSQL's five custom plans a generic plan is cached per connection: a tenant id
    /// folded into it (an IMMUTABLE helper) would show here.
    #[tokio::test]
    async fn a_cached_prepared_statement_run_as_a_many_times_then_as_b_sees_only_b() {
        let db = scratch_db(1).await;
        let (a, _) = tenant(&db, "a.txt").await;
        let (b, _) = tenant(&db, "b.txt").await;
        let sql = "select organization_id from app.files where deleted_at is null";
        for _ in 0..12 {
            let rows = db.read(&a).await.unwrap().query(sql, &[]).await.unwrap();
            assert_eq!(rows.iter().map(|r| r.get::<_, Uuid>(0)).collect::<Vec<_>>(), [*a.org_id.as_uuid()]);
        }
        let tx = db.begin(&b).await.unwrap();
        let rows = tx.query(sql, &[]).await.unwrap();
        assert_eq!(rows.iter().map(|r| r.get::<_, Uuid>(0)).collect::<Vec<_>>(), [*b.org_id.as_uuid()]);
    }
}

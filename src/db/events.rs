//! Queries on `app.events` (V29): an organization's events, numbered in commit order, written by
//! triggers with the change each describes. Under RLS a member reads only what their role may
//! see (`events_seen_by_role`).

use chrono::{DateTime, Utc};
use tokio_postgres::Row;
use uuid::Uuid;

use super::{decode, DbError, TenantRead};

pub struct EventRow {
    pub seq: i64,
    pub id: Uuid,
    pub kind: String,
    pub data: serde_json::Value,
    pub created_at: DateTime<Utc>,
}

impl EventRow {
    fn from_row(row: &Row) -> Result<Self, DbError> {
        Ok(Self {
            seq: decode(row.try_get("seq"))?,
            id: decode(row.try_get("id"))?,
            kind: decode(row.try_get("type"))?,
            data: decode(row.try_get("data"))?,
            created_at: decode(row.try_get("created_at"))?,
        })
    }
}

/// The caller's organization's events numbered after `after`, oldest first, at most `limit`.
#[tracing::instrument(name = "db.events.list", skip_all)]
pub async fn list(tx: impl TenantRead, after: i64, limit: i64) -> Result<Vec<EventRow>, DbError> {
    let rows = tx
        .query(
            concat!(
                r#"
            select seq, id, type, data, created_at
              from app.events
             where organization_id = "#,
                tenant_org!(),
                r#"
               and seq > $1
             order by seq
             limit $2
            "#
            ),
            &[&after, &limit],
        )
        .await?;
    rows.iter().map(EventRow::from_row).collect()
}

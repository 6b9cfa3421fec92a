//! `GET /api/events`: the organization's event feed (#27), oldest first, from a cursor, so a
//! consumer that was away catches up without webhooks. What each member sees is the database's
//! decision (`events_seen_by_role`, migrations V29); events are kept EVENT_RETENTION_DAYS.

use actix_web::{get, web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_actix_web::{scope, service_config::ServiceConfig};
use uuid::Uuid;

use super::{ApiResult, AppState, Reader};
use crate::{
    db::{self, events::EventRow},
    error::{ApiError, ErrorBody},
};

const DEFAULT_LIMIT: u32 = 100;
const MAX_LIMIT: u32 = 500;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(scope("/events").service(list_events));
}

/// `?after=&limit=`. Any other parameter is refused (400).
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct FeedQuery {
    /// The `next` of the previous page (absent: from the oldest event kept).
    after: Option<String>,
    /// Events per page, 1 to 500 (default 100).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
}

#[derive(Serialize, ToSchema)]
struct Event {
    id: Uuid,
    /// `file.uploaded`, `file.ready`, `file.failed`, `file.deleted`, `member.joined`,
    /// `member.role_changed`, `member.deactivated`, `link.created`, `link.revoked`.
    #[serde(rename = "type")]
    kind: String,
    timestamp: DateTime<Utc>,
    /// The ids it names (file, user, link) and what changed; never a secret.
    #[schema(value_type = Object)]
    data: serde_json::Value,
}

impl From<EventRow> for Event {
    fn from(row: EventRow) -> Self {
        Self { id: row.id, kind: row.kind, timestamp: row.created_at, data: row.data }
    }
}

#[derive(Serialize, ToSchema)]
struct EventFeed {
    events: Vec<Event>,
    /// Where the next page starts: pass it as `after` (the same value when there was nothing new).
    next: String,
}

/// The organization's events after a cursor, oldest first.
#[utoipa::path(tag = "events", params(FeedQuery), responses((status = 200, body = EventFeed), (status = 400, description = "`invalid_cursor`, `invalid_limit`", body = ErrorBody), (status = 401, body = ErrorBody)), security(("session" = []), ("bearer" = [])))]
#[get("")]
#[tracing::instrument(skip_all)]
async fn list_events(state: web::Data<AppState>, reader: Reader, query: web::Query<FeedQuery>) -> ApiResult {
    let FeedQuery { after, limit } = query.into_inner();
    let after = match after.as_deref() {
        None => 0,
        Some(cursor) => cursor
            .parse::<i64>()
            .ok()
            .filter(|seq| *seq >= 0)
            .ok_or_else(|| ApiError::invalid("invalid_cursor", "after must be the `next` of a previous page"))?,
    };
    let limit = limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::invalid("invalid_limit", format!("limit must be 1 to {MAX_LIMIT}")));
    }
    let rows = reader.read(&state.db, |tx| db::events::list(tx, after, i64::from(limit))).await?;
    let next = rows.last().map_or(after, |row| row.seq).to_string();
    Ok(HttpResponse::Ok().json(EventFeed { events: rows.into_iter().map(Event::from).collect(), next }))
}

//! `/api/org`: the caller's organization, its members, invitations, audit log, share links
//! (`links`) and webhooks (`webhooks`).
//!
//! Managing members, invitations and the audit log is for owners and admins; handlers check
//! that first for a clear 403, and the database enforces it again (restrictive policies and
//! the `users_guard_changes` trigger), whose refusals map to the same answers. The request and
//! response bodies are in `types`.

mod links;
mod types;
mod webhooks;

use actix_web::{get, patch, post, web, HttpResponse};
use chrono::{Duration, Utc};
use serde_json::json;
use utoipa_actix_web::{scope, service_config::ServiceConfig};
use uuid::Uuid;

use super::{ApiResult, AppState, Authed, BodyErrors, PageQuery, Reader};
use crate::{
    auth::token,
    db::{
        self,
        audit::{Action, AuditRow},
    },
    domain::{AuditEntryId, Email, InvitationId, MimePattern, Role, UserId},
    error::{ApiError, ErrorBody},
};

use types::{
    AuditList, ChangeRoleRequest, ChangeRulesRequest, CreatedInvitation, InvitationList, InvitationResponse,
    InviteRequest, JobUsage, OrgResponse, Refused, RequestBudget, StorageUsage, UploadUsage, UsageResponse, UserList,
    UserResponse,
};

const INVITATION_VALIDITY_DAYS: i64 = 7;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(
        scope("/org")
            .service(get_org)
            .service(change_rules)
            .service(get_usage)
            .service(list_users)
            .service(get_user)
            .service(change_role)
            .service(deactivate_user)
            .service(reactivate_user)
            .service(create_invitation)
            .service(list_invitations)
            .service(get_invitation)
            .service(list_audit)
            .service(get_audit_entry)
            .service(links::list_org_links)
            .service(links::revoke_org_link)
            .service(webhooks::create_webhook)
            .service(webhooks::list_webhooks)
            .service(webhooks::get_webhook)
            .service(webhooks::delete_webhook)
            .service(webhooks::rotate_secret)
            .service(webhooks::list_deliveries)
            .service(webhooks::retry_delivery),
    );
}

#[utoipa::path(tag = "org", responses((status = 200, body = OrgResponse), (status = 401, body = ErrorBody)), security(("session" = []), ("bearer" = [])))]
#[get("")]
#[tracing::instrument(skip_all)]
async fn get_org(state: web::Data<AppState>, reader: Reader) -> ApiResult {
    let org = reader.read(&state.db, db::orgs::find_current).await?.ok_or(ApiError::NotFound)?;
    Ok(HttpResponse::Ok().json(OrgResponse::from(org)))
}

/// Change the organization's upload rules (owners and admins, from a signed-in session): the
/// largest file it accepts (uploads declaring more are refused at once, 413) and the types it
/// accepts (the worker fails a file whose sniffed type matches none, saying why).
#[utoipa::path(tag = "org", request_body = ChangeRulesRequest, responses(
        BodyErrors,
        (status = 200, body = OrgResponse), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)), security(("session" = []), ("bearer" = [])))]
#[patch("")]
#[tracing::instrument(skip_all, fields(org_id = %authed.ctx.org_id))]
async fn change_rules(state: web::Data<AppState>, authed: Authed, body: web::Json<ChangeRulesRequest>) -> ApiResult {
    authed.require_session()?;
    authed.require_manager()?;
    let ChangeRulesRequest { max_file_bytes, allowed_types } = body.into_inner();
    let service_limit = i64::try_from(state.config.limits.max_file_size_bytes()).unwrap_or(i64::MAX);
    if max_file_bytes.flatten().is_some_and(|bytes| !(1..=service_limit).contains(&bytes)) {
        return Err(ApiError::invalid(
            "invalid_max_file_bytes",
            format!("max_file_bytes must be 1 to {service_limit} (the service's limit), or null"),
        ));
    }
    let allowed_types = match allowed_types {
        Some(Some(types)) => {
            Some(Some(MimePattern::parse_list(&types)?.iter().map(|p| p.as_str().to_owned()).collect()))
        }
        other => other.map(|_| None),
    };
    if max_file_bytes.is_none() && allowed_types.is_none() {
        return Err(ApiError::invalid("invalid_body", "give max_file_bytes or allowed_types (null removes a rule)"));
    }
    let change = db::orgs::RulesChange { max_file_bytes, allowed_types };
    let tx = state.db.begin(&authed.ctx).await?;
    // The restrictive policy refuses a member whatever this handler checked (a demotion a moment ago).
    if !db::orgs::change_rules(&tx, &change).await? {
        return Err(ApiError::Forbidden("not allowed (your own role may have just changed)"));
    }
    let org = db::orgs::find_current(&tx).await?.ok_or(ApiError::NotFound)?;
    let details = json!({ "max_file_bytes": org.max_file_bytes, "allowed_types": org.allowed_types });
    let target = Some(("organization", *authed.ctx.org_id.as_uuid()));
    db::audit::record(&tx, authed.event(Action::UploadRulesChanged, target, details)).await?;
    tx.commit().await?;
    Ok(HttpResponse::Ok().json(OrgResponse::from(org)))
}

/// What the organization uses of what it shares with the others (storage, upload slots,
/// validation), its request budget, and what each of its budgets refused it. Owners and admins.
#[utoipa::path(tag = "org", responses((status = 200, body = UsageResponse), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)), security(("session" = []), ("bearer" = [])))]
#[get("/usage")]
#[tracing::instrument(skip_all, fields(org_id = %authed.ctx.org_id))]
async fn get_usage(state: web::Data<AppState>, authed: Authed) -> ApiResult {
    authed.require_manager()?;
    let usage = db::orgs::usage(state.db.read(&authed.ctx).await?).await?.ok_or(ApiError::NotFound)?;
    let plan = usage.requests_per_minute.and_then(|rate| u32::try_from(rate).ok());
    let default = Some(state.config.http.org_requests_per_minute).filter(|&rate| rate > 0);
    Ok(HttpResponse::Ok().json(UsageResponse {
        storage: StorageUsage {
            quota_bytes: usage.storage_quota_mb.saturating_mul(1_048_576),
            used_bytes: usage.storage_used_bytes,
            reserved_bytes: usage.storage_reserved_bytes,
        },
        uploads: UploadUsage {
            receiving: usage.uploads_receiving,
            max_concurrent: usage.max_concurrent_uploads,
            unfinished: usage.uploads_unfinished,
        },
        jobs: JobUsage { pending: usage.files_pending, processed: usage.files_processed },
        requests: RequestBudget { per_minute: plan.or(default), from_plan: plan.is_some() },
        refused: Refused::from_counts(usage.refused),
    }))
}

#[utoipa::path(tag = "org", params(PageQuery), responses((status = 200, body = UserList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)), security(("session" = []), ("bearer" = [])))]
#[get("/users")]
#[tracing::instrument(skip_all, fields(org_id = %authed.ctx.org_id))]
async fn list_users(state: web::Data<AppState>, authed: Authed, query: web::Query<PageQuery>) -> ApiResult {
    authed.require_manager()?;
    let paging = query.into_inner().paging()?;
    let tx = state.db.read(&authed.ctx).await?;
    let (users, total) = db::users::list_page(tx, paging).await?;
    let users = users.into_iter().map(UserResponse::from).collect();
    Ok(HttpResponse::Ok().json(UserList { users, total, page: paging.page, limit: paging.limit }))
}

#[utoipa::path(tag = "org", params(("id" = Uuid, Path, description = "User id")), responses((status = 200, body = UserResponse), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)), security(("session" = []), ("bearer" = [])))]
#[get("/users/{id}")]
#[tracing::instrument(skip_all, fields(org_id = %authed.ctx.org_id))]
async fn get_user(state: web::Data<AppState>, authed: Authed, id: web::Path<Uuid>) -> ApiResult {
    authed.require_manager()?;
    let tx = state.db.read(&authed.ctx).await?;
    let user = db::users::find(tx, UserId::from_uuid(id.into_inner())).await?.ok_or(ApiError::NotFound)?;
    Ok(HttpResponse::Ok().json(UserResponse::from(user)))
}

/// Allowed transitions: an owner changes the role of another member of the organization
/// (granting or revoking owner or admin); admins and members change no roles; nobody changes
/// their own; the last active owner stays an owner. Only from a signed-in session (403
/// `session_required` for an API token).
#[utoipa::path(tag = "org", params(("id" = Uuid, Path, description = "User id")), request_body = ChangeRoleRequest, responses(
        BodyErrors,
        (status = 200, body = UserResponse), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, description = "`last_owner`", body = ErrorBody)), security(("session" = []), ("bearer" = [])))]
#[patch("/users/{id}")]
#[tracing::instrument(skip_all, fields(org_id = %authed.ctx.org_id))]
async fn change_role(
    state: web::Data<AppState>,
    authed: Authed,
    id: web::Path<Uuid>,
    body: web::Json<ChangeRoleRequest>,
) -> ApiResult {
    authed.require_session()?;
    authed.require_manager()?;
    let target = UserId::from_uuid(id.into_inner());
    let role = body.into_inner().role;
    let tx = state.db.begin(&authed.ctx).await?;
    let before = db::users::find(&tx, target).await?.ok_or(ApiError::NotFound)?;
    // The guard trigger refuses self-changes and non-owners; asking first gives clear answers
    // in the same words (see error.rs), the trigger keeps them true whatever this code does.
    if target == authed.ctx.user_id {
        return Err(ApiError::Forbidden("nobody changes their own role or deactivates themselves"));
    }
    if authed.role != Role::Owner {
        return Err(ApiError::Forbidden("only owners change roles"));
    }
    // Visible but not updated: the database's rules refused (e.g. the caller was demoted a
    // moment ago by another owner). Never report a change that did not happen.
    if !db::users::set_role(&tx, target, role).await? {
        return Err(ApiError::Forbidden("not allowed (your own role may have just changed)"));
    }
    let details = json!({ "from": before.role, "to": role });
    db::audit::record(&tx, authed.event(Action::RoleChanged, Some(("user", target.into())), details)).await?;
    let after = db::users::find(&tx, target).await?.ok_or(ApiError::NotFound)?;
    tx.commit().await?;
    Ok(HttpResponse::Ok().json(UserResponse::from(after)))
}

/// Deactivate a member: their sessions and tokens end at once, their queued jobs are refused.
#[utoipa::path(tag = "org", params(("id" = Uuid, Path, description = "User id")), responses((status = 200, body = UserResponse), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, description = "`last_owner`", body = ErrorBody)), security(("session" = []), ("bearer" = [])))]
#[post("/users/{id}/deactivate")]
async fn deactivate_user(state: web::Data<AppState>, authed: Authed, id: web::Path<Uuid>) -> ApiResult {
    set_active(state, authed, UserId::from_uuid(id.into_inner()), false).await
}

/// Reactivate a member. Only from a signed-in session (403 `session_required` for an API token).
#[utoipa::path(tag = "org", params(("id" = Uuid, Path, description = "User id")), responses((status = 200, body = UserResponse), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)), security(("session" = []), ("bearer" = [])))]
#[post("/users/{id}/reactivate")]
async fn reactivate_user(state: web::Data<AppState>, authed: Authed, id: web::Path<Uuid>) -> ApiResult {
    // Gives a member back their credentials: not for a token (it would outlive the token).
    authed.require_session()?;
    set_active(state, authed, UserId::from_uuid(id.into_inner()), true).await
}

/// Deactivation ends the user's sessions and tokens at once (the database refuses them from the
/// next request on) and their queued jobs are refused by the worker.
#[tracing::instrument(skip_all, fields(org_id = %authed.ctx.org_id, user_id = %target, active))]
async fn set_active(state: web::Data<AppState>, authed: Authed, target: UserId, active: bool) -> ApiResult {
    authed.require_manager()?;
    let tx = state.db.begin(&authed.ctx).await?;
    db::users::find(&tx, target).await?.ok_or(ApiError::NotFound)?;
    if !db::users::set_active(&tx, target, active).await? {
        return Err(ApiError::Forbidden("not allowed (your own role may have just changed)"));
    }
    let action = if active { Action::UserReactivated } else { Action::UserDeactivated };
    db::audit::record(&tx, authed.event(action, Some(("user", target.into())), json!({}))).await?;
    let user = db::users::find(&tx, target).await?.ok_or(ApiError::NotFound)?;
    tx.commit().await?;
    Ok(HttpResponse::Ok().json(UserResponse::from(user)))
}

/// Owners and admins invite; only owners invite owners. The token is single-use, expires after
/// seven days and works only for the invited email. Only from a signed-in session (403
/// `session_required` for an API token).
#[utoipa::path(tag = "org", request_body = InviteRequest, responses(
        BodyErrors,
        (status = 201, body = CreatedInvitation), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)), security(("session" = []), ("bearer" = [])))]
#[post("/invitations")]
#[tracing::instrument(skip_all, fields(org_id = %authed.ctx.org_id))]
async fn create_invitation(state: web::Data<AppState>, authed: Authed, body: web::Json<InviteRequest>) -> ApiResult {
    authed.require_session()?;
    authed.require_manager()?;
    let InviteRequest { email, role } = body.into_inner();
    let email = Email::parse(&email)?;
    if role == Role::Owner && authed.role != Role::Owner {
        return Err(ApiError::Forbidden("only owners invite owners"));
    }
    let (invitation_token, digest) = token::new_secret("tfi_", authed.ctx.org_id);
    let id = InvitationId::new();
    let expires_at = Utc::now() + Duration::days(INVITATION_VALIDITY_DAYS);

    let tx = state.db.begin(&authed.ctx).await?;
    db::invitations::insert(&tx, id, &email, role, &digest, expires_at).await?;
    let details = json!({ "email": email.as_str(), "role": role });
    db::audit::record(&tx, authed.event(Action::InvitationCreated, Some(("invitation", id.into())), details)).await?;
    tx.commit().await?;
    Ok(HttpResponse::Created().json(CreatedInvitation {
        id,
        invitation_token,
        email: email.to_string(),
        role,
        expires_at,
    }))
}

/// The organization's invitations, newest first (never their tokens).
#[utoipa::path(tag = "org", params(PageQuery), responses((status = 200, body = InvitationList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)), security(("session" = []), ("bearer" = [])))]
#[get("/invitations")]
#[tracing::instrument(skip_all, fields(org_id = %authed.ctx.org_id))]
async fn list_invitations(state: web::Data<AppState>, authed: Authed, query: web::Query<PageQuery>) -> ApiResult {
    authed.require_manager()?;
    let paging = query.into_inner().paging()?;
    let tx = state.db.read(&authed.ctx).await?;
    let (invitations, total) = db::invitations::list_page(tx, paging).await?;
    let invitations = invitations.into_iter().map(InvitationResponse::from).collect();
    Ok(HttpResponse::Ok().json(InvitationList { invitations, total, page: paging.page, limit: paging.limit }))
}

/// One invitation.
#[utoipa::path(tag = "org", params(("id" = Uuid, Path, description = "Invitation id")), responses((status = 200, body = InvitationResponse), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)), security(("session" = []), ("bearer" = [])))]
#[get("/invitations/{id}")]
#[tracing::instrument(skip_all, fields(org_id = %authed.ctx.org_id))]
async fn get_invitation(state: web::Data<AppState>, authed: Authed, id: web::Path<InvitationId>) -> ApiResult {
    authed.require_manager()?;
    let tx = state.db.read(&authed.ctx).await?;
    let invitation = db::invitations::find(tx, id.into_inner()).await?.ok_or(ApiError::NotFound)?;
    Ok(HttpResponse::Ok().json(InvitationResponse::from(invitation)))
}

/// The audit log, newest first.
#[utoipa::path(tag = "org", params(PageQuery), responses((status = 200, body = AuditList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)), security(("session" = []), ("bearer" = [])))]
#[get("/audit")]
#[tracing::instrument(skip_all, fields(org_id = %authed.ctx.org_id))]
async fn list_audit(state: web::Data<AppState>, authed: Authed, query: web::Query<PageQuery>) -> ApiResult {
    authed.require_manager()?;
    let paging = query.into_inner().paging()?;
    let tx = state.db.read(&authed.ctx).await?;
    let (entries, total) = db::audit::list_page(tx, paging).await?;
    Ok(HttpResponse::Ok().json(AuditList { entries, total, page: paging.page, limit: paging.limit }))
}

/// One audit entry.
#[utoipa::path(tag = "org", params(("id" = Uuid, Path, description = "Audit entry id")), responses((status = 200, body = AuditRow), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)), security(("session" = []), ("bearer" = [])))]
#[get("/audit/{id}")]
#[tracing::instrument(skip_all, fields(org_id = %authed.ctx.org_id))]
async fn get_audit_entry(state: web::Data<AppState>, authed: Authed, id: web::Path<AuditEntryId>) -> ApiResult {
    authed.require_manager()?;
    let tx = state.db.read(&authed.ctx).await?;
    let entry = db::audit::find(tx, id.into_inner()).await?.ok_or(ApiError::NotFound)?;
    Ok(HttpResponse::Ok().json(entry))
}

use actix_web::{web, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;

use crate::http::auth::{Caller, Scope};
use crate::http::problem::ApiError;
use crate::http::routes::{rfc3339, ListQuery};
use crate::http::state::AppState;

#[derive(Serialize, ToSchema)]
pub struct AuditEntryView {
    id: String,
    at: String,
    actor: String,
    /// created, updated, deleted, rotated, or connect_started / connect_connected /
    /// connect_failed / connect_denied / connect_expired
    action: String,
    /// Names of the fields that changed; never their values.
    fields: Vec<String>,
    version: Option<i64>,
    /// How the change was made when not by a plain API write: `authorization_code` (Connect)
    #[serde(skip_serializing_if = "Option::is_none")]
    via: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct AuditList {
    entries: Vec<AuditEntryView>,
}

#[utoipa::path(get, path = "/api/v1/companies/{company}/audit", tag = "credentials", security(("bearer" = [])),
    params(("company" = String, Path), ("limit" = Option<i64>, Query, minimum = 1, description = "default 50, max 200")),
    responses((status = 200, body = AuditList)))]
pub async fn list(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let company = caller.authorize(Scope::CredentialsRead, &path)?;
    let limit = query.limit(50, 200)?;
    let entries = state
        .db
        .run(move |conn| schema::audit::list(conn, &company, limit))
        .await?;
    let entries = entries
        .into_iter()
        .map(|e| AuditEntryView {
            id: e.id,
            at: rfc3339(e.at),
            actor: e.actor,
            action: e.action,
            fields: e.fields,
            version: e.version,
            via: e.via,
        })
        .collect();
    Ok(HttpResponse::Ok().json(AuditList { entries }))
}

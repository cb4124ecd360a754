//! The settings screen's data: write-only secrets, versioned with ETag / If-Match.

use actix_web::http::header::{self, ETAG};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use connector::credentials::last4;
use connector::ProfileId;
use schema::credentials::{self as store, Credentials, CredentialsChange};
use schema::pool::with_retry;
use schema::StoreError;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::http::auth::{Caller, Scope};
use crate::http::body::JsonBody;
use crate::http::problem::ApiError;
use crate::http::routes::credentials_input::{self, CredentialsInput, Mode};
use crate::http::routes::rfc3339;
use crate::http::state::AppState;

/// A secret as the screen may see it: whether it is set and its last four characters.
#[derive(Serialize, ToSchema)]
pub struct MaskedSecret {
    set: bool,
    /// null when unset or shorter than 12 characters
    last4: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct CredentialsView {
    company: String,
    /// refresh_token (the Developer Console's values, or Connect) or soap (SOAP Credentials)
    auth_method: &'static str,
    application_id: Option<String>,
    profile_id: Option<i64>,
    shared_secret: MaskedSecret,
    refresh_token: MaskedSecret,
    developer_key: MaskedSecret,
    password: MaskedSecret,
    /// The SOAP account GUID
    account_id: Option<String>,
    complete: bool,
    missing: Vec<&'static str>,
    version: i64,
    updated_at: String,
    updated_by: String,
}

fn masked(secret: &Option<secrecy::SecretString>) -> MaskedSecret {
    MaskedSecret {
        set: secret.is_some(),
        last4: secret.as_ref().and_then(last4),
    }
}

fn view(c: &Credentials) -> CredentialsView {
    CredentialsView {
        company: c.company.to_string(),
        auth_method: c.auth_method.as_str(),
        application_id: c.application_id.as_ref().map(|a| a.as_str().to_string()),
        profile_id: c.profile_id.map(ProfileId::get),
        shared_secret: masked(&c.shared_secret),
        refresh_token: masked(&c.refresh_token),
        developer_key: masked(&c.developer_key),
        password: masked(&c.password),
        account_id: c.account_id.as_ref().map(|a| a.as_str().to_string()),
        complete: c.is_complete(),
        missing: c.missing(),
        version: c.version,
        updated_at: rfc3339(c.updated_at),
        updated_by: c.updated_by.clone(),
    }
}

fn respond(status: StatusCode, c: &Credentials) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((ETAG, format!("\"{}\"", c.version)))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(view(c))
}

/// The version named by `If-Match` (`"4"`, `W/"4"` or `4`); `*` and absence impose nothing.
fn if_match(req: &HttpRequest) -> Result<Option<i64>, ApiError> {
    let Some(raw) = req.headers().get(header::IF_MATCH) else {
        return Ok(None);
    };
    let raw = raw.to_str().unwrap_or("").trim();
    if raw == "*" {
        return Ok(None);
    }
    // A value that names no version matches none: version 0 never exists (versions start at
    // 1), so the store answers 412 with the current version for the caller to reload.
    Ok(Some(
        raw.trim_start_matches("W/")
            .trim_matches('"')
            .parse::<i64>()
            .unwrap_or(0),
    ))
}

fn conflict(current: Option<i64>) -> ApiError {
    ApiError::new(
        StatusCode::PRECONDITION_FAILED,
        "version_conflict",
        "The credentials were changed since you read them (If-Match does not match). Reload and try again.",
    )
    .with("current_version", current.map_or(Value::Null, Value::from))
}

fn not_found(company: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "credentials_not_found",
        format!("Company '{company}' has no credentials stored."),
    )
}

fn map_store(e: StoreError, company: &str) -> ApiError {
    match e {
        StoreError::VersionConflict { current } => conflict(current),
        StoreError::NotFound => not_found(company),
        other => other.into(),
    }
}

async fn save(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    raw_company: &str,
    body: JsonBody,
    mode: Mode,
) -> Result<HttpResponse, ApiError> {
    let company = caller.authorize(Scope::CredentialsWrite, raw_company)?;
    let if_match = if_match(&req)?;
    let change: CredentialsChange = credentials_input::parse(body.0, mode)?;
    let keys = state.keys.clone();
    let actor = caller.sub.clone();
    let id = company.clone();
    let saved = state
        .db
        .run(move |conn| with_retry(|| store::save(conn, &keys, &id, &change, if_match, &actor)))
        .await
        .map_err(|e| map_store(e, company.as_str()))?;
    // A change answers only once no instance still serves a token or state of the old values:
    // the store's write settled before `run` returned.
    if !saved.changed.is_empty() {
        tracing::info!(company = %company, changed = ?saved.changed, version = saved.credentials.version, "credentials saved");
    }
    let status = if saved.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(respond(status, &saved.credentials))
}

#[utoipa::path(put, path = "/api/v1/companies/{company}/credentials", tag = "credentials", security(("bearer" = [])),
    params(("company" = String, Path), ("If-Match" = Option<String>, Header, pattern = r#"^(\*|(W/)?"?[0-9]+"?)$"#, description = "the version last read (its ETag); a mismatch answers 412")),
    request_body = CredentialsInput,
    responses((status = 201, body = CredentialsView), (status = 200, body = CredentialsView),
              (status = 412, description = "version_conflict"), (status = 422, description = "validation_failed")))]
pub async fn replace(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    path: web::Path<String>,
    body: JsonBody,
) -> Result<HttpResponse, ApiError> {
    save(state, caller, req, &path, body, Mode::Replace).await
}

#[utoipa::path(patch, path = "/api/v1/companies/{company}/credentials", tag = "credentials", security(("bearer" = [])),
    params(("company" = String, Path), ("If-Match" = Option<String>, Header, pattern = r#"^(\*|(W/)?"?[0-9]+"?)$"#, description = "the version last read (its ETag); a mismatch answers 412")),
    request_body(content = CredentialsInput, content_type = "application/merge-patch+json"),
    responses((status = 201, body = CredentialsView), (status = 200, body = CredentialsView),
              (status = 412, description = "version_conflict"), (status = 422, description = "validation_failed")))]
pub async fn merge(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    path: web::Path<String>,
    body: JsonBody,
) -> Result<HttpResponse, ApiError> {
    save(state, caller, req, &path, body, Mode::Merge).await
}

#[utoipa::path(get, path = "/api/v1/companies/{company}/credentials", tag = "credentials", security(("bearer" = [])),
    params(("company" = String, Path)),
    responses((status = 200, body = CredentialsView), (status = 404, description = "credentials_not_found")))]
pub async fn read(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let company = caller.authorize(Scope::CredentialsRead, &path)?;
    let keys = state.keys.clone();
    let id = company.clone();
    let found = state
        .db
        .run(move |conn| store::load(conn, &keys, &id))
        .await?;
    match found {
        Some(c) => Ok(respond(StatusCode::OK, &c)),
        None => Err(not_found(company.as_str())),
    }
}

#[utoipa::path(delete, path = "/api/v1/companies/{company}/credentials", tag = "credentials", security(("bearer" = [])),
    params(("company" = String, Path), ("If-Match" = Option<String>, Header, pattern = r#"^(\*|(W/)?"?[0-9]+"?)$"#, description = "the version last read (its ETag); a mismatch answers 412")),
    responses((status = 204, description = "Forgotten, with cached tokens"), (status = 404, description = "credentials_not_found"),
              (status = 412, description = "version_conflict")))]
pub async fn delete(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let company = caller.authorize(Scope::CredentialsWrite, &path)?;
    let if_match = if_match(&req)?;
    let actor = caller.sub.clone();
    let id = company.clone();
    state
        .db
        .run(move |conn| with_retry(|| store::delete(conn, &id, if_match, &actor)))
        .await
        .map_err(|e| map_store(e, company.as_str()))?;
    tracing::info!(company = %company, "credentials deleted");
    Ok(HttpResponse::NoContent().finish())
}

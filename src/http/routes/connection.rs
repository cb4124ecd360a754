//! Test Connection, the connection status and its history (contract §4).

use actix_web::http::header::ContentType;
use actix_web::{web, HttpResponse};
use connector::TestResult;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::connection_test::TestRequest;
use crate::http::auth::{Caller, Scope};
use crate::http::body::JsonBody;
use crate::http::problem::ApiError;
use crate::http::routes::credentials_input::{self, Mode};
use crate::http::routes::{rfc3339, ListQuery};
use crate::http::state::AppState;
use schema::CompanyId;

#[derive(Serialize, ToSchema)]
pub struct ConnectionStatus {
    company: String,
    /// not_configured, incomplete, untested, connected or failed
    state: String,
    since: Option<String>,
    missing: Vec<&'static str>,
    /// The latest Test Connection of the stored values; null before the first
    last_test: Option<TestResult>,
    last_success_at: Option<String>,
    access_token_expires_at: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct TestHistory {
    tests: Vec<TestResult>,
}

/// The body may carry credential fields: they are laid over the stored ones for this test only
/// (a candidate test, recorded in history, changing neither status nor token cache).
#[utoipa::path(post, path = "/api/v1/companies/{company}/connection/test", tag = "connection", security(("bearer" = [])),
    params(("company" = String, Path)),
    request_body(content = Option<crate::http::routes::credentials_input::CredentialsInput>, description = "optional candidate values"),
    responses((status = 200, description = "The test ran; see outcome and error", body = TestResult)))]
pub async fn test(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    body: JsonBody,
) -> Result<HttpResponse, ApiError> {
    let company = caller.authorize(Scope::ConnectionTest, &path)?;
    let candidate = match body.0 {
        None | Some(Value::Null) => None,
        Some(Value::Object(map)) if map.is_empty() => None,
        Some(value) => Some(credentials_input::parse(Some(value), Mode::Merge)?),
    };
    let tested = state
        .test_connection(TestRequest {
            company,
            candidate,
            triggered_by: caller.sub.clone(),
        })
        .await?;
    // A test that changed the state answers only once no instance still shows the state from
    // before it (the store's write settled); one that left the state as it was answers at once
    // (other instances may show the previous `last_test` for up to 100 ms).
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(tested.result))
}

#[utoipa::path(get, path = "/api/v1/companies/{company}/connection", tag = "connection", security(("bearer" = [])),
    params(("company" = String, Path)), responses((status = 200, body = ConnectionStatus)))]
pub async fn status(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let company = caller.authorize(Scope::ConnectionRead, &path)?;
    let reader = state.clone();
    let body = state
        .statuses
        .get_or_read(company.as_str(), || {
            read_status(reader.clone(), company.clone())
        })
        .await?;
    Ok(status_response(body))
}

/// A company's status as the answer's body, read from the store.
async fn read_status(
    state: web::Data<AppState>,
    company: CompanyId,
) -> Result<web::Bytes, ApiError> {
    let id = company.clone();
    let (status, last_test) = state
        .db
        .run(move |conn| {
            let status = schema::connection::status(conn, &id)?;
            let last = match &status.last_test_id {
                Some(test_id) => schema::connection::test_result(conn, test_id)?,
                None => None,
            };
            Ok((status, last))
        })
        .await?;
    let body = serde_json::to_vec(&ConnectionStatus {
        company: company.to_string(),
        state: status.state.as_str().to_string(),
        since: status.since.map(rfc3339),
        missing: status.missing,
        last_test,
        last_success_at: status.last_success_at.map(rfc3339),
        access_token_expires_at: status.access_token_expires_at.map(rfc3339),
    })
    .map_err(ApiError::internal)?;
    Ok(web::Bytes::from(body))
}

fn status_response(body: web::Bytes) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(ContentType::json())
        .body(body)
}

#[utoipa::path(get, path = "/api/v1/companies/{company}/connection/history", tag = "connection", security(("bearer" = [])),
    params(("company" = String, Path), ("limit" = Option<i64>, Query, minimum = 1, description = "default 20, max 200")),
    responses((status = 200, body = TestHistory)))]
pub async fn history(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let company = caller.authorize(Scope::ConnectionRead, &path)?;
    let limit = query.limit(20, 200)?;
    let rows = state
        .db
        .run(move |conn| schema::connection::history(conn, &company, limit))
        .await?;
    Ok(HttpResponse::Ok().json(TestHistory { tests: rows }))
}

//! The company list (contract §3): a page at a time, by state or part of an id, with the count of
//! every state, so an ERP screen over a fleet of companies never loads them all.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use schema::companies::{Filter, Visible};
use schema::ConnectionState;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};

use crate::http::auth::{Caller, Scope};
use crate::http::problem::ApiError;
use crate::http::routes::{rfc3339, ListQuery};
use crate::http::state::AppState;

const DEFAULT_PAGE: i64 = 100;
const MAX_PAGE: i64 = 1000;
/// The longest search text: a company id is at most 64 characters.
const MAX_Q: usize = 64;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CompaniesQuery {
    /// Companies on one page (default 100, at most 1000; larger is clamped)
    #[param(value_type = Option<u32>, minimum = 1)]
    limit: Option<String>,
    /// The `next` of the page before
    #[param(value_type = Option<String>, max_length = 64)]
    after: Option<String>,
    /// Only companies in this state (`failed` lists the broken connections)
    #[param(value_type = Option<StateName>)]
    state: Option<String>,
    /// Only companies whose id holds this text, ignoring case
    #[param(value_type = Option<String>, max_length = 64)]
    q: Option<String>,
}

/// A connection state, as the `state` filter names it.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)] // the document's enum; the query is parsed by `ConnectionState::parse`
pub enum StateName {
    NotConfigured,
    Incomplete,
    Untested,
    Connected,
    Failed,
}

#[derive(Serialize, ToSchema)]
pub struct CompanySummary {
    company: String,
    /// not_configured, incomplete, untested, connected or failed
    state: String,
    since: Option<String>,
}

/// Companies the caller sees in each state (`state`, `after` and `limit` aside).
#[derive(Serialize, ToSchema)]
pub struct StateCounts {
    not_configured: i64,
    incomplete: i64,
    untested: i64,
    connected: i64,
    failed: i64,
}

#[derive(Serialize, ToSchema)]
pub struct CompanyList {
    companies: Vec<CompanySummary>,
    /// Pass as `after` for the next page; null on the last page
    next: Option<String>,
    counts: StateCounts,
}

/// Companies visible to the caller with their state, ordered by id. A token naming companies sees
/// each of them, those without credentials as `not_configured`; a `*` token sees every company
/// that has some.
#[utoipa::path(get, path = "/api/v1/companies", tag = "companies", security(("bearer" = [])),
    params(CompaniesQuery),
    responses((status = 200, body = CompanyList),
              (status = 400, description = "invalid_query: limit, after, state or q is not valid")))]
pub async fn list(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<CompaniesQuery>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::ConnectionRead)?;
    let limit = ListQuery::of(query.limit.clone()).limit(DEFAULT_PAGE, MAX_PAGE)?;
    let filter = Filter {
        state: query.state.as_deref().map(parse_state).transpose()?,
        text: query.q.as_deref().map(parse_q).transpose()?.flatten(),
    };
    let after = query.after.clone().filter(|a| !a.is_empty());
    if after.as_ref().is_some_and(|a| a.chars().count() > 64) {
        return Err(invalid(
            "after",
            "must be a company id (the next of the page before)",
        ));
    }
    let named = caller.company_list();
    let (page, counts) = state
        .db
        .run(move |conn| {
            let visible = match &named {
                Some(ids) => Visible::Named(ids),
                None => Visible::All,
            };
            let page = schema::companies::page(conn, visible, &filter, after.as_deref(), limit)?;
            let counts = schema::companies::counts(conn, visible, filter.text.as_deref())?;
            Ok((page, counts))
        })
        .await?;
    let count = |s: ConnectionState| {
        counts
            .iter()
            .find(|(state, _)| *state == s)
            .map_or(0, |(_, n)| *n)
    };
    Ok(HttpResponse::Ok().json(CompanyList {
        companies: page
            .companies
            .into_iter()
            .map(|c| CompanySummary {
                company: c.company,
                state: c.state.as_str().to_string(),
                since: c.since.map(rfc3339),
            })
            .collect(),
        next: page.next,
        counts: StateCounts {
            not_configured: count(ConnectionState::NotConfigured),
            incomplete: count(ConnectionState::Incomplete),
            untested: count(ConnectionState::Untested),
            connected: count(ConnectionState::Connected),
            failed: count(ConnectionState::Failed),
        },
    }))
}

fn parse_state(raw: &str) -> Result<ConnectionState, ApiError> {
    ConnectionState::parse(raw.trim()).map_err(|e| invalid("state", &e.to_string()))
}

/// The search text, trimmed; empty means no search.
fn parse_q(raw: &str) -> Result<Option<String>, ApiError> {
    let q = raw.trim();
    if q.chars().count() > MAX_Q {
        return Err(invalid(
            "q",
            "must be part of a company id: at most 64 characters",
        ));
    }
    Ok((!q.is_empty()).then(|| q.to_string()))
}

fn invalid(field: &str, message: &str) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "invalid_query",
        format!("{field} {message}."),
    )
    .with("errors", json!([{"field": field, "message": message}]))
}

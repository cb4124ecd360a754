use actix_web::{web, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;

use crate::http::auth::{Caller, Scope};
use crate::http::problem::ApiError;
use crate::http::routes::rfc3339;
use crate::service::startup::AppState;

#[derive(Serialize, ToSchema)]
pub struct CompanySummary {
    company: String,
    /// not_configured, incomplete, untested, connected or failed
    state: String,
    since: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct CompanyList {
    companies: Vec<CompanySummary>,
}

/// Companies visible to the caller with their state. A token naming companies sees each of them,
/// those without credentials as `not_configured`; a `*` token sees every company that has some.
#[utoipa::path(get, path = "/api/v1/companies", tag = "companies", security(("bearer" = [])),
    responses((status = 200, body = CompanyList)))]
pub async fn list(state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::ConnectionRead)?;
    let only = caller.company_list();
    let filter = only.clone();
    let rows = state
        .db
        .run(move |conn| schema::credentials::list_states(conn, filter.as_deref()))
        .await?;
    let mut companies: Vec<CompanySummary> = rows
        .into_iter()
        .map(|r| CompanySummary {
            company: r.company,
            state: r.state.as_str().to_string(),
            since: Some(rfc3339(r.since)),
        })
        .collect();
    for id in only.unwrap_or_default() {
        if !companies.iter().any(|c| c.company == id.as_str()) {
            companies.push(CompanySummary {
                company: id.to_string(),
                state: "not_configured".into(),
                since: None,
            });
        }
    }
    companies.sort_by(|a, b| a.company.cmp(&b.company));
    Ok(HttpResponse::Ok().json(CompanyList { companies }))
}

//! Access tokens for scheduled connector jobs (contract §6).

use std::time::Duration;

use actix_web::{web, HttpResponse};
use chrono::Utc;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::http::auth::{Caller, Scope};
use crate::http::problem::ApiError;
use crate::http::routes::rfc3339;
use crate::http::state::AppState;
use crate::tokens::Served;

/// The largest `min_ttl` honoured: a fresh ChannelAdvisor token lives an hour, so a larger demand
/// could never be met and would refresh on every call.
pub const MAX_MIN_TTL: u64 = 3300;

#[derive(Deserialize)]
pub struct TokenQuery {
    min_ttl: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct AccessToken {
    access_token: String,
    /// Always "Bearer"
    token_type: &'static str,
    expires_at: String,
    expires_in: i64,
}

#[utoipa::path(post, path = "/api/v1/companies/{company}/access-token", tag = "tokens", security(("bearer" = [])),
    params(("company" = String, Path), ("min_ttl" = Option<u64>, Query, minimum = 0, maximum = 3300, description = "least remaining life in seconds (default: the refresh margin; max 3300)")),
    responses((status = 200, body = AccessToken),
              (status = 409, description = "connection_not_ready, or a permanent rejection with its Test Connection code"),
              (status = 503, description = "a transient upstream failure with its code and Retry-After")))]
pub async fn issue(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    query: web::Query<TokenQuery>,
) -> Result<HttpResponse, ApiError> {
    let company = caller.authorize(Scope::TokenIssue, &path)?;
    let min_ttl = match &query.min_ttl {
        None => None,
        Some(raw) => match raw.trim().parse::<u64>() {
            Ok(v) if v <= MAX_MIN_TTL => Some(v),
            _ => {
                return Err(ApiError::new(actix_web::http::StatusCode::BAD_REQUEST, "invalid_query", "min_ttl must be a whole number of seconds from 0 to 3300.")
                    .with("errors", serde_json::json!([{"field": "min_ttl", "message": "must be a whole number from 0 to 3300"}])))
            }
        },
    };
    let need = state
        .config
        .token_refresh_margin
        .max(Duration::from_secs(min_ttl.unwrap_or(0)));
    let result = state.tokens.issue(&company, need).await;
    let outcome = match &result {
        Ok(issued) if issued.served == Served::CacheHit => "cache_hit",
        Ok(_) => "refreshed",
        Err(_) => "failed",
    };
    state
        .metrics
        .token_requests
        .with_label_values(&[outcome])
        .inc();
    if result.is_err() {
        // A failed refresh may have written access_token.refresh_failed.
    }
    let token = result?.token;
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .insert_header(("Pragma", "no-cache"))
        .json(AccessToken {
            access_token: token.access_token.expose_secret().to_string(),
            token_type: "Bearer",
            expires_at: rfc3339(token.expires_at),
            expires_in: (token.expires_at - Utc::now()).num_seconds().max(0),
        }))
}

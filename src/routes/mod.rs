//! The HTTP routes, one file per resource. Every `/api/v1` handler takes a `Caller` and asks it
//! for the scope and company before touching the store.

pub mod access_token;
pub mod audit;
pub mod companies;
pub mod connection;
pub mod credentials;
mod credentials_input;
pub mod health;
pub mod webhooks;

use actix_web::http::StatusCode;
use actix_web::web;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Deserialize;

use crate::problem::ApiError;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/healthz").route(web::get().to(health::healthz)))
        .service(web::resource("/readyz").route(web::get().to(health::readyz)))
        .service(web::resource("/metrics").route(web::get().to(health::metrics)))
        .service(web::resource("/openapi.json").route(web::get().to(health::openapi)))
        .service(
            // The router tries patterns in this order, one regex match each; the two routes
            // connector jobs and screens call most come first (no two patterns overlap).
            web::scope("/api/v1")
                .service(
                    web::resource("/companies/{company}/access-token")
                        .route(web::post().to(access_token::issue)),
                )
                .service(
                    web::resource("/companies/{company}/connection")
                        .route(web::get().to(connection::status)),
                )
                .service(web::resource("/companies").route(web::get().to(companies::list)))
                .service(
                    web::resource("/companies/{company}/credentials")
                        .route(web::put().to(credentials::replace))
                        .route(web::patch().to(credentials::merge))
                        .route(web::get().to(credentials::read))
                        .route(web::delete().to(credentials::delete)),
                )
                .service(
                    web::resource("/companies/{company}/audit").route(web::get().to(audit::list)),
                )
                .service(
                    web::resource("/companies/{company}/connection/test")
                        .route(web::post().to(connection::test)),
                )
                .service(
                    web::resource("/companies/{company}/connection/history")
                        .route(web::get().to(connection::history)),
                )
                .service(
                    web::resource("/webhooks")
                        .route(web::post().to(webhooks::create))
                        .route(web::get().to(webhooks::list)),
                )
                .service(
                    web::resource("/webhooks/{id}")
                        .route(web::get().to(webhooks::read))
                        .route(web::delete().to(webhooks::delete)),
                )
                .service(
                    web::resource("/webhooks/{id}/rotate-secret")
                        .route(web::post().to(webhooks::rotate_secret)),
                )
                .service(web::resource("/webhooks/{id}/ping").route(web::post().to(webhooks::ping)))
                .service(
                    web::resource("/webhooks/{id}/deliveries")
                        .route(web::get().to(webhooks::deliveries)),
                ),
        );
}

pub async fn not_found() -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "There is no such resource.",
    ))
}

/// `?limit=N` of the list endpoints: positive; above the maximum it is clamped.
#[derive(Debug, Deserialize)]
pub struct ListQuery {
    limit: Option<String>,
}

impl ListQuery {
    pub fn limit(&self, default: i64, max: i64) -> Result<i64, ApiError> {
        match &self.limit {
            None => Ok(default),
            Some(raw) => match raw.trim().parse::<i64>() {
                Ok(n) if n >= 1 => Ok(n.min(max)),
                _ => Err(ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", "limit must be a whole number of at least 1.")
                    .with("errors", serde_json::json!([{"field": "limit", "message": "must be a whole number of at least 1"}]))),
            },
        }
    }
}

pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

//! The HTTP routes, one file per resource. Every `/api/v1` handler takes a `Caller` and asks it
//! for the scope and company before touching the store.

pub mod access_token;
pub mod admin;
pub mod audit;
pub mod companies;
pub mod connect;
mod connect_page;
pub mod connection;
pub mod credentials;
pub mod credentials_input;
pub mod events;
pub mod health;
mod input;
pub mod webhooks;

use actix_web::http::StatusCode;
use actix_web::web;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Deserialize;

use crate::http::problem::ApiError;

/// The route table: each path with its methods and handlers. The router is built from it and
/// `ROUTES` lists it, so a test can hold the OpenAPI document against the routes that exist.
macro_rules! route_table {
    ($($path:literal => { $($method:ident: $handler:path),+ $(,)? })*) => {
        /// Every route as (method, path), in the order the router tries them.
        pub const ROUTES: &[(&str, &str)] = &[$($((stringify!($method), $path)),+),*];

        pub fn configure(cfg: &mut web::ServiceConfig) {
            $(cfg.service(web::resource($path)$(.route(web::$method().to($handler)))+);)*
        }
    };
}

// The router tries patterns in this order, one match each; the two routes connector jobs and
// screens call most come first (no two patterns overlap).
route_table! {
    "/api/v1/companies/{company}/access-token" => { post: access_token::issue }
    "/api/v1/companies/{company}/connection" => { get: connection::status }
    "/healthz" => { get: health::healthz }
    "/readyz" => { get: health::readyz }
    "/metrics" => { get: health::metrics }
    "/openapi.json" => { get: health::openapi }
    "/api/v1/companies" => { get: companies::list }
    "/api/v1/companies/{company}/credentials" => {
        put: credentials::replace,
        patch: credentials::merge,
        get: credentials::read,
        delete: credentials::delete,
    }
    "/api/v1/companies/{company}/audit" => { get: audit::list }
    "/api/v1/companies/{company}/connection/test" => { post: connection::test }
    "/api/v1/companies/{company}/connection/history" => { get: connection::history }
    "/api/v1/webhooks" => { post: webhooks::create, get: webhooks::list }
    "/api/v1/webhooks/{id}" => { get: webhooks::read, delete: webhooks::delete }
    "/api/v1/webhooks/{id}/rotate-secret" => { post: webhooks::rotate_secret }
    "/api/v1/webhooks/{id}/ping" => { post: webhooks::ping }
    "/api/v1/webhooks/{id}/deliveries" => { get: webhooks::deliveries }
    "/api/v1/webhook-audit" => { get: webhooks::audit }
    "/api/v1/companies/{company}/connect" => { post: connect::start }
    "/api/v1/companies/{company}/connect/code" => { post: connect::code }
    "/oauth/callback" => { get: connect::callback }
    "/api/v1/events" => { get: events::stream }
    "/admin" => { get: admin::redirect }
    "/admin/" => { get: admin::page }
    "/admin/{file}" => { get: admin::asset }
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
    pub fn of(limit: Option<String>) -> Self {
        ListQuery { limit }
    }

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

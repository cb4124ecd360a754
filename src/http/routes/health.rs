//! Operational endpoints, no auth: liveness, readiness, metrics and the OpenAPI document.

use std::time::Duration;

use actix_web::{web, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;

use crate::http::openapi::ApiDoc;
use crate::http::problem::ApiError;
use crate::http::state::AppState;

/// Liveness: always "ok" while the process answers.
#[derive(Serialize, ToSchema)]
pub struct Alive {
    status: &'static str,
}

/// Readiness: "ready", and which database the instance uses.
#[derive(Serialize, ToSchema)]
pub struct Ready {
    status: &'static str,
    /// sqlite or postgres
    database: &'static str,
}

#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "The process is alive", body = Alive)))]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Alive { status: "ok" })
}

#[utoipa::path(get, path = "/readyz", tag = "operations", responses(
    (status = 200, description = "Database reachable and migrations applied", body = Ready),
    (status = 503, description = "Not ready", content_type = "application/problem+json")))]
pub async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    match state.db.check_ready(Duration::from_secs(2)).await {
        Ok(()) => Ok(HttpResponse::Ok().json(Ready {
            status: "ready",
            database: state.db.backend().name(),
        })),
        Err(e) => {
            tracing::warn!(error = %e, "not ready");
            Err(ApiError::unavailable(
                "not_ready",
                "The database is not reachable or not migrated yet.",
            ))
        }
    }
}

#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    // The connections gauge is the store's count at scrape time, so every instance reports the
    // same fleet; a failed count leaves the last figures and is logged.
    let visible = schema::companies::Visible::All;
    match state
        .db
        .run(move |conn| schema::companies::counts(conn, visible, None))
        .await
    {
        Ok(counts) => {
            for (s, n) in counts {
                state
                    .metrics
                    .connections
                    .with_label_values(&[s.as_str()])
                    .set(n);
            }
        }
        Err(e) => tracing::warn!(error = %e, "counting connections for /metrics failed"),
    }
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.metrics.render())
}

#[utoipa::path(get, path = "/openapi.json", tag = "operations", responses((status = 200, description = "This document")))]
pub async fn openapi() -> HttpResponse {
    use utoipa::OpenApi;
    HttpResponse::Ok().json(ApiDoc::openapi())
}

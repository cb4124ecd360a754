//! The reference ERP settings screen (contract §12): HTML, CSS and JavaScript built into the
//! binary, served with a Content-Security-Policy that allows nothing but this origin (no inline
//! script or style) and the frame ancestors the operator names.

use actix_web::http::header;
use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};

use crate::http::problem::ApiError;
use crate::http::state::AppState;

const PAGE: &str = include_str!("../admin/index.html");
const STYLE: &str = include_str!("../admin/admin.css");
const SCRIPT: &str = include_str!("../admin/admin.js");

fn serve(state: &AppState, content_type: &str, body: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            format!(
                "default-src 'self'; frame-ancestors {}",
                state.config.admin_frame_ancestors
            ),
        ))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        // The page's own URL may carry the token in its fragment; no request it makes says where
        // it came from.
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(body)
}

#[utoipa::path(get, path = "/admin", tag = "settings screen",
    responses((status = 308, description = "to /admin/")))]
pub async fn redirect() -> HttpResponse {
    HttpResponse::build(StatusCode::PERMANENT_REDIRECT)
        .insert_header((header::LOCATION, "/admin/"))
        .finish()
}

/// The settings screen. It reads its JWT from the URL fragment (`#token=…`) or a sign-in box.
#[utoipa::path(get, path = "/admin/", tag = "settings screen",
    responses((status = 200, description = "The settings screen", content_type = "text/html")))]
pub async fn page(state: web::Data<AppState>) -> HttpResponse {
    serve(&state, "text/html; charset=utf-8", PAGE)
}

#[utoipa::path(get, path = "/admin/{file}", tag = "settings screen",
    params(("file" = String, Path, description = "admin.css or admin.js")),
    responses((status = 200, description = "The screen's style sheet or script"),
              (status = 404, description = "not_found")))]
pub async fn asset(
    state: web::Data<AppState>,
    file: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    match file.as_str() {
        "admin.css" => Ok(serve(&state, "text/css; charset=utf-8", STYLE)),
        "admin.js" => Ok(serve(&state, "text/javascript; charset=utf-8", SCRIPT)),
        _ => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "There is no such resource.",
        )),
    }
}

//! RFC 9457 problem details: the one shape of every error answer, with a stable `code`
//! (catalogue in docs/errors.md). Internal errors are logged here, once, and answered without
//! detail; the request id in the log matches the `x-request-id` header.

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use serde_json::{json, Map, Value};
use utoipa::ToSchema;

pub const PROBLEM_JSON: &str = "application/problem+json";

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub detail: String,
    extra: Map<String, Value>,
    headers: Vec<(HeaderName, String)>,
}

/// The body of every error answer (RFC 9457). Some codes add members, listed in docs/errors.md:
/// `errors` (each bad field with its message), `current_version`, `fields`, `hint`,
/// `retry_after_seconds`, `upstream_status`, `state`, `missing`.
#[derive(Serialize, ToSchema)]
pub struct Problem {
    /// urn:ca-connector:problem:{code}
    #[serde(rename = "type")]
    kind: String,
    title: &'static str,
    status: u16,
    detail: String,
    /// The stable code (docs/errors.md)
    code: &'static str,
    #[serde(flatten)]
    #[schema(ignore)]
    extra: Map<String, Value>,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status.as_u16(), self.code, self.detail)
    }
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            detail: detail.into(),
            extra: Map::new(),
            headers: Vec::new(),
        }
    }

    /// Adds a member to the problem body (e.g. `errors` for validation failures).
    pub fn with(mut self, key: &str, value: Value) -> Self {
        self.extra.insert(key.to_string(), value);
        self
    }

    pub fn header(mut self, name: HeaderName, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// An unexpected failure: logged with its cause, answered as a bare 500.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "An unexpected error occurred. The server log has the details under this response's x-request-id.",
        )
    }

    pub fn unavailable(code: &'static str, detail: impl Into<String>) -> Self {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, code, detail)
    }

    pub fn validation(errors: Vec<(String, String)>) -> Self {
        let list: Vec<Value> = errors
            .iter()
            .map(|(field, message)| json!({"field": field, "message": message}))
            .collect();
        let fields: Vec<&str> = errors.iter().map(|(f, _)| f.as_str()).collect();
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            format!("Some values are not valid: {}.", fields.join(", ")),
        )
        .with("errors", Value::Array(list))
    }

    /// The generic problem for a status that reached us without one (actix's own 404/405/413…).
    pub fn for_status(status: StatusCode) -> Self {
        let (code, detail) = match status.as_u16() {
            400 => ("bad_request", "The request could not be understood."),
            401 => ("invalid_token", "A valid bearer token is required."),
            404 => ("not_found", "There is no such resource."),
            405 => (
                "method_not_allowed",
                "This resource does not support that method.",
            ),
            413 => ("body_too_large", "The request body is larger than 64 KiB."),
            415 => (
                "unsupported_media_type",
                "The request body must be application/json.",
            ),
            s if s >= 500 => ("internal_error", "An unexpected error occurred."),
            _ => ("request_failed", "The request failed."),
        };
        ApiError::new(status, code, detail)
    }

    pub fn body(&self) -> Problem {
        Problem {
            kind: format!("urn:ca-connector:problem:{}", self.code),
            title: self.status.canonical_reason().unwrap_or("Error"),
            status: self.status.as_u16(),
            detail: self.detail.clone(),
            code: self.code,
            extra: self.extra.clone(),
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = HttpResponse::build(self.status);
        res.content_type(PROBLEM_JSON);
        for (name, value) in &self.headers {
            if let Ok(v) = HeaderValue::from_str(value) {
                res.insert_header((name.clone(), v));
            }
        }
        res.body(serde_json::to_string(&self.body()).unwrap_or_default())
    }
}

impl From<schema::StoreError> for ApiError {
    fn from(e: schema::StoreError) -> Self {
        ApiError::from(&e)
    }
}

impl From<&schema::StoreError> for ApiError {
    fn from(e: &schema::StoreError) -> Self {
        use schema::{SealError, StoreError};
        match e {
            StoreError::Seal(SealError::Open { .. })
            | StoreError::Seal(SealError::UnknownKey(_)) => {
                tracing::error!(error = %e, "stored secret does not open");
                ApiError::new(
                    StatusCode::CONFLICT,
                    "credentials_unreadable",
                    "The stored secrets of this company cannot be decrypted (they were altered or copied from elsewhere). Enter the Shared Secret and Refresh Token again.",
                )
                .with("fields", json!(["shared_secret", "refresh_token"]))
            }
            e if e.is_unavailable() => {
                tracing::error!(error = %e, "database unavailable");
                ApiError::unavailable(
                    "database_unavailable",
                    "The database is not reachable right now; try again shortly.",
                )
                .header(header::RETRY_AFTER, "5")
            }
            other => ApiError::internal(other),
        }
    }
}

/// Marks an error answer that is an HTML page on purpose (the Connect callback's pages, which a
/// browser shows), so the middleware below leaves it alone.
pub struct BrowserPage;

/// Middleware: any error answer that is not already problem+json (actix's 404, 405, 413, payload
/// and extractor errors) is replaced by the problem for its status.
pub async fn problem_for_every_error(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let res = next.call(req).await?;
    let status = res.status();
    let is_problem = res
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(PROBLEM_JSON.as_bytes()))
        || res.response().extensions().get::<BrowserPage>().is_some();
    if (status.is_client_error() || status.is_server_error()) && !is_problem {
        let (req, old) = res.into_parts();
        let mut new = ApiError::for_status(status).error_response();
        // Keep headers that matter to the client (Allow on 405).
        if let Some(allow) = old.headers().get(header::ALLOW) {
            new.headers_mut().insert(header::ALLOW, allow.clone());
        }
        return Ok(ServiceResponse::new(req, new));
    }
    Ok(res.map_into_boxed_body())
}

//! What a caller is told when a service could not do what it asked: the one place service errors
//! become problem+json answers, status codes and headers.

use actix_web::http::header::RETRY_AFTER;
use actix_web::http::StatusCode;
use connector::TestError;
use serde_json::json;

use crate::connect::flow::ConnectError;
use crate::fault::Fault;
use crate::http::problem::ApiError;
use crate::tokens::decide::Refusal;
use crate::tokens::Failure;

impl From<Fault> for ApiError {
    fn from(f: Fault) -> Self {
        match f {
            Fault::Store(e) => ApiError::from(&*e),
            Fault::Ended(what) => ApiError::internal(what),
            Fault::Invalid(what) => ApiError::internal(what),
        }
    }
}

impl From<ConnectError> for ApiError {
    fn from(e: ConnectError) -> Self {
        let detail = e.to_string();
        match e {
            ConnectError::NotConfigured => {
                ApiError::new(StatusCode::CONFLICT, "connect_not_configured", detail)
            }
            ConnectError::NotReady { missing } => {
                ApiError::new(StatusCode::CONFLICT, "connection_not_ready", detail)
                    .with("missing", json!(missing))
            }
            ConnectError::ApplicationChanged => {
                ApiError::new(StatusCode::CONFLICT, "invalid_state", detail)
            }
            ConnectError::Fault(f) => f.into(),
        }
    }
}

impl From<Failure> for ApiError {
    fn from(f: Failure) -> Self {
        match f {
            Failure::Fault(f) => f.into(),
            Failure::Refused(Refusal::Upstream(e)) => refresh_error(&e),
            Failure::Refused(Refusal::NotReady { state, missing }) => {
                not_ready(state.as_str(), &missing)
            }
        }
    }
}

/// A failed refresh as the job sees it: permanent rejections are 409 (fix the credentials),
/// transient ones 503 with Retry-After (try again).
pub fn refresh_error(e: &TestError) -> ApiError {
    let body = |status| {
        ApiError::new(status, e.code.as_str(), e.message.clone())
            .with("hint", json!(e.hint))
            .with("fields", json!(e.fields))
            .with("upstream_status", json!(e.upstream_status))
    };
    if e.code.is_permanent() {
        body(StatusCode::CONFLICT)
    } else {
        let retry = e.retry_after_seconds.unwrap_or(5);
        body(StatusCode::SERVICE_UNAVAILABLE)
            .with("retry_after_seconds", json!(retry))
            .header(RETRY_AFTER, retry.to_string())
    }
}

fn not_ready(state: &str, missing: &[&str]) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "connection_not_ready",
        format!("The connection is {state}: save the Application ID, Shared Secret and Refresh Token first."),
    )
    .with("state", json!(state))
    .with("missing", json!(missing))
}

//! The JSON request body: content type, the 64 KiB limit and syntax are checked here, once, so
//! every route answers 415 / 413 / 400 the same way. Field rules are the routes' business.

use std::future::Future;
use std::pin::Pin;

use actix_web::http::header::CONTENT_TYPE;
use actix_web::http::StatusCode;
use actix_web::{dev::Payload, web, FromRequest, HttpRequest};
use serde_json::Value;

use crate::http::problem::ApiError;

pub const BODY_LIMIT: usize = 64 * 1024;

/// A parsed JSON body; `None` when the request had no body at all.
pub struct JsonBody(pub Option<Value>);

fn is_json(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

impl FromRequest for JsonBody {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let content_type = req
            .headers()
            .get(CONTENT_TYPE)
            .map(|v| v.to_str().unwrap_or("invalid").to_string());
        let bytes = web::Bytes::from_request(req, payload);
        Box::pin(async move {
            let bytes = bytes.await.map_err(|e| {
                if e.as_response_error().status_code() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "body_too_large",
                        "The request body is larger than 64 KiB.",
                    )
                } else {
                    ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "malformed_body",
                        "The request body could not be read.",
                    )
                }
            })?;
            if bytes.is_empty() {
                return Ok(JsonBody(None));
            }
            match &content_type {
                Some(ct) if is_json(ct) => {}
                _ => {
                    return Err(ApiError::new(
                        StatusCode::UNSUPPORTED_MEDIA_TYPE,
                        "unsupported_media_type",
                        "The request body must be JSON (Content-Type: application/json or application/merge-patch+json).",
                    ))
                }
            }
            serde_json::from_slice(&bytes)
                .map(|v| JsonBody(Some(v)))
                .map_err(|e| {
                    ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "malformed_body",
                        malformed_detail(&e),
                    )
                })
        })
    }
}

/// What is wrong with a body that is not JSON, and where. A raw control character inside a
/// string (a pasted tab or line break) is named as such: the value looks fine to the person.
fn malformed_detail(e: &serde_json::Error) -> String {
    if e.to_string().contains("control character") {
        format!(
            "The request body has a raw control character (a tab, line break or similar) inside a string at line {}, column {}; remove it, or write it escaped (\\t, \\n, \\u0009).",
            e.line(),
            e.column()
        )
    } else {
        format!(
            "The request body is not valid JSON (line {}, column {}).",
            e.line(),
            e.column()
        )
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn json_content_types() {
        for ok in [
            "application/json",
            "application/json; charset=utf-8",
            "application/merge-patch+json",
            "Application/JSON",
        ] {
            assert!(super::is_json(ok), "{ok}");
        }
        for bad in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "application/jsonx",
            "",
        ] {
            assert!(!super::is_json(bad), "{bad}");
        }
    }
}

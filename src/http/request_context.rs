//! Gives every request an id (the `x-request-id` header, also on the response) and a tracing span
//! carrying it, so every log line of the request can be found by that id.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::HttpMessage;
use tracing::Instrument;

use crate::http::auth::Actor;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The request id of the current request, for handlers that mention it.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

pub async fn request_context(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    // A caller's id is kept when it is short and printable, so the ERP can correlate its own logs.
    let id = req
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    req.extensions_mut().insert(RequestId(id.clone()));
    let span = tracing::info_span!("request", request_id = %id);
    let started = std::time::Instant::now();
    let result = next.call(req).instrument(span.clone()).await;
    let mut res = result?;
    span.in_scope(|| access_line(&res, started.elapsed()));
    if let Ok(value) = HeaderValue::from_str(&id) {
        res.headers_mut().insert(REQUEST_ID, value);
    }
    Ok(res)
}

/// One line per request. Successful ones are logged at debug: connector jobs ask for tokens
/// thousands of times a minute, a line each would cost more than the answer and bury the
/// operator's log, and the metrics count them. Refusals are info, server errors warn.
fn access_line<B>(res: &ServiceResponse<B>, took: std::time::Duration) {
    let req = res.request();
    let extensions = req.extensions();
    let sub = extensions.get::<Actor>().map(|a| a.0.sub.as_str());
    let (status, duration_ms) = (res.status().as_u16(), took.as_millis() as u64);
    macro_rules! line {
        ($level:ident) => {
            tracing::$level!(method = %req.method(), path = req.path(), status, duration_ms, sub, "request finished")
        };
    }
    match status {
        500.. => line!(warn),
        400..=499 => line!(info),
        _ => line!(debug),
    }
}

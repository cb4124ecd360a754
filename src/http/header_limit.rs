//! Request headers over 32 KiB in all are refused with 431 `headers_too_large` (contract §9):
//! the HTTP layer accepts far more, and every handler would otherwise read, log and keep them.

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::ResponseError;

use crate::http::problem::ApiError;

pub const HEADER_LIMIT: usize = 32 * 1024;

pub async fn refuse_large_headers(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    // Name, value and the ": " and CRLF around them, as the bytes arrived.
    let size: usize = req
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    if size > HEADER_LIMIT {
        // An answer, not an error: the middlewares around it (request id, metrics) see it as
        // they see every other answer.
        let problem = ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers_too_large",
            format!(
                "The request headers are {size} bytes in all; at most {HEADER_LIMIT} are accepted."
            ),
        );
        return Ok(req
            .into_response(problem.error_response())
            .map_into_right_body());
    }
    next.call(req)
        .await
        .map(ServiceResponse::map_into_left_body)
}

//! Middleware: every request counted and timed by route template, method and status.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::web;

use crate::http::state::AppState;

/// A fixed set of method labels: the raw method is chosen by the caller, and every made-up one
/// would otherwise be a new time series (memory without bound, before any authentication).
fn method_label(method: &actix_web::http::Method) -> &'static str {
    use actix_web::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

pub async fn record_http_metrics(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = std::time::Instant::now();
    let method = method_label(req.method());
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let res = next.call(req).await?;
    if let Some(state) = state {
        let route = res
            .request()
            .match_pattern()
            .unwrap_or_else(|| "unmatched".to_string());
        let status = res.status().as_u16().to_string();
        let labels = [route.as_str(), method, status.as_str()];
        state.metrics.http_requests.with_label_values(&labels).inc();
        state
            .metrics
            .http_duration
            .with_label_values(&labels)
            .observe(started.elapsed().as_secs_f64());
    }
    Ok(res)
}

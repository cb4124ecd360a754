//! The HTTP edge: authentication, body and header rules, problem+json errors, request ids, the
//! route table with one file per resource, the OpenAPI document and the admin page's assets.

pub mod auth;
pub mod body;
pub mod header_limit;
pub mod metrics_middleware;
pub mod openapi;
pub mod problem;
pub mod request_context;
pub mod routes;
pub mod service_errors;
pub mod state;
pub mod verified_tokens;

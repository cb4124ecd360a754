//! The OpenAPI 3.1 document, generated from the handlers' annotations and the request / response
//! structs themselves. Two modifiers add what is true of many operations at once, so no operation
//! can forget it: the company id's rule on every `{company}`, and the problem+json error answers
//! the shared layers give (authentication, the body reader, the header limit, the store).

use utoipa::openapi::content::ContentBuilder;
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Ref, RefOr, Response};
use utoipa::{Modify, OpenApi};

use crate::http::problem::{Problem, PROBLEM_JSON};
use crate::http::routes::{
    access_token, admin, audit, companies, connect, connection, credentials, events, health,
    webhooks,
};

/// `CompanyId::parse`'s rule as a regular expression body (no anchors).
pub const COMPANY_ID_BODY: &str = "[A-Za-z0-9][A-Za-z0-9_.-]{0,63}";

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// Error answers by the layer that gives them.
const EVERY_OPERATION: &[(&str, &str)] = &[
    (
        "431",
        "headers_too_large: more than 32 KiB of request headers",
    ),
    ("500", "internal_error"),
];
const WITH_STORE: &[(&str, &str)] = &[("503", "database_unavailable, or an upstream failure")];
const SECURED: &[(&str, &str)] = &[
    (
        "401",
        "invalid_token: missing, expired or not for this service",
    ),
    ("403", "scope_missing or company_forbidden"),
];
const WITH_COMPANY: &[(&str, &str)] = &[("400", "invalid_company")];
const WITH_QUERY: &[(&str, &str)] = &[("400", "invalid_query")];
const WITH_BODY: &[(&str, &str)] = &[
    ("400", "malformed_body: not JSON"),
    ("413", "body_too_large: over 64 KiB"),
    ("415", "unsupported_media_type: not JSON"),
    ("422", "validation_failed: `errors` names each bad field"),
];

/// Every `{company}` carries the company id's rule; every error answer is problem+json.
struct SharedAnswers;

fn problem_response(description: &str) -> Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            PROBLEM_JSON,
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Problem")))
                .build(),
        )
        .build()
}

fn add_answers(operation: &mut Operation, answers: &[(&str, &str)]) {
    for (status, description) in answers {
        let responses = &mut operation.responses.responses;
        responses
            .entry(status.to_string())
            .or_insert_with(|| problem_response(description).into());
    }
}

fn shape(operation: &mut Operation, path: &str) {
    add_answers(operation, EVERY_OPERATION);
    if path.starts_with("/api/") {
        add_answers(operation, WITH_STORE);
    }
    if operation.security.is_some() {
        add_answers(operation, SECURED);
    }
    let params = operation.parameters.iter_mut().flatten();
    let mut queried = false;
    for param in params {
        match param.parameter_in {
            ParameterIn::Path if param.name == "company" => {
                param.schema = Some(
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .pattern(Some(format!("^{COMPANY_ID_BODY}$")))
                        .max_length(Some(64))
                        .into(),
                );
            }
            ParameterIn::Query => queried = true,
            _ => {}
        }
    }
    if path.contains("{company}") {
        add_answers(operation, WITH_COMPANY);
    }
    if queried {
        add_answers(operation, WITH_QUERY);
    }
    if operation.request_body.is_some() {
        add_answers(operation, WITH_BODY);
    }
    // An error answer an annotation named without a body is problem+json too.
    for (status, response) in operation.responses.responses.iter_mut() {
        let RefOr::T(response) = response else {
            continue;
        };
        let is_error = status.parse::<u16>().is_ok_and(|s| s >= 400);
        if is_error && response.content.is_empty() {
            *response = problem_response(&response.description);
        }
    }
}

impl Modify for SharedAnswers {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for (path, item) in openapi.paths.paths.iter_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ];
            for operation in operations.into_iter().flatten() {
                shape(operation, path);
            }
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "ca-connector", description = "ChannelAdvisor connection backend for ERP companies"),
    paths(
        health::healthz, health::readyz, health::metrics, health::openapi,
        companies::list,
        credentials::replace, credentials::merge, credentials::read, credentials::delete,
        audit::list,
        connection::test, connection::status, connection::history,
        access_token::issue,
        webhooks::create, webhooks::list, webhooks::read, webhooks::delete, webhooks::rotate_secret, webhooks::ping, webhooks::deliveries, webhooks::audit,
        connect::start, connect::code, connect::callback,
        events::stream,
        admin::redirect, admin::page, admin::asset,
    ),
    components(schemas(Problem)),
    modifiers(&BearerAuth, &SharedAnswers)
)]
pub struct ApiDoc;

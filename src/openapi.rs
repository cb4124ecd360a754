//! The OpenAPI 3.1 document, generated from the handlers' annotations.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::routes::{
    access_token, admin, audit, companies, connect, connection, credentials, events, health,
    webhooks,
};

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
        webhooks::create, webhooks::list, webhooks::read, webhooks::delete, webhooks::rotate_secret, webhooks::ping, webhooks::deliveries,
        connect::start, connect::code, connect::callback,
        events::stream,
        admin::redirect, admin::page, admin::asset,
    ),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

//! Web-hook subscriptions (contract §7). A subscription is visible only to callers whose token
//! covers all its companies; to others it does not exist (404).

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use schema::outbox::{ALL_EVENTS, PING};
use schema::webhooks::{NewWebhook, Webhook};
use schema::CompanyId;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::RefOr;
use utoipa::{PartialSchema, ToSchema};
use web_hooks::signing::new_secret;
use web_hooks::target::check_url_problems;

use crate::http::auth::{Caller, Scope};
use crate::http::body::JsonBody;
use crate::http::problem::ApiError;
use crate::http::routes::input::{self, Field, Problems};
use crate::http::routes::{rfc3339, ListQuery};
use crate::http::state::AppState;

#[derive(Serialize, ToSchema)]
pub struct WebhookView {
    id: String,
    url: String,
    events: Vec<String>,
    companies: Vec<String>,
    description: Option<String>,
    enabled: bool,
    created_at: String,
    /// Only in the answers of create and rotate-secret.
    #[serde(skip_serializing_if = "Option::is_none")]
    secret: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct WebhookList {
    webhooks: Vec<WebhookView>,
}

#[derive(Serialize, ToSchema)]
pub struct DeliveryAttempt {
    id: String,
    event_id: String,
    event_type: String,
    attempt: i64,
    at: String,
    status_code: Option<i64>,
    duration_ms: i64,
    /// delivered or failed
    outcome: String,
    error: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct DeliveryList {
    deliveries: Vec<DeliveryAttempt>,
}

/// The body of `POST /api/v1/webhooks`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookInput {
    /// The https URL that receives events (http only with --webhook-allow-http; private and
    /// loopback hosts only with --webhook-allow-private)
    // `default` so a missing url is reported with the body's other problems, not alone.
    #[serde(default)]
    #[schema(required = true, value_type = String, format = "uri", max_length = 2048)]
    url: Field<String>,
    /// Event types; default: every event
    #[serde(default)]
    #[schema(value_type = Option<Vec<EventType>>, nullable, min_items = 1)]
    events: Field<Vec<String>>,
    /// Company ids, or ["*"] for every company the token covers
    #[serde(default)]
    #[schema(required = true, value_type = Vec<CompanyOrAll>, min_items = 1)]
    companies: Field<Vec<String>>,
    #[serde(default)]
    #[schema(value_type = Option<String>, nullable, max_length = 256)]
    description: Field<String>,
}

/// An event type a subscription may ask for (OpenAPI only: the list is `ALL_EVENTS` and ping).
pub struct EventType;

impl PartialSchema for EventType {
    fn schema() -> RefOr<Schema> {
        let names = ALL_EVENTS.iter().chain([&PING]).copied();
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(names))
            .into()
    }
}

impl ToSchema for EventType {}

/// A company id or "*" (OpenAPI only: the rule is `CompanyId::parse`'s).
pub struct CompanyOrAll;

impl PartialSchema for CompanyOrAll {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(format!(
                r"^(\*|{})$",
                crate::http::openapi::COMPANY_ID_BODY
            )))
            .into()
    }
}

impl ToSchema for CompanyOrAll {}

/// The subscription a valid body asks for.
struct Wanted {
    url: String,
    events: Vec<String>,
    companies: Vec<String>,
    description: Option<String>,
}

fn strings(field: Field<Vec<String>>, name: &str, problems: &mut Problems) -> Option<Vec<String>> {
    match field {
        Field::Absent | Field::Null => None,
        Field::Given(items) if !items.is_empty() => Some(items),
        Field::Given(_) | Field::Wrong => {
            problems.add(name, "must be a non-empty array of strings");
            None
        }
    }
}

impl WebhookInput {
    fn validate(self, mut problems: Problems) -> Result<Wanted, ApiError> {
        let url = match self.url {
            Field::Given(u) => u.trim().to_string(),
            _ => {
                problems.add("url", "is required: the https URL that receives events");
                String::new()
            }
        };
        let events = strings(self.events, "events", &mut problems)
            .unwrap_or_else(|| ALL_EVENTS.iter().map(|e| e.to_string()).collect());
        for e in &events {
            if !ALL_EVENTS.contains(&e.as_str()) && e != PING {
                problems.add("events", format!("unknown event type '{e}'"));
            }
        }
        let companies = strings(self.companies, "companies", &mut problems);
        if companies.is_none() && !problems.has("companies") {
            problems.add("companies", "is required: company ids, or [\"*\"]");
        }
        for c in companies.iter().flatten() {
            if c != "*" && CompanyId::parse(c).is_err() {
                problems.add("companies", format!("'{c}' is not a company id"));
            }
        }
        let description = match self.description {
            Field::Absent | Field::Null => None,
            Field::Given(d) if d.chars().count() <= 256 => Some(d),
            Field::Given(_) | Field::Wrong => {
                problems.add("description", "must be a string of at most 256 characters");
                None
            }
        };
        problems.finish(Wanted {
            url,
            events,
            companies: companies.unwrap_or_default(),
            description,
        })
    }
}

fn view(w: Webhook, secret: Option<String>) -> WebhookView {
    WebhookView {
        id: w.id,
        url: w.url,
        events: w.events,
        companies: w.companies,
        description: w.description,
        enabled: w.enabled,
        created_at: rfc3339(w.created_at),
        secret,
    }
}

fn covers(caller: &Caller, companies: &[String]) -> bool {
    companies.iter().all(|c| {
        if c == "*" {
            caller.covers_all()
        } else {
            caller.may_access(c)
        }
    })
}

fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "webhook_not_found",
        "There is no such web-hook subscription.",
    )
}

/// The answer of a ping: the event that is on its way.
#[derive(Serialize, ToSchema)]
pub struct PingQueued {
    event_id: String,
}

/// Subscriptions one caller (`sub`) may hold: an ERP needs a handful; without a bound one token
/// could fill the table and the delivery worker's every pass.
pub const MAX_WEBHOOKS_PER_CALLER: i64 = 50;

/// A subscription the caller may manage (the scope, and a token covering all its companies), or 404.
async fn visible(state: &AppState, caller: &Caller, id: String) -> Result<Webhook, ApiError> {
    caller.require(Scope::WebhooksManage)?;
    let found = state
        .db
        .run(move |conn| schema::webhooks::get(conn, &id))
        .await?;
    found
        .filter(|w| covers(caller, &w.companies))
        .ok_or_else(not_found)
}

#[utoipa::path(post, path = "/api/v1/webhooks", tag = "webhooks", security(("bearer" = [])), request_body = WebhookInput,
    responses((status = 201, body = WebhookView), (status = 409, description = "too_many_webhooks"), (status = 422, description = "validation_failed or webhook_target_refused")))]
pub async fn create(
    state: web::Data<AppState>,
    caller: Caller,
    body: JsonBody,
) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::WebhooksManage)?;
    let Wanted {
        url,
        events,
        companies,
        description,
    } = {
        let (input, problems) = input::object::<WebhookInput>(body.0)?;
        input.validate(problems)?
    };
    if let Err(problems) = check_url_problems(&url, state.config.webhook_policy()) {
        let errors: Vec<Value> = problems
            .iter()
            .map(|p| json!({"field": "url", "message": p}))
            .collect();
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "webhook_target_refused",
            format!(
                "The web-hook URL is refused: it {}.",
                problems.join("; it ")
            ),
        )
        .with("errors", Value::Array(errors)));
    }
    if !covers(&caller, &companies) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "company_forbidden",
            "This token does not cover every company of the subscription.",
        ));
    }
    let creator = caller.sub.clone();
    let made = state
        .db
        .run(move |conn| schema::webhooks::count_by_creator(conn, &creator))
        .await?;
    if made >= MAX_WEBHOOKS_PER_CALLER {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "too_many_webhooks",
            format!("'{}' already has {made} web-hook subscriptions, the most one caller may have; delete one it no longer needs.", caller.sub),
        ));
    }
    let secret = new_secret();
    let (keys, sealed) = (state.keys.clone(), secret.clone());
    let new = NewWebhook {
        url,
        events,
        companies,
        description,
        created_by: caller.sub.clone(),
    };
    let created = state
        .db
        .run(move |conn| schema::webhooks::create(conn, &keys, new, &sealed))
        .await?;
    tracing::info!(webhook = %created.id, "web-hook subscribed");
    Ok(HttpResponse::Created()
        .insert_header(("Cache-Control", "no-store"))
        .json(view(created, Some(secret.expose_secret().to_string()))))
}

#[utoipa::path(get, path = "/api/v1/webhooks", tag = "webhooks", security(("bearer" = [])), responses((status = 200, body = WebhookList)))]
pub async fn list(state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::WebhooksManage)?;
    let all = state.db.run(schema::webhooks::list).await?;
    let webhooks = all
        .into_iter()
        .filter(|w| covers(&caller, &w.companies))
        .map(|w| view(w, None))
        .collect();
    Ok(HttpResponse::Ok().json(WebhookList { webhooks }))
}

#[utoipa::path(get, path = "/api/v1/webhooks/{id}", tag = "webhooks", security(("bearer" = [])), params(("id" = String, Path)),
    responses((status = 200, body = WebhookView), (status = 404, description = "webhook_not_found")))]
pub async fn read(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(view(
        visible(&state, &caller, path.into_inner()).await?,
        None,
    )))
}

#[utoipa::path(delete, path = "/api/v1/webhooks/{id}", tag = "webhooks", security(("bearer" = [])), params(("id" = String, Path)),
    responses((status = 204, description = "Removed, with its pending deliveries"), (status = 404, description = "webhook_not_found")))]
pub async fn delete(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let w = visible(&state, &caller, path.into_inner()).await?;
    let actor = caller.sub.clone();
    state
        .db
        .run(move |conn| schema::webhooks::delete(conn, &w, &actor))
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

#[utoipa::path(post, path = "/api/v1/webhooks/{id}/rotate-secret", tag = "webhooks", security(("bearer" = [])), params(("id" = String, Path)),
    responses((status = 200, body = WebhookView), (status = 404, description = "webhook_not_found")))]
pub async fn rotate_secret(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let w = visible(&state, &caller, path.into_inner()).await?;
    let secret = new_secret();
    let (keys, sealed, hook) = (state.keys.clone(), secret.clone(), w.clone());
    let actor = caller.sub.clone();
    state
        .db
        .run(move |conn| schema::webhooks::rotate_secret(conn, &keys, &hook, &sealed, &actor))
        .await?;
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(view(w, Some(secret.expose_secret().to_string()))))
}

#[utoipa::path(post, path = "/api/v1/webhooks/{id}/ping", tag = "webhooks", security(("bearer" = [])), params(("id" = String, Path)),
    responses((status = 202, description = "A webhook.ping event is on its way", body = PingQueued), (status = 404, description = "webhook_not_found")))]
pub async fn ping(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let w = visible(&state, &caller, path.into_inner()).await?;
    let actor = caller.sub.clone();
    let event_id = state
        .db
        .run(move |conn| schema::webhooks::ping(conn, &w, &actor))
        .await?;
    Ok(HttpResponse::Accepted().json(PingQueued { event_id }))
}

#[utoipa::path(get, path = "/api/v1/webhooks/{id}/deliveries", tag = "webhooks", security(("bearer" = [])),
    params(("id" = String, Path), ("limit" = Option<i64>, Query, minimum = 1, description = "default 20, max 200")),
    responses((status = 200, body = DeliveryList), (status = 404, description = "webhook_not_found")))]
pub async fn deliveries(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let w = visible(&state, &caller, path.into_inner()).await?;
    let limit = query.limit(20, 200)?;
    let rows = state
        .db
        .run(move |conn| schema::webhooks::attempts(conn, &w.id, limit))
        .await?;
    let deliveries = rows
        .into_iter()
        .map(|a| DeliveryAttempt {
            id: a.id,
            event_id: a.event_id,
            event_type: a.event_type,
            attempt: a.attempt,
            at: rfc3339(chrono::DateTime::from_naive_utc_and_offset(
                a.at,
                chrono::Utc,
            )),
            status_code: a.status_code,
            duration_ms: a.duration_ms,
            outcome: a.outcome,
            error: a.error,
        })
        .collect();
    Ok(HttpResponse::Ok().json(DeliveryList { deliveries }))
}

/// One entry of the web-hook audit trail: who did what to which subscription, and when.
#[derive(Serialize, ToSchema)]
pub struct WebhookAuditEntry {
    id: String,
    webhook_id: String,
    /// webhook_created, webhook_deleted, webhook_secret_rotated or webhook_pinged
    action: String,
    actor: String,
    at: String,
    companies: Vec<String>,
}

#[derive(Serialize, ToSchema)]
pub struct WebhookAudit {
    entries: Vec<WebhookAuditEntry>,
}

/// How far back the audit list looks for entries the caller may see.
const AUDIT_SCAN: i64 = 2000;

#[utoipa::path(get, path = "/api/v1/webhook-audit", tag = "webhooks", security(("bearer" = [])),
    params(("limit" = Option<i64>, Query, minimum = 1, description = "default 50, max 200")),
    responses((status = 200, body = WebhookAudit)))]
pub async fn audit(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::WebhooksManage)?;
    let limit = query.limit(50, 200)?;
    let rows = state
        .db
        .run(|conn| schema::webhooks::audit(conn, AUDIT_SCAN))
        .await?;
    // Visible like the subscriptions themselves: to tokens covering all their companies.
    let entries = rows
        .into_iter()
        .filter(|e| covers(&caller, &e.companies))
        .take(usize::try_from(limit).unwrap_or(50))
        .map(|e| WebhookAuditEntry {
            id: e.id,
            webhook_id: e.webhook_id,
            action: e.action,
            actor: e.actor,
            at: rfc3339(e.at),
            companies: e.companies,
        })
        .collect();
    Ok(HttpResponse::Ok().json(WebhookAudit { entries }))
}

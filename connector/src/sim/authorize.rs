//! The simulator's authorization-code flow: `GET /oauth2/authorize` shows a Grant Access page
//! (the account's profiles to tick, Grant / Deny), `POST /oauth2/authorize` is that page's form
//! and redirects to the `redirect_uri` with a code (or `error=access_denied`), and the token
//! endpoint exchanges a code once, within 300 s, for the `redirect_uri` it was issued for.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use actix_web::{web, HttpResponse};
use serde_json::json;

use super::{issue, oauth_error, uuid_like, SimState};

/// How long a code may be exchanged (ChannelAdvisor: 5 minutes).
const CODE_LIFETIME: Duration = Duration::from_secs(300);

pub(super) struct Code {
    app: String,
    redirect_uri: String,
    profiles: Vec<i64>,
    expires: Instant,
}

fn escape(s: &str) -> String {
    html_escape::encode_double_quoted_attribute(s).into_owned()
}

fn page(status: u16, title: &str, body: &str) -> HttpResponse {
    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap_or_default())
        .content_type("text/html; charset=utf-8")
        .body(format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title></head><body><h1>{title}</h1>{body}</body></html>"
        ))
}

fn known_app(state: &SimState, app: &str) -> bool {
    let config = state.config.lock().unwrap();
    config.apps.contains_key(app) || config.any_app
}

/// A redirect URI ChannelAdvisor would take: one registered on the application, exactly.
fn registered_redirect(state: &SimState, app: &str, uri: &str) -> bool {
    let config = state.config.lock().unwrap();
    config
        .redirect_uris
        .get(app)
        .is_some_and(|uris| uris.iter().any(|u| u == uri))
}

/// What the authorize request gets wrong, if anything: `response_type=code`, `access_type=offline`
/// (no refresh token without it) and scopes ChannelAdvisor knows.
fn request_problem(get: &dyn Fn(&str) -> String) -> Option<&'static str> {
    if get("response_type") != "code" {
        return Some("response_type must be code.");
    }
    if get("access_type") != "offline" {
        return Some("access_type must be offline.");
    }
    let scope = get("scope");
    if scope.split_whitespace().next().is_none()
        || scope
            .split_whitespace()
            .any(|s| !super::KNOWN_SCOPES.contains(&s))
    {
        return Some("scope must name orders and/or inventory.");
    }
    None
}

/// The Grant Access page.
pub(super) async fn page_get(
    query: web::Query<HashMap<String, String>>,
    state: web::Data<SimState>,
) -> HttpResponse {
    let get = |k: &str| query.get(k).cloned().unwrap_or_default();
    let (app, redirect_uri) = (get("client_id"), get("redirect_uri"));
    if !known_app(&state, &app) {
        return page(
            400,
            "Unknown application",
            "<p>No application has this client_id.</p>",
        );
    }
    if let Some(problem) = request_problem(&get) {
        return page(400, "Invalid request", &format!("<p>{problem}</p>"));
    }
    if !registered_redirect(&state, &app, &redirect_uri) {
        return page(
            400,
            "Invalid request",
            "<p>redirect_uri is not registered for this application.</p>",
        );
    }
    let profiles = state.config.lock().unwrap().grant_profiles.clone();
    let boxes: String = profiles
        .iter()
        .map(|p| format!("<label><input type=\"checkbox\" name=\"profile\" value=\"{p}\" checked> Account {p} (profile {p})</label><br>"))
        .collect();
    let hidden: String = ["client_id", "redirect_uri", "state", "scope"]
        .iter()
        .map(|k| {
            format!(
                "<input type=\"hidden\" name=\"{k}\" value=\"{}\">",
                escape(&get(k))
            )
        })
        .collect();
    page(
        200,
        "Grant Access",
        &format!(
            "<p>Application <b>{}</b> asks for access ({}) to:</p><form method=\"post\" action=\"/oauth2/authorize\">{hidden}{boxes}<button name=\"decision\" value=\"grant\">Grant Access</button> <button name=\"decision\" value=\"deny\">Deny</button></form>",
            escape(&app),
            escape(&get("scope"))
        ),
    )
}

/// The Grant Access form: redirects back with a code, or with `error=access_denied`.
pub(super) async fn decide(form: web::Bytes, state: web::Data<SimState>) -> HttpResponse {
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(&form).into_owned().collect();
    let get = |k: &str| {
        pairs
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let (app, redirect_uri) = (get("client_id"), get("redirect_uri"));
    if !known_app(&state, &app) || !registered_redirect(&state, &app, &redirect_uri) {
        return page(
            400,
            "Invalid request",
            "<p>Unknown application or redirect_uri.</p>",
        );
    }
    let Ok(mut back) = url::Url::parse(&redirect_uri) else {
        return page(400, "Invalid request", "<p>redirect_uri is not a URL.</p>");
    };
    {
        let mut query = back.query_pairs_mut();
        if get("decision") == "grant" {
            let n = state.counter.fetch_add(1, Ordering::SeqCst);
            let code = format!("sim-code-{n:08}-{}", uuid_like(n));
            let profiles = pairs
                .iter()
                .filter(|(k, _)| k == "profile")
                .filter_map(|(_, v)| v.parse().ok())
                .collect();
            state.codes.lock().unwrap().insert(
                code.clone(),
                Code {
                    app,
                    redirect_uri: redirect_uri.clone(),
                    profiles,
                    expires: Instant::now() + CODE_LIFETIME,
                },
            );
            query.append_pair("code", &code);
        } else {
            query.append_pair("error", "access_denied");
        }
        if !state.config.lock().unwrap().omit_state {
            query.append_pair("state", &get("state"));
        }
    }
    HttpResponse::Found()
        .insert_header(("Location", back.to_string()))
        .finish()
}

/// `grant_type=authorization_code`: a code works once, within its lifetime, for the application
/// and `redirect_uri` it was issued to; it yields an access token and a new refresh token.
pub(super) fn exchange(
    state: &SimState,
    app: String,
    fields: &HashMap<String, String>,
) -> HttpResponse {
    let code = fields.get("code").cloned().unwrap_or_default();
    // Removed on the first exchange, whatever its outcome: a code is never good twice.
    let Some(issued) = state.codes.lock().unwrap().remove(&code) else {
        return oauth_error(400, "invalid_grant");
    };
    let redirect_uri = fields.get("redirect_uri").map(String::as_str);
    if issued.expires <= Instant::now()
        || issued.app != app
        || redirect_uri != Some(&issued.redirect_uri)
    {
        return oauth_error(400, "invalid_grant");
    }
    let n = state.counter.fetch_add(1, Ordering::SeqCst);
    let refresh = format!("sim-granted-{n:08}-{}", uuid_like(n));
    state
        .config
        .lock()
        .unwrap()
        .refresh_tokens
        .insert(refresh.clone(), issued.profiles.clone());
    state
        .bound
        .lock()
        .unwrap()
        .insert(refresh.clone(), app.clone());
    let integration = format!("{app} {refresh}");
    let mut body = issue(state, n, app, &integration, issued.profiles, None);
    body["refresh_token"] = json!(refresh);
    HttpResponse::Ok().json(body)
}

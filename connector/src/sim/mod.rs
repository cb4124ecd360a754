//! A ChannelAdvisor simulator: the token endpoint and `/v1/Profiles`, with configurable
//! applications, refresh tokens, profiles and latency, every fault of the taxonomy on demand, and
//! counters of the calls it received. Faults are chosen by the refresh token's value:
//!
//! | refresh token | token endpoint answers |
//! |---|---|
//! | a configured one | 200 with an access token (unknown app/secret → 401 `invalid_client`) |
//! | any other | 400 `invalid_grant` |
//! | `sim-fault-hang` | never |
//! | `sim-fault-reset` | starts a 200 and breaks the connection |
//! | `sim-fault-html500` / `sim-fault-html200` | an HTML page with 500 / 200 |
//! | `sim-fault-no-token` | 200 JSON without `access_token` |
//! | `sim-fault-429` / `sim-fault-429-retry-N` | 429 without / with `Retry-After: N` |
//! | `sim-fault-400-bare` / `sim-fault-401-bare` | 400 / 401 without an OAuth `error` |
//! | `sim-fault-400-invalid-client` / `sim-fault-unauthorized-client` | 400 `invalid_client` / 400 `unauthorized_client` |
//! | `sim-fault-302` / `sim-fault-404` | a redirect elsewhere / 404 |
//! | `sim-fault-rotate` | 200 with a new refresh token, which replaces it: used again, it is refused and revokes the grant (reuse detection, below) |
//! | `sim-probe-401`, `-403`, `-500`, `-html`, `-429`, `-hang` | 200; the probe then answers so |
//!
//! `sim-fault-rotate` always rotates; with `rotate_refresh_tokens` (`ca-sim --rotate-refresh-tokens`)
//! every refresh token of the client does, as RFC 9700
//! §4.14 describes: every refresh-token grant consumes the token it was given and answers a new
//! one, and a consumed token used again revokes the whole grant — every token descended from the
//! same first one — answering `invalid_grant` (counted in `reuse_detected`, logged as "refresh
//! token already used").
//!
//! The `soap` grant accepts the configured SOAP accounts (`SoapAccount::demo()` by default); a
//! Developer Key named like a fault above triggers that fault.
//!
//! The authorization-code flow (`/oauth2/authorize`: a Grant Access page, one-use codes bound to
//! their `redirect_uri` for 300 s) is in `authorize`.
//!
//! As strict as ChannelAdvisor where a client could get it wrong:
//! - the token endpoint takes only `application/x-www-form-urlencoded` bodies (else 400
//!   `invalid_request`);
//! - a refresh token belongs to the application it was granted to (the first one that used it, for
//!   a configured token): another application's grant with it is 400 `invalid_grant`;
//! - redirect URIs are registered per application (`redirect_uris`; `ca-sim --redirect-uri`), and
//!   the Grant Access page refuses any other, as it refuses a `response_type` other than `code`,
//!   an `access_type` other than `offline` and a scope outside `orders inventory`;
//! - at most `integration_concurrency` (5) calls of one integration — one application on one
//!   account, here one refresh token's grant — are in flight; past it the answer is 429 with
//!   `Retry-After: 1` (counted in `rate_limited`).
//!
//! Access tokens work for `token_lifetime` (`expires_in`, default 3600 s) and until
//! `POST /_sim/revoke`; then `/v1/Profiles` answers 401. `GET /_sim/stats` gives the counters;
//! `POST /_sim/reset` zeroes them.

#![allow(clippy::unwrap_used)] // a stand-in for tests and demos: a poisoned lock there is a failed run

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::json;

mod authorize;

#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Application ID → Shared Secret.
    pub apps: HashMap<String, String>,
    /// Refresh token → the profiles it grants.
    pub refresh_tokens: HashMap<String, Vec<i64>>,
    pub latency: Duration,
    /// Also accept any application whose Shared Secret is `<Application ID>-secret`, and any
    /// refresh token `bench-refresh-…` (granting profile 12345678): benchmarks with many
    /// applications and accounts.
    pub any_app: bool,
    /// How long an issued access token works (`expires_in`); afterwards the API answers 401, as
    /// ChannelAdvisor does.
    pub token_lifetime: Duration,
    /// The profiles the Grant Access page offers (the account's profiles).
    pub grant_profiles: Vec<i64>,
    /// Leave `state` out of the authorization redirect (ChannelAdvisor does not document it).
    pub omit_state: bool,
    /// SOAP Credentials the `soap` grant accepts, with the profiles each grants.
    pub soap_accounts: Vec<SoapAccount>,
    /// Rotate refresh tokens with reuse detection (see the module's notes).
    pub rotate_refresh_tokens: bool,
    /// Application ID → the Redirect URIs registered on it in the Developer Console.
    pub redirect_uris: HashMap<String, Vec<String>>,
    /// Calls of one integration in flight at most; more are answered 429 (ChannelAdvisor: 5).
    pub integration_concurrency: i64,
}

/// The scopes ChannelAdvisor's authorize page knows.
const KNOWN_SCOPES: [&str; 2] = ["orders", "inventory"];
/// ChannelAdvisor's concurrent requests per integration.
pub const INTEGRATION_CONCURRENCY: i64 = 5;

/// The Redirect URIs `demo-app` has registered: the service's callback on its default address.
pub fn demo_redirect_uris() -> Vec<String> {
    vec![
        "http://127.0.0.1:8080/oauth/callback".to_string(),
        "http://localhost:8080/oauth/callback".to_string(),
    ]
}

/// One account's SOAP Credentials. A Developer Key named like a fault (`sim-fault-…`,
/// `sim-probe-…`) triggers that fault, as a refresh token of that name does.
#[derive(Clone, Debug)]
pub struct SoapAccount {
    pub developer_key: String,
    pub password: String,
    pub account_id: String,
    pub profiles: Vec<i64>,
}

impl SoapAccount {
    /// The demo account `ca-sim` accepts by default.
    pub fn demo() -> SoapAccount {
        SoapAccount {
            developer_key: "demo-developer-key-0001".into(),
            password: "demo-soap-password-0001".into(),
            account_id: "0a1b2c3d-4e5f-6789-abcd-ef0123456789".into(),
            profiles: vec![12345678],
        }
    }
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            apps: HashMap::from([(
                "demo-app".to_string(),
                "demo-shared-secret-0001".to_string(),
            )]),
            refresh_tokens: HashMap::from([(
                "demo-refresh-token-0001".to_string(),
                vec![12345678],
            )]),
            latency: Duration::ZERO,
            any_app: false,
            token_lifetime: Duration::from_secs(3600),
            grant_profiles: vec![12345678],
            omit_state: false,
            soap_accounts: vec![SoapAccount::demo()],
            rotate_refresh_tokens: false,
            redirect_uris: HashMap::from([("demo-app".to_string(), demo_redirect_uris())]),
            integration_concurrency: INTEGRATION_CONCURRENCY,
        }
    }
}

#[derive(Default)]
pub struct Stats {
    pub token_calls: AtomicU64,
    pub profile_calls: AtomicU64,
    in_flight: Mutex<HashMap<String, Arc<AtomicI64>>>,
    pub max_in_flight_per_app: AtomicI64,
    /// Calls in flight now, and at most, all applications together.
    in_flight_total: Arc<AtomicI64>,
    pub max_in_flight: AtomicI64,
    /// Consumed refresh tokens used again (each revoked its grant).
    pub reuse_detected: AtomicU64,
    /// Calls in flight per integration.
    integrations: Mutex<HashMap<String, Arc<AtomicI64>>>,
    /// Calls answered 429 because their integration had its limit in flight.
    pub rate_limited: AtomicU64,
}

/// Which grant each rotated refresh token belongs to, and the tokens already spent.
#[derive(Default)]
struct Rotation {
    /// Refresh token → its grant (the first token of its line).
    grant_of: HashMap<String, String>,
    /// Spent refresh tokens → their grant.
    spent: HashMap<String, String>,
}

impl Rotation {
    /// Spends `refresh` and returns its successor; `None` when it was spent before, which revokes
    /// every live token of its grant (`refresh_tokens` loses them).
    fn spend(&mut self, refresh: &str, n: u64, config: &mut SimConfig) -> Option<String> {
        if let Some(grant) = self.spent.get(refresh).cloned() {
            let revoked: Vec<String> = self
                .grant_of
                .iter()
                .filter(|(_, g)| **g == grant)
                .map(|(t, _)| t.clone())
                .collect();
            for token in revoked {
                config.refresh_tokens.remove(&token);
            }
            return None;
        }
        let grant = self
            .grant_of
            .get(refresh)
            .cloned()
            .unwrap_or_else(|| refresh.to_string());
        let profiles = config.refresh_tokens.remove(refresh).unwrap_or_default();
        let next = format!("sim-rotated-{n:08}");
        config.refresh_tokens.insert(next.clone(), profiles);
        self.grant_of.insert(next.clone(), grant.clone());
        self.spent.insert(refresh.to_string(), grant);
        Some(next)
    }
}

struct Issued {
    app: String,
    /// The integration the token belongs to (its application and grant).
    integration: String,
    profiles: Vec<i64>,
    probe_fault: Option<String>,
    expires: std::time::Instant,
}

struct SimState {
    config: Mutex<SimConfig>,
    stats: Arc<Stats>,
    issued: Mutex<HashMap<String, Issued>>,
    codes: Mutex<HashMap<String, authorize::Code>>,
    counter: AtomicU64,
    rotation: Mutex<Rotation>,
    /// Refresh token → the application it belongs to.
    bound: Mutex<HashMap<String, String>>,
}

/// One call of an integration in flight; `None` from `enter` when the integration already has
/// its limit in flight.
struct IntegrationCall(Arc<AtomicI64>);

impl IntegrationCall {
    fn enter(state: &SimState, integration: &str) -> Option<IntegrationCall> {
        let limit = state.config.lock().unwrap().integration_concurrency;
        let counter = state
            .stats
            .integrations
            .lock()
            .unwrap()
            .entry(integration.to_string())
            .or_default()
            .clone();
        if counter.fetch_add(1, Ordering::SeqCst) >= limit {
            counter.fetch_sub(1, Ordering::SeqCst);
            state.stats.rate_limited.fetch_add(1, Ordering::SeqCst);
            return None;
        }
        Some(IntegrationCall(counter))
    }
}

impl Drop for IntegrationCall {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// ChannelAdvisor's answer past an integration's concurrent requests.
fn too_many() -> HttpResponse {
    HttpResponse::TooManyRequests()
        .insert_header(("Retry-After", "1"))
        .json(json!({"error": "too_many_requests"}))
}

/// Counts an application's calls in flight, and all calls in flight, for as long as it lives.
struct InFlight(Arc<AtomicI64>, Arc<AtomicI64>);

impl InFlight {
    fn enter(stats: &Stats, app: &str) -> InFlight {
        let counter = stats
            .in_flight
            .lock()
            .unwrap()
            .entry(app.to_string())
            .or_default()
            .clone();
        let now = counter.fetch_add(1, Ordering::SeqCst) + 1;
        stats.max_in_flight_per_app.fetch_max(now, Ordering::SeqCst);
        let total = stats.in_flight_total.fetch_add(1, Ordering::SeqCst) + 1;
        stats.max_in_flight.fetch_max(total, Ordering::SeqCst);
        InFlight(counter, stats.in_flight_total.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
        self.1.fetch_sub(1, Ordering::SeqCst);
    }
}

pub struct Simulator {
    port: u16,
    handle: ServerHandle,
    stats: Arc<Stats>,
    state: web::Data<SimState>,
}

impl Simulator {
    /// Binds and starts serving on the current tokio runtime.
    pub fn start(config: SimConfig, listen: &str) -> std::io::Result<Simulator> {
        let stats = Arc::new(Stats::default());
        let state = web::Data::new(SimState {
            config: Mutex::new(config),
            stats: stats.clone(),
            issued: Mutex::default(),
            codes: Mutex::default(),
            counter: AtomicU64::new(0),
            rotation: Mutex::default(),
            bound: Mutex::default(),
        });
        let listener = std::net::TcpListener::bind(listen).map_err(|e| {
            let why = if e.kind() == std::io::ErrorKind::AddrInUse {
                "the address is already in use (another ca-sim, or another program, is serving there); stop it, or choose another address with --listen (for example --listen 127.0.0.1:9091)".to_string()
            } else {
                format!("{e}; choose another address with --listen")
            };
            std::io::Error::new(e.kind(), format!("cannot listen on {listen}: {why}"))
        })?;
        let port = listener.local_addr()?.port();
        let served = state.clone();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(served.clone())
                .route("/oauth2/token", web::post().to(token))
                .route("/oauth2/authorize", web::get().to(authorize::page_get))
                .route("/oauth2/authorize", web::post().to(authorize::decide))
                .route("/v1/Profiles", web::get().to(profiles))
                .route("/_sim/stats", web::get().to(stats_view))
                .route("/_sim/reset", web::post().to(reset))
                .route("/_sim/revoke", web::post().to(revoke))
        })
        .workers(2)
        .backlog(4096)
        .listen(listener)?
        .disable_signals()
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        Ok(Simulator {
            port,
            handle,
            stats,
            state,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    pub fn token_calls(&self) -> u64 {
        self.stats.token_calls.load(Ordering::SeqCst)
    }

    pub fn profile_calls(&self) -> u64 {
        self.stats.profile_calls.load(Ordering::SeqCst)
    }

    /// Registers a Redirect URI on an application, as the Developer Console does.
    pub fn register_redirect_uri(&self, app: &str, uri: &str) {
        self.state
            .config
            .lock()
            .unwrap()
            .redirect_uris
            .entry(app.to_string())
            .or_default()
            .push(uri.to_string());
    }

    pub async fn stop(self) {
        self.handle.stop(false).await;
    }
}

fn basic_credentials(req: &HttpRequest) -> Option<(String, String)> {
    let header = req.headers().get("authorization")?.to_str().ok()?;
    let decoded = STANDARD.decode(header.strip_prefix("Basic ")?).ok()?;
    let pair = String::from_utf8(decoded).ok()?;
    let (id, secret) = pair.split_once(':')?;
    let dec = |s: &str| {
        url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
    };
    Some((dec(id)?, dec(secret)?))
}

fn oauth_error(status: u16, error: &str) -> HttpResponse {
    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap())
        .json(json!({"error": error, "error_description": format!("simulated {error}")}))
}

fn html(status: u16) -> HttpResponse {
    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap())
        .content_type("text/html")
        .body("<html><body><h1>Service error</h1></body></html>")
}

async fn hang() -> HttpResponse {
    tokio::time::sleep(Duration::from_secs(3600)).await;
    HttpResponse::Ok().finish()
}

/// A 200 whose body breaks off: the connection is dropped mid-answer.
fn broken_answer() -> HttpResponse {
    let chunks = futures_util::stream::iter(vec![
        Ok::<_, std::io::Error>(web::Bytes::from_static(b"{\"access_tok")),
        Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "simulated reset",
        )),
    ]);
    HttpResponse::Ok()
        .content_type("application/json")
        .streaming(chunks)
}

async fn token(req: HttpRequest, state: web::Data<SimState>, form: web::Bytes) -> HttpResponse {
    state.stats.token_calls.fetch_add(1, Ordering::SeqCst);
    let form_body = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';').next().is_some_and(|m| {
                m.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            })
        });
    if !form_body {
        return oauth_error(400, "invalid_request");
    }
    let Some((app, secret)) = basic_credentials(&req) else {
        return oauth_error(401, "invalid_client");
    };
    let fields: HashMap<String, String> = url::form_urlencoded::parse(&form).into_owned().collect();
    // The integration: this application and the grant the call names.
    let grant_value = ["refresh_token", "developer_key", "code"]
        .iter()
        .find_map(|k| fields.get(*k))
        .cloned()
        .unwrap_or_default();
    let integration = format!("{app} {grant_value}");
    let Some(_integration_call) = IntegrationCall::enter(&state, &integration) else {
        return too_many();
    };
    let _in_flight = InFlight::enter(&state.stats, &app);
    let (latency, app_ok) = {
        let config = state.config.lock().unwrap();
        let known = config.apps.get(&app) == Some(&secret);
        (
            config.latency,
            known || (config.any_app && secret == format!("{app}-secret")),
        )
    };
    tokio::time::sleep(latency).await;
    let grant = fields.get("grant_type").map(String::as_str);
    if !matches!(grant, Some("refresh_token" | "authorization_code" | "soap")) {
        return oauth_error(400, "unsupported_grant_type");
    }
    if !app_ok {
        return oauth_error(401, "invalid_client");
    }
    if grant == Some("authorization_code") {
        return authorize::exchange(&state, app, &fields);
    }
    // A refresh token belongs to its application: the one it was granted to, or for a configured
    // token the first that used it. Fault selectors name a fault, not a grant.
    if grant == Some("refresh_token") {
        let refresh = fields.get("refresh_token").cloned().unwrap_or_default();
        if !refresh.starts_with("sim-fault-") && !refresh.starts_with("sim-probe-") {
            let mut bound = state.bound.lock().unwrap();
            match bound.get(&refresh) {
                Some(owner) if *owner != app => return oauth_error(400, "invalid_grant"),
                Some(_) => {}
                None => {
                    bound.insert(refresh, app.clone());
                }
            }
        }
    }
    let soap = grant == Some("soap");
    if soap && fields.get("client_id") != Some(&app) {
        return oauth_error(400, "invalid_request");
    }
    // The value faults are chosen by: the refresh token, or the SOAP Developer Key.
    let field = if soap {
        "developer_key"
    } else {
        "refresh_token"
    };
    let refresh = fields.get(field).cloned().unwrap_or_default();
    match refresh.as_str() {
        "sim-fault-hang" => return hang().await,
        "sim-fault-reset" => return broken_answer(),
        "sim-fault-html500" => return html(500),
        "sim-fault-html200" => return html(200),
        "sim-fault-no-token" => {
            return HttpResponse::Ok().json(json!({"token_type": "bearer", "expires_in": 3600}))
        }
        "sim-fault-429" => return HttpResponse::TooManyRequests().finish(),
        "sim-fault-400-bare" => return HttpResponse::BadRequest().body("Bad Request"),
        "sim-fault-401-bare" => return HttpResponse::Unauthorized().finish(),
        // RFC 6749 §5.2 lets a server answer invalid_client with 400 as well as 401.
        "sim-fault-400-invalid-client" => return oauth_error(400, "invalid_client"),
        "sim-fault-unauthorized-client" => return oauth_error(400, "unauthorized_client"),
        "sim-fault-302" => {
            return HttpResponse::Found()
                .insert_header(("Location", "https://sso.channeladvisor.example/login"))
                .finish()
        }
        "sim-fault-404" => return HttpResponse::NotFound().body("Not Found"),
        r if r.starts_with("sim-fault-429-retry-") => {
            return HttpResponse::TooManyRequests()
                .insert_header(("Retry-After", r.trim_start_matches("sim-fault-429-retry-")))
                .finish()
        }
        _ => {}
    }
    let n = state.counter.fetch_add(1, Ordering::SeqCst);
    let profiles = {
        let mut config = state.config.lock().unwrap();
        // `sim-fault-rotate` and every token rotated from it rotate with reuse detection whatever
        // the settings: a rotated-away token is refused, as a rotating server refuses it.
        let rotating = !soap
            && (config.rotate_refresh_tokens
                || refresh == "sim-fault-rotate"
                || state
                    .rotation
                    .lock()
                    .unwrap()
                    .grant_of
                    .contains_key(&refresh));
        if rotating {
            let spent_before = state.rotation.lock().unwrap().spent.contains_key(&refresh);
            if refresh == "sim-fault-rotate" && !spent_before {
                config
                    .refresh_tokens
                    .entry(refresh.clone())
                    .or_insert_with(|| vec![12345678]);
            }
            if spent_before || config.refresh_tokens.contains_key(&refresh) {
                let profiles = config.refresh_tokens.get(&refresh).cloned();
                let next = state
                    .rotation
                    .lock()
                    .unwrap()
                    .spend(&refresh, n, &mut config);
                let Some(next) = next else {
                    state.stats.reuse_detected.fetch_add(1, Ordering::SeqCst);
                    tracing::warn!("refresh token already used: the grant is revoked");
                    return oauth_error(400, "invalid_grant");
                };
                drop(config);
                state
                    .bound
                    .lock()
                    .unwrap()
                    .insert(next.clone(), app.clone());
                let profiles = profiles.unwrap_or_default();
                return rotated_answer(&state, n, app, &integration, profiles, Some(next));
            }
        }
        let known = if soap {
            soap_profiles(&config, &fields)
        } else {
            config.refresh_tokens.get(&refresh).cloned()
        };
        match known {
            Some(p) => p,
            None if refresh.starts_with("sim-probe-") => vec![12345678],
            None if config.any_app && refresh.starts_with("bench-refresh-") => vec![12345678],
            None => return oauth_error(400, "invalid_grant"),
        }
    };
    let probe_fault = refresh.strip_prefix("sim-probe-").map(str::to_string);
    HttpResponse::Ok().json(issue(&state, n, app, &integration, profiles, probe_fault))
}

/// A rotating client's answer: an access token and the refresh token that replaces the spent one.
fn rotated_answer(
    state: &SimState,
    n: u64,
    app: String,
    integration: &str,
    profiles: Vec<i64>,
    rotated: Option<String>,
) -> HttpResponse {
    let mut body = issue(state, n, app, integration, profiles, None);
    body["refresh_token"] = json!(rotated);
    HttpResponse::Ok().json(body)
}

/// The profiles of the SOAP account the grant's values name, if they are all right.
fn soap_profiles(config: &SimConfig, fields: &HashMap<String, String>) -> Option<Vec<i64>> {
    let get = |k: &str| fields.get(k).map(String::as_str).unwrap_or_default();
    config
        .soap_accounts
        .iter()
        .find(|a| {
            a.developer_key == get("developer_key")
                && a.password == get("password")
                && a.account_id == get("account_id")
        })
        .map(|a| a.profiles.clone())
}

/// Issues access token number `n` for the application and profiles: the token answer's body.
fn issue(
    state: &SimState,
    n: u64,
    app: String,
    integration: &str,
    profiles: Vec<i64>,
    probe_fault: Option<String>,
) -> serde_json::Value {
    let access = format!("sim-access-{n:08}-{}", uuid_like(n));
    let lifetime = state.config.lock().unwrap().token_lifetime;
    state.issued.lock().unwrap().insert(
        access.clone(),
        Issued {
            app,
            integration: integration.to_string(),
            profiles,
            probe_fault,
            expires: std::time::Instant::now() + lifetime,
        },
    );
    json!({"access_token": access, "token_type": "bearer", "expires_in": lifetime.as_secs()})
}

fn uuid_like(n: u64) -> String {
    format!("{:016x}", n.wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

async fn profiles(req: HttpRequest, state: web::Data<SimState>) -> HttpResponse {
    state.stats.profile_calls.fetch_add(1, Ordering::SeqCst);
    let bearer = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("")
        .to_string();
    let found = state
        .issued
        .lock()
        .unwrap()
        .get(&bearer)
        .filter(|i| i.expires > std::time::Instant::now())
        .map(|i| {
            (
                i.app.clone(),
                i.integration.clone(),
                i.profiles.clone(),
                i.probe_fault.clone(),
            )
        });
    let Some((app, integration, ids, fault)) = found else {
        return HttpResponse::Unauthorized().json(json!({"error": "invalid_token"}));
    };
    let Some(_integration_call) = IntegrationCall::enter(&state, &integration) else {
        return too_many();
    };
    let _in_flight = InFlight::enter(&state.stats, &app);
    let latency = state.config.lock().unwrap().latency;
    tokio::time::sleep(latency).await;
    match fault.as_deref() {
        Some("401") => return HttpResponse::Unauthorized().finish(),
        Some("403") => return HttpResponse::Forbidden().finish(),
        Some("500") => return html(500),
        Some("html") => return html(200),
        Some("429") => return HttpResponse::TooManyRequests().finish(),
        Some("hang") => return hang().await,
        _ => {}
    }
    let value: Vec<_> = ids
        .iter()
        .map(|id| json!({"ID": id, "AccountName": format!("Account {id}"), "CompanyName": format!("Company {id}")}))
        .collect();
    HttpResponse::Ok().json(json!({"value": value}))
}

async fn stats_view(state: web::Data<SimState>) -> HttpResponse {
    let s = &state.stats;
    HttpResponse::Ok().json(json!({
        "token_calls": s.token_calls.load(Ordering::SeqCst),
        "profile_calls": s.profile_calls.load(Ordering::SeqCst),
        "max_in_flight_per_app": s.max_in_flight_per_app.load(Ordering::SeqCst),
        "max_in_flight": s.max_in_flight.load(Ordering::SeqCst),
        "reuse_detected": s.reuse_detected.load(Ordering::SeqCst),
        "rate_limited": s.rate_limited.load(Ordering::SeqCst),
    }))
}

/// Revokes every access token issued so far: the API answers 401 to each from now on.
async fn revoke(state: web::Data<SimState>) -> HttpResponse {
    state.issued.lock().unwrap().clear();
    HttpResponse::NoContent().finish()
}

async fn reset(state: web::Data<SimState>) -> HttpResponse {
    state.stats.token_calls.store(0, Ordering::SeqCst);
    state.stats.profile_calls.store(0, Ordering::SeqCst);
    state.stats.max_in_flight_per_app.store(0, Ordering::SeqCst);
    state.stats.max_in_flight.store(0, Ordering::SeqCst);
    HttpResponse::NoContent().finish()
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_address_in_use_is_named_with_the_setting_that_moves_it() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = taken.local_addr().unwrap().to_string();
        let err = super::Simulator::start(super::SimConfig::default(), &address)
            .err()
            .expect("the port is taken");
        let message = err.to_string();
        assert!(
            message.contains(&address) && message.contains("already in use"),
            "{message}"
        );
        assert!(message.contains("--listen"), "{message}");
    }
}

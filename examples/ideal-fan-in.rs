//! The floor under the refresh fan-in: an actix-web service (same version and worker count as
//! ca-connector) that answers `POST /api/v1/companies/{company}/access-token` the ideal way — the
//! first caller of a company starts one refresh, every caller of that company awaits the same
//! one — with no database, no authentication, no middleware. Whatever `token-fan-in` measures
//! against it is what the burst itself costs on this machine.
//! The refresh is a real refresh-token grant through ca-connector's ChannelAdvisor client to a
//! `ca-sim --any-app` at UPSTREAM_URL (companies seeded by `seed-companies … 100`), timed into
//! the same `token_refresh_seconds` histogram at `/metrics`; or, given a number instead, an
//! in-process wait of that many milliseconds (the floor without ChannelAdvisor's HTTP).
//! Upstream calls are bounded as the service bounds them by default: 64 in flight in all.
//! Usage: ideal-fan-in ADDRESS (UPSTREAM_URL | LATENCY_MS) [APPS]   (APPS: as given to
//! `seed-companies`, default 100)

#![allow(clippy::unwrap_used, clippy::expect_used)] // test and measuring code: a panic is a failed run

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{web, App, HttpResponse, HttpServer};
use ca_connector::service::metrics::REFRESH_BUCKETS;
use connector::{ApplicationId, ChannelAdvisorClient, RefreshToken, SharedSecret};
use futures_util::future::{BoxFuture, FutureExt, Shared};
use prometheus::{Encoder, Histogram, HistogramOpts, TextEncoder};
use secrecy::{ExposeSecret, SecretString};

type Refresh = Shared<BoxFuture<'static, String>>;

#[derive(Clone)]
enum Upstream {
    Wait(Duration),
    Simulator(ChannelAdvisorClient, u64),
}

#[derive(Clone)]
struct State {
    refreshes: Arc<Mutex<HashMap<String, Refresh>>>,
    upstream: Upstream,
    refresh_seconds: Histogram,
}

impl Upstream {
    async fn token(self, company: String) -> String {
        let (client, apps) = match self {
            Upstream::Wait(latency) => {
                tokio::time::sleep(latency).await;
                return format!("token-of-{company}");
            }
            Upstream::Simulator(client, apps) => (client, apps),
        };
        // `seed-companies … APPS` gives company cN the application `bench-app-{N % APPS}` and the
        // refresh token `bench-refresh-{N}`.
        let n: u64 = company.trim_start_matches('c').parse().unwrap_or(0);
        let app = format!("bench-app-{}", n % apps.max(1));
        let grant = client
            .refresh_grant(
                &ApplicationId::parse(&app).ok().flatten().expect("app id"),
                &SharedSecret::from_secret(SecretString::from(format!("{app}-secret"))),
                &RefreshToken::from_secret(SecretString::from(format!("bench-refresh-{n:06}"))),
            )
            .await;
        match grant {
            Ok(grant) => grant.access_token.expose_secret().to_string(),
            Err(e) => format!("refresh failed: {}", e.code.as_str()),
        }
    }
}

async fn access_token(state: web::Data<State>, company: web::Path<String>) -> HttpResponse {
    let company = company.into_inner();
    let refresh = state
        .refreshes
        .lock()
        .unwrap()
        .entry(company.clone())
        .or_insert_with(|| {
            let (upstream, timer) = (state.upstream.clone(), state.refresh_seconds.clone());
            async move {
                let _timer = timer.start_timer();
                upstream.token(company).await
            }
            .boxed()
            .shared()
        })
        .clone();
    let token = refresh.await;
    HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(
            serde_json::json!({"access_token": token, "token_type": "bearer", "expires_in": 3600}),
        )
}

async fn metrics(state: web::Data<State>) -> HttpResponse {
    let mut text = Vec::new();
    let families = prometheus::core::Collector::collect(&state.refresh_seconds);
    TextEncoder::new().encode(&families, &mut text).ok();
    HttpResponse::Ok().body(text)
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let address = args.next().unwrap_or_else(|| "127.0.0.1:19093".into());
    let upstream = args.next();
    let apps: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(100);
    let upstream = match upstream {
        Some(url) if url.starts_with("http") => Upstream::Simulator(
            ChannelAdvisorClient::new(
                url.parse().expect("UPSTREAM_URL"),
                Duration::from_secs(10),
                64,
            )
            .expect("ChannelAdvisor client"),
            apps,
        ),
        latency => Upstream::Wait(Duration::from_millis(
            latency.and_then(|a| a.parse().ok()).unwrap_or(100),
        )),
    };
    let refresh_seconds = Histogram::with_opts(
        HistogramOpts::new(
            "token_refresh_seconds",
            "Latency of one upstream token refresh",
        )
        .namespace("ca_connector")
        .buckets(REFRESH_BUCKETS.to_vec()),
    )
    .expect("histogram");
    let state = State {
        refreshes: Arc::default(),
        upstream,
        refresh_seconds,
    };
    HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(state.clone()))
            .route("/healthz", web::get().to(HttpResponse::Ok))
            .route("/metrics", web::get().to(metrics))
            .route(
                "/api/v1/companies/{company}/access-token",
                web::post().to(access_token),
            )
    })
    .bind(address)?
    .run()
    .await
}

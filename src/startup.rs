//! Builds the application: database, migrations, key check, shared state, and the HTTP server
//! bound to its port (port 0 in tests, so many apps run side by side).

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpServer};
use anyhow::Context;
use schema::{Database, KeyRing};

use crate::connection_test::TestRunner;
use crate::http::auth::Authenticator;
use crate::http::body::BODY_LIMIT;
use crate::http::metrics_middleware::record_http_metrics;
use crate::http::problem::{problem_for_every_error, ApiError};
use crate::http::request_context::request_context;
use crate::http::routes;
use crate::http::state::AppState;
use crate::service::metrics::Metrics;
use crate::service::settings::{Config, Store};
use crate::tokens::read_cache::ReadCache;
use crate::tokens::TokenBroker;
use connector::ChannelAdvisorClient;

pub struct Application {
    port: u16,
    address: SocketAddr,
    server: Server,
    events: crate::service::live_events::EventHub,
}

/// Pooled connections per instance, on either backend. Every statement is short and callers wait
/// for a connection asynchronously, so more connections buy no throughput, only memory (each a
/// libpq connection with TLS buffers, all kept open; `docs/performance.md`).
const POOL_SIZE: u32 = 8;

/// Opens the database, applies pending migrations and refuses a database that holds secrets
/// sealed with a key id that is not configured, or a key that is not the one an id was used with.
pub async fn open_database(store: &Store, keys: &KeyRing) -> anyhow::Result<Database> {
    let db = Database::connect(&store.database_url, POOL_SIZE)?;
    let url = store.database_url.clone();
    tokio::task::spawn_blocking(move || schema::pool::probe(&url))
        .await?
        .map_err(|e| explain_damaged_sqlite(store, e.into()))?;
    let keys = keys.clone();
    let check = db.clone();
    let opened = tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let applied = check.migrate().context("database migrations")?;
        for name in applied {
            tracing::info!(migration = %name, "migration applied");
        }
        let mut conn = check.get()?;
        schema::keys::check_key_ids(&mut conn, &keys)?;
        schema::keys::check_key_values(&mut conn, &keys)?;
        Ok(())
    })
    .await?;
    opened.map_err(|e| explain_damaged_sqlite(store, e))?;
    Ok(db)
}

/// SQLite reports a damaged file as a bare "file is not a database" on the first statement; the
/// person reading it needs the file's path and what to do about it.
fn explain_damaged_sqlite(store: &Store, error: anyhow::Error) -> anyhow::Error {
    let text = format!("{error:#}");
    let damaged = ["file is not a database", "database disk image is malformed"]
        .iter()
        .any(|m| text.contains(m));
    match store.sqlite_path() {
        Some(path) if damaged => anyhow::anyhow!(
            "the SQLite database {} is damaged ({}): stop every ca-connector using it, then restore it from a backup, or move it aside to start with an empty database (the keys in {} stay valid)",
            path.display(),
            if text.contains("malformed") { "database disk image is malformed" } else { "file is not a database" },
            store.data_dir.display()
        ),
        _ => error,
    }
}

/// Binds the listen address; an address in use names itself and the setting that moves it.
fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AddrInUse {
            anyhow::anyhow!(
                "cannot listen on {addr}: the address is already in use (another ca-connector, or another program, is serving there); stop it, or choose another address with --listen or CA_CONNECTOR_LISTEN (for example --listen 127.0.0.1:8081)"
            )
        } else {
            anyhow::anyhow!("cannot listen on {addr}: {e}; choose another address with --listen or CA_CONNECTOR_LISTEN")
        }
    })
}

impl Application {
    pub async fn build(config: Config) -> anyhow::Result<Application> {
        let db = open_database(&config.store(), &config.keys).await?;
        let auth = Authenticator::new(&config.jwt).map_err(anyhow::Error::msg)?;
        let listener = bind(config.listen)?;
        let listener_address = listener.local_addr()?;
        let port = listener_address.port();
        let keys = Arc::new(config.keys.clone());
        let events = crate::service::live_events::EventHub::start(db.clone()).await?;
        let state_events = events.clone();
        let metrics = Arc::new(Metrics::new()?);
        let upstream = ChannelAdvisorClient::new(
            config.channeladvisor_url.clone(),
            config.upstream_timeout,
            config.upstream_concurrency,
        )
        .map_err(anyhow::Error::msg)?
        .with_scope(&config.connect.scope);
        let renewal = config.refresh_ahead.map(|r| crate::tokens::Renewal {
            window: chrono::Duration::from_std(r.window).unwrap_or_default(),
            margin: chrono::Duration::from_std(r.margin).unwrap_or_default(),
        });
        let tokens = TokenBroker::new(
            db.clone(),
            keys.clone(),
            upstream.clone(),
            metrics.clone(),
            renewal,
        );
        let tests = Arc::new(TestRunner::new(
            db.clone(),
            keys.clone(),
            upstream.clone(),
            tokens.clone(),
        ));
        let connect = crate::connect::flow::ConnectFlow {
            db: db.clone(),
            keys: keys.clone(),
            upstream: upstream.clone(),
            settings: config.connect.clone(),
            tests: tests.clone(),
        };
        let state = web::Data::new(AppState {
            tests,
            connect,
            statuses: ReadCache::new(db.clone()),
            db,
            keys,
            auth,
            metrics,
            upstream,
            events,
            tokens,
            config,
        });
        web_hooks::worker::Worker::new(
            state.db.clone(),
            state.keys.clone(),
            web_hooks::worker::WorkerConfig {
                schedule: state.config.webhooks.retry_schedule.clone(),
                policy: state.config.webhook_policy(),
                pinned: state.config.webhooks.pinned.clone(),
                owner: uuid::Uuid::new_v4().to_string(),
                max_in_flight: 64,
                poll: std::time::Duration::from_millis(50),
            },
            state.metrics.webhooks.clone(),
        )
        .map_err(anyhow::Error::msg)?
        .spawn();
        crate::connection_test::health_checks::spawn_retention(
            state.db.clone(),
            state.config.retention,
        );
        if let Some(ahead) = state.config.refresh_ahead {
            crate::tokens::ahead::spawn(
                state.db.clone(),
                state.tokens.clone(),
                ahead.keep_warm,
                crate::tokens::ahead::parallel_renewals(state.config.upstream_concurrency),
            );
        }
        if let Some(interval) = state.config.health_check_interval {
            let checks = crate::connection_test::health_checks::HealthChecks {
                db: state.db.clone(),
                tests: state.tests.clone(),
                metrics: state.metrics.clone(),
                upstream_concurrency: state.config.upstream_concurrency,
            };
            crate::connection_test::health_checks::spawn(checks, interval);
        }
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .app_data(web::PayloadConfig::new(BODY_LIMIT))
                .app_data(web::QueryConfig::default().error_handler(|err, _| {
                    ApiError::new(
                        actix_web::http::StatusCode::BAD_REQUEST,
                        "invalid_query",
                        format!("The query string is not valid: {err}."),
                    )
                    .into()
                }))
                .configure(routes::configure)
                .default_service(web::to(routes::not_found))
                .wrap(from_fn(crate::http::header_limit::refuse_large_headers))
                .wrap(from_fn(problem_for_every_error))
                .wrap(from_fn(record_http_metrics))
                .wrap(from_fn(request_context))
        })
        .listen(listener)?
        // In-flight requests get this long to finish after SIGTERM.
        .shutdown_timeout(30)
        // Signals are handled in `run_until_stopped`, which first ends the live event streams
        // (they never finish on their own, and would hold the shutdown for its whole timeout).
        .disable_signals()
        .run();
        Ok(Application {
            port,
            address: listener_address,
            server,
            events: state_events,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The address actually bound (with the port picked for `:0`).
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let handle = self.server.handle();
        let events = self.events.clone();
        tokio::spawn(async move {
            if stop_signal().await.is_ok() {
                tracing::info!("stopping: finishing requests in flight");
                events.close();
                handle.stop(true).await;
            }
        });
        self.server.await
    }
}

/// SIGTERM or SIGINT (Ctrl-C).
async fn stop_signal() -> std::io::Result<()> {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = term.recv() => Ok(()),
            c = tokio::signal::ctrl_c() => c,
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await
    }
}

//! Access tokens for connector jobs (contract §6): a cached token while enough life is left,
//! otherwise one refresh per company at a time — shared by every caller in this process, and
//! coordinated with other instances through a lease in the database.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::http::header::RETRY_AFTER;
use actix_web::http::StatusCode;
use chrono::Utc;
use connector::{ApplicationId, ChannelAdvisorClient, RefreshToken, SharedSecret, TestError};
use futures_util::future::{BoxFuture, FutureExt, Shared};
use schema::connection::ObtainedToken;
use schema::tokens::{Begin, BeginRequest, CachedToken};
use schema::{CompanyId, Database, KeyRing};
use serde_json::json;
use tracing::Instrument;

use crate::memo::{Memo, Stamp};
use crate::metrics::Metrics;
use crate::problem::ApiError;

/// How a request was served, for the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Served {
    CacheHit,
    Refreshed,
}

type Lookup = Shared<BoxFuture<'static, Result<Found, ApiError>>>;

pub struct TokenBroker {
    /// Identifies this instance's leases.
    instance: String,
    /// The lookup of each company under way in this process, joined by every caller that
    /// misses the memory meanwhile.
    lookups: Mutex<HashMap<String, Lookup>>,
    /// Tokens read from the database moments ago (see `memo` for why this is safe).
    recent: Memo<CachedToken>,
}

impl Default for TokenBroker {
    fn default() -> Self {
        TokenBroker {
            instance: uuid::Uuid::new_v4().to_string(),
            lookups: Mutex::default(),
            recent: Memo::default(),
        }
    }
}

/// Everything a refresh needs, cloned into the spawned task.
#[derive(Clone)]
pub struct BrokerDeps {
    pub db: Database,
    pub keys: Arc<KeyRing>,
    pub client: ChannelAdvisorClient,
    pub metrics: Arc<Metrics>,
    /// Where refreshes run: on an HTTP worker they waited behind every request queued there,
    /// so in a burst a company's refresh started tens of milliseconds after its first caller.
    pub runtime: tokio::runtime::Handle,
}

/// A failed refresh as the job sees it: permanent rejections are 409 (fix the credentials),
/// transient ones 503 with Retry-After (try again).
pub fn refresh_error(e: &TestError) -> ApiError {
    let body = |status| {
        ApiError::new(status, e.code.as_str(), e.message.clone())
            .with("hint", json!(e.hint))
            .with("fields", json!(e.fields))
            .with("upstream_status", json!(e.upstream_status))
    };
    if e.code.is_permanent() {
        body(StatusCode::CONFLICT)
    } else {
        let retry = e.retry_after_seconds.unwrap_or(5);
        body(StatusCode::SERVICE_UNAVAILABLE)
            .with("retry_after_seconds", json!(retry))
            .header(RETRY_AFTER, retry.to_string())
    }
}

fn not_ready(state: &str, missing: &[&str]) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "connection_not_ready",
        format!("The connection is {state}: save the Application ID, Shared Secret and Refresh Token first."),
    )
    .with("state", json!(state))
    .with("missing", json!(missing))
}

impl TokenBroker {
    pub async fn issue(
        &self,
        deps: &BrokerDeps,
        company: CompanyId,
        need: Duration,
        deadline: Duration,
    ) -> Result<(CachedToken, Served), ApiError> {
        let need = chrono::Duration::from_std(need).unwrap_or(chrono::Duration::zero());
        if let Some(token) = self.recent.get(company.as_str()) {
            if token.expires_at - Utc::now() > need {
                return Ok((token, Served::CacheHit));
            }
        }
        // One lookup per company at a time: however many callers miss the memory together, one
        // reads the database and, when that token will not do, refreshes; the rest share its
        // answer (its error too) without a read of their own. A cached token found for a caller
        // that needed less life than this one does not count: look again, with this need.
        for _ in 0..2 {
            let (token, served) = self.join_lookup(deps, &company, need, deadline).await?;
            if served == Served::Refreshed || token.expires_at - Utc::now() > need {
                return Ok((token, served));
            }
        }
        self.join_lookup(deps, &company, need, deadline).await
    }

    async fn join_lookup(
        &self,
        deps: &BrokerDeps,
        company: &CompanyId,
        need: chrono::Duration,
        deadline: Duration,
    ) -> Result<(CachedToken, Served), ApiError> {
        let lookup = {
            let mut map = self.lookups.lock().unwrap_or_else(|p| p.into_inner());
            map.entry(company.to_string())
                .or_insert_with(|| {
                    let task = deps.runtime.spawn(
                        lookup(
                            deps.clone(),
                            self.instance.clone(),
                            company.clone(),
                            need,
                            deadline,
                        )
                        .instrument(tracing::Span::current()),
                    );
                    async move { task.await.unwrap_or_else(|e| Err(ApiError::internal(e))) }
                        .boxed()
                        .shared()
                })
                .clone()
        };
        let result = lookup.clone().await;
        {
            let mut map = self.lookups.lock().unwrap_or_else(|p| p.into_inner());
            // Only the entry of this very lookup is removed; a newer one may already be running.
            if map.get(company.as_str()).is_some_and(|r| r.ptr_eq(&lookup)) {
                map.remove(company.as_str());
            }
        }
        let found = result?;
        if let Some(read) = found.read {
            self.recent.put(company.as_str(), found.token.clone(), read);
        }
        Ok((found.token, found.served))
    }
}

/// What one lookup found, shared by every caller that joined it.
#[derive(Clone)]
struct Found {
    token: CachedToken,
    served: Served,
    /// When the database read of a cached token began, to remember it by.
    read: Option<Stamp>,
}

/// The cached token when it has enough life left for the caller that started the lookup,
/// otherwise a refresh.
async fn lookup(
    deps: BrokerDeps,
    owner: String,
    company: CompanyId,
    need: chrono::Duration,
    deadline: Duration,
) -> Result<Found, ApiError> {
    let (keys, id) = (deps.keys.clone(), company.clone());
    let read = Stamp::now();
    let cached = deps
        .db
        .read(move |conn| schema::tokens::cached(conn, &keys, &id))
        .await?;
    if let Some(token) = cached {
        if token.expires_at - Utc::now() > need {
            return Ok(Found {
                token,
                served: Served::CacheHit,
                read: Some(read),
            });
        }
    }
    let token = refresh(deps, owner, company, need, deadline).await?;
    Ok(Found {
        token,
        served: Served::Refreshed,
        read: None,
    })
}

async fn refresh(
    deps: BrokerDeps,
    owner: String,
    company: CompanyId,
    need: chrono::Duration,
    deadline: Duration,
) -> Result<CachedToken, ApiError> {
    let waiting_since = Utc::now();
    let give_up = Instant::now() + deadline + Duration::from_secs(5);
    let credentials = loop {
        let (keys, id, o) = (deps.keys.clone(), company.clone(), owner.clone());
        let lease = chrono::Duration::from_std(deadline + Duration::from_secs(5))
            .unwrap_or(chrono::Duration::seconds(20));
        let begin = deps
            .db
            .write_grouped(move |conn| {
                schema::tokens::begin_refresh(
                    conn,
                    &keys,
                    &BeginRequest {
                        company: &id,
                        need,
                        owner: &o,
                        lease,
                        waiting_since,
                        remember_permanent: chrono::Duration::seconds(60),
                    },
                )
            })
            .await?;
        match begin {
            Begin::Fresh(token) => return Ok(token),
            Begin::NotReady { state, missing } => return Err(not_ready(state.as_str(), &missing)),
            Begin::Failed { error } => {
                let e: TestError = serde_json::from_str(&error).map_err(ApiError::internal)?;
                return Err(refresh_error(&e));
            }
            Begin::Owner { credentials } => break credentials,
            Begin::Busy if Instant::now() > give_up => {
                return Err(refresh_error(&TestError::timeout(deadline.as_secs())));
            }
            // Another instance is refreshing: its token (or error) will be in the database shortly.
            Begin::Busy => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };
    let version = credentials.version;
    let (Some(app), Some(secret), Some(token)) = (
        credentials
            .application_id
            .as_deref()
            .and_then(|a| ApplicationId::parse(a).ok().flatten()),
        credentials
            .shared_secret
            .clone()
            .map(SharedSecret::from_secret),
        credentials
            .refresh_token
            .clone()
            .map(RefreshToken::from_secret),
    ) else {
        return Err(not_ready(
            credentials.state.as_str(),
            &credentials.missing(),
        ));
    };
    let started = Instant::now();
    let grant = deps.client.refresh_grant(&app, &secret, &token).await;
    deps.metrics
        .token_refresh_seconds
        .observe(started.elapsed().as_secs_f64());
    match grant {
        Ok(grant) => {
            let obtained = ObtainedToken {
                expires_at: Utc::now() + chrono::Duration::seconds(grant.expires_in as i64),
                access_token: grant.access_token,
                rotated_refresh_token: grant.refresh_token,
            };
            let answer = CachedToken {
                access_token: obtained.access_token.clone(),
                expires_at: obtained.expires_at,
            };
            let (keys, id) = (deps.keys.clone(), company.clone());
            deps.db
                .write_grouped(move |conn| {
                    schema::tokens::finish_ok(conn, &keys, &id, version, &owner, &obtained)
                })
                .await?;
            tracing::info!(company = %company, "access token refreshed");
            Ok(answer)
        }
        Err(e) => {
            let json = serde_json::to_string(&e).map_err(ApiError::internal)?;
            let permanent = e.code.is_permanent();
            let id = company.clone();
            deps.db
                .write_grouped(move |conn| {
                    schema::tokens::finish_err(conn, &id, version, &owner, &json, permanent)
                })
                .await?;
            tracing::warn!(company = %company, code = e.code.as_str(), upstream_status = e.upstream_status, "access token refresh failed");
            Err(refresh_error(&e))
        }
    }
}

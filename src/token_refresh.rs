//! One company's token lookup, run as its own task: read the cached token; when it will not do,
//! take the refresh lease in the database, ask ChannelAdvisor, answer the callers and store.
//!
//! The callers are answered as soon as ChannelAdvisor has answered and a read has shown the
//! credentials unchanged, before the new token is written: in a burst the writes of a hundred
//! refreshes commit together, and the callers of each waited for all of them. The lookup stays
//! registered until the token is stored, so no caller here starts a second refresh meanwhile, and
//! the lease keeps other instances waiting until it is released with the stored token.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::http::header::RETRY_AFTER;
use actix_web::http::StatusCode;
use chrono::Utc;
use connector::{AccessInput, SharedSecret, StoredAccess, TestError};
use schema::connection::ObtainedToken;
use schema::credentials::Credentials;
use schema::tokens::{Begin, BeginRequest, CachedToken};
use schema::CompanyId;
use serde_json::json;
use tokio::sync::oneshot;

use crate::memo::Stamp;
use crate::problem::ApiError;
use crate::token_broker::BrokerDeps;

/// How a request was served, for the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Served {
    CacheHit,
    Refreshed,
}

/// What one lookup found, shared by every caller that joined it.
#[derive(Clone)]
pub struct Found {
    pub token: CachedToken,
    pub served: Served,
    /// When the read behind this answer began: the cached token's read, or for a new token the
    /// read that found the credentials unchanged. A caller may use the answer only within the
    /// memory window of it (see `memo`).
    pub read: Stamp,
}

pub type Answer = oneshot::Sender<Result<Found, ApiError>>;

/// The first value given to `Reply` goes to the callers; later ones are dropped.
pub struct Reply(Option<Answer>);

impl Reply {
    fn send(&mut self, result: Result<Found, ApiError>) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(result);
        }
    }
}

/// What a lookup needs to know about its callers.
#[derive(Clone)]
pub struct Request {
    pub owner: String,
    pub company: CompanyId,
    pub need: Need,
    pub deadline: Duration,
}

impl Request {
    /// Whether a cached token has the life every caller so far has asked for.
    fn will_do(&self, token: &CachedToken) -> bool {
        token.expires_at - Utc::now() > self.need.get()
    }
}

/// The most remaining life any caller of a lookup has asked for. Callers joining a lookup raise
/// it, so a cached token short for one of them is refreshed for all instead of handed to it.
#[derive(Clone)]
pub struct Need(Arc<AtomicI64>);

impl Need {
    pub fn new(need: chrono::Duration) -> Need {
        Need(Arc::new(AtomicI64::new(need.num_milliseconds())))
    }

    pub fn raise(&self, need: chrono::Duration) {
        self.0.fetch_max(need.num_milliseconds(), Ordering::AcqRel);
    }

    pub fn get(&self) -> chrono::Duration {
        chrono::Duration::milliseconds(self.0.load(Ordering::Acquire))
    }
}

/// How far the first steps got on the first caller's thread (`first_steps_here`).
pub enum Start {
    /// The lookup is over: a cached token, one another instance just stored, or an error.
    Done(Result<Found, ApiError>),
    /// The lease is this lookup's: ChannelAdvisor is next.
    Leased(Credentials),
}

/// The lookup's first steps — the cached token, else the lease — on the first caller's thread,
/// when the database can serve them there at once; `None` leaves them to the lookup's task.
pub fn first_steps_here(deps: &BrokerDeps, req: &Request) -> Option<Start> {
    let read = Stamp::now();
    match deps
        .db
        .try_read_here(|conn| schema::tokens::cached(conn, &deps.keys, &req.company))?
    {
        Err(e) => return Some(Start::Done(Err(e.into()))),
        Ok(cached) => {
            if let Some(found) = fresh_enough(cached, req, read) {
                return Some(Start::Done(Ok(found)));
            }
        }
    }
    let (read, waiting_since) = (Stamp::now(), Utc::now());
    let begin = deps.db.try_write_here(|conn| {
        schema::tokens::begin_refresh(conn, &deps.keys, &begin_request(req, waiting_since))
    })?;
    match begin.map_err(ApiError::from).and_then(|b| leased(b, read)) {
        Ok(Some(Leased::Answer(found))) => Some(Start::Done(Ok(found))),
        Ok(Some(Leased::Owner(credentials))) => Some(Start::Leased(credentials)),
        Err(e) => Some(Start::Done(Err(e))),
        // Another instance holds the lease: the task waits for it.
        Ok(None) => None,
    }
}

/// The cached token as the answer, when it has the life the lookup's callers need.
fn fresh_enough(cached: Option<CachedToken>, req: &Request, read: Stamp) -> Option<Found> {
    let token = cached.filter(|t| req.will_do(t))?;
    let served = Served::CacheHit;
    Some(Found {
        token,
        served,
        read,
    })
}

/// Runs one lookup to its end — from the lease when the first steps took it (`leased`);
/// `registered` is dropped (unregistering the lookup) once nothing more is written for it —
/// before a cached token or an error is answered, after a new token is stored.
pub async fn run<R: Send>(
    deps: BrokerDeps,
    req: Request,
    leased: Option<Credentials>,
    answer: Answer,
    registered: R,
) {
    let mut reply = Reply(Some(answer));
    let result = lookup(&deps, &req, leased, &mut reply).await;
    drop(registered);
    match result {
        Ok(Some(found)) => reply.send(Ok(found)),
        Ok(None) => {}
        Err(e) => reply.send(Err(e)),
    }
}

/// `Ok(None)` when the callers were already answered (a new token, stored afterwards).
async fn lookup(
    deps: &BrokerDeps,
    req: &Request,
    mut leased: Option<Credentials>,
    reply: &mut Reply,
) -> Result<Option<Found>, ApiError> {
    // Without the lease from the first steps, taking it (in a batch) reads the cached token too.
    // Credentials saved while ChannelAdvisor was being asked make its answer one about the old
    // values: ask again with the new ones (a few times at most).
    for _ in 0..3 {
        let credentials = match leased.take() {
            Some(credentials) => credentials,
            None => match take_lease(deps, req).await? {
                Leased::Answer(found) => return Ok(Some(found)),
                Leased::Owner(credentials) => credentials,
            },
        };
        match refresh(deps, req, credentials, reply).await? {
            Refreshed::Answered => return Ok(None),
            Refreshed::CredentialsChanged => continue,
        }
    }
    Err(refresh_error(&TestError::timeout(req.deadline.as_secs())))
}

enum Refreshed {
    /// The callers have their new token.
    Answered,
    /// Saved or deleted while ChannelAdvisor was asked: nothing answered, nothing stored.
    CredentialsChanged,
}

enum Leased {
    Answer(Found),
    Owner(Credentials),
}

/// Waits for the company's refresh lease; another instance's fresh token (or its error) found
/// meanwhile is the answer.
async fn take_lease(deps: &BrokerDeps, req: &Request) -> Result<Leased, ApiError> {
    let waiting_since = Utc::now();
    let give_up = Instant::now() + req.deadline + Duration::from_secs(5);
    loop {
        let read = Stamp::now();
        let begin = deps.leases.call(begin_request(req, waiting_since)).await?;
        match leased(begin, read)? {
            // Callers who joined while the batch ran may have raised the life the token must
            // have: one short for them is not the answer; ask again with the need as it is now
            // (it only rises, so this ends).
            Some(Leased::Answer(found)) if !req.will_do(&found.token) => continue,
            Some(leased) => return Ok(leased),
            None => {}
        }
        if Instant::now() > give_up {
            return Err(refresh_error(&TestError::timeout(req.deadline.as_secs())));
        }
        // Another instance is refreshing: its token (or error) will be in the database shortly.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn begin_request(req: &Request, waiting_since: chrono::DateTime<Utc>) -> BeginRequest {
    BeginRequest {
        company: req.company.clone(),
        need: req.need.get(),
        owner: req.owner.clone(),
        // Outlives the upstream deadline, so only a crashed owner's lease runs out.
        lease: chrono::Duration::from_std(req.deadline + Duration::from_secs(5))
            .unwrap_or(chrono::Duration::seconds(20)),
        waiting_since,
        remember_permanent: chrono::Duration::seconds(60),
    }
}

/// What taking the lease came to; `None` while another instance holds it.
fn leased(begin: Begin, read: Stamp) -> Result<Option<Leased>, ApiError> {
    Ok(Some(match begin {
        Begin::Fresh(token) => Leased::Answer(Found {
            token,
            served: Served::CacheHit,
            read,
        }),
        Begin::NotReady { state, missing } => return Err(not_ready(state.as_str(), &missing)),
        Begin::Failed { error } => return Err(refresh_error(&error)),
        Begin::Owner { credentials } => Leased::Owner(credentials),
        Begin::Busy => return Ok(None),
    }))
}

/// Asks ChannelAdvisor with the leased credentials; answers the callers, then stores.
async fn refresh(
    deps: &BrokerDeps,
    req: &Request,
    credentials: Credentials,
    reply: &mut Reply,
) -> Result<Refreshed, ApiError> {
    let version = credentials.version;
    let app = credentials.application_id.clone();
    let secret = credentials
        .shared_secret
        .clone()
        .map(SharedSecret::from_secret);
    let (Some(app), Some(secret), Ok(access)) =
        (app, secret, access_input(&credentials).complete())
    else {
        return Err(not_ready(
            credentials.state.as_str(),
            &credentials.missing(),
        ));
    };
    let started = Instant::now();
    // A refresh token is refreshed; SOAP Credentials are simply granted again (contract §8).
    let grant = deps.client.grant(&app, &secret, &access).await;
    let upstream = started.elapsed();
    deps.metrics
        .token_refresh_seconds
        .observe(upstream.as_secs_f64());
    let (owner, company) = (req.owner.clone(), req.company.clone());
    match grant {
        Ok(grant) => {
            let obtained = ObtainedToken {
                expires_at: Utc::now() + chrono::Duration::seconds(grant.expires_in as i64),
                access_token: grant.access_token,
                rotated_refresh_token: grant.refresh_token,
            };
            deliver(deps, req, version, obtained, upstream, reply).await
        }
        Err(e) => {
            let remembered = e.clone();
            let recorded = deps
                .db
                .write_grouped(move |conn| {
                    schema::tokens::finish_err(conn, &company, version, &owner, &remembered)
                })
                .await?;
            if recorded.is_none() {
                return Ok(Refreshed::CredentialsChanged);
            }
            tracing::warn!(company = %req.company, code = e.code.as_str(), upstream_status = e.upstream_status, "access token refresh failed");
            Err(refresh_error(&e))
        }
    }
}

/// Stores the new token, then hands it to the callers: a token (and a rotated refresh token) is
/// durable before anyone uses it, so no crash or stop between the two can lose what
/// ChannelAdvisor handed out. The store refuses it when the credentials changed meanwhile.
async fn deliver(
    deps: &BrokerDeps,
    req: &Request,
    version: i64,
    obtained: ObtainedToken,
    upstream: Duration,
    reply: &mut Reply,
) -> Result<Refreshed, ApiError> {
    let token = CachedToken {
        access_token: obtained.access_token.clone(),
        expires_at: obtained.expires_at,
    };
    let (keys, company, owner) = (deps.keys.clone(), req.company.clone(), req.owner.clone());
    let read = Stamp::now();
    let stored = deps
        .db
        .write_grouped(move |conn| {
            schema::tokens::finish_ok(conn, &keys, &company, version, &owner, &obtained)
        })
        .await?;
    if !stored {
        return Ok(Refreshed::CredentialsChanged);
    }
    // How long ChannelAdvisor took, exactly, where the histogram has only buckets.
    let upstream_ms = upstream.as_secs_f64() * 1000.0;
    tracing::info!(company = %req.company, upstream_ms, "access token refreshed");
    reply.send(Ok(Found {
        token,
        served: Served::Refreshed,
        read,
    }));
    Ok(Refreshed::Answered)
}

/// The stored refresh token, or SOAP values, by the company's method.
fn access_input(c: &Credentials) -> AccessInput {
    AccessInput::from_stored(StoredAccess {
        method: c.auth_method,
        refresh_token: c.refresh_token.as_ref(),
        developer_key: c.developer_key.as_ref(),
        password: c.password.as_ref(),
        account_id: c.account_id.as_ref(),
    })
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

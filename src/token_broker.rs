//! Access tokens for connector jobs (contract §6): a cached token while enough life is left,
//! otherwise one refresh per company at a time — shared by every caller in this process, and
//! coordinated with other instances through a lease in the database (`token_refresh`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use connector::ChannelAdvisorClient;
use futures_util::future::{BoxFuture, FutureExt, Shared};
use schema::tokens::{Begin, BeginRequest, CachedToken};
use schema::{CompanyId, Database, KeyRing};
use tokio::sync::oneshot;
use tracing::Instrument;

use crate::batches::Batches;
use crate::memo::Memo;
use crate::metrics::Metrics;
use crate::problem::ApiError;
pub use crate::token_refresh::Served;
use crate::token_refresh::{Found, Need, Request, Start};

type Shareable<T> = Shared<BoxFuture<'static, T>>;

/// A company's lookup under way in this process, joined by every caller that misses the memory
/// meanwhile.
#[derive(Clone)]
struct Lookup {
    id: u64,
    need: Need,
    /// Its answer: ready when the callers can have it, maybe before the lookup has ended.
    answer: Shareable<Result<Found, ApiError>>,
    /// Ready when the lookup has ended and unregistered itself.
    ended: Shareable<()>,
}

type Lookups = Arc<Mutex<HashMap<String, Lookup>>>;

pub struct TokenBroker {
    /// Identifies this instance's leases.
    instance: String,
    lookups: Lookups,
    next_lookup: AtomicU64,
    /// Tokens read from the database moments ago (see `memo` for why this is safe).
    recent: Memo<CachedToken>,
}

impl Default for TokenBroker {
    fn default() -> Self {
        TokenBroker {
            instance: uuid::Uuid::new_v4().to_string(),
            lookups: Lookups::default(),
            next_lookup: AtomicU64::new(0),
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
    /// Refresh leases asked for together, taken together (`begin_refresh_batch`).
    pub leases: Arc<Batches<BeginRequest, Begin>>,
    /// Where refreshes run: on an HTTP worker they waited behind every request queued there,
    /// so in a burst a company's refresh started tens of milliseconds after its first caller.
    pub runtime: tokio::runtime::Handle,
}

/// Unregisters a lookup when dropped — when it ends, by a panic too — and then tells the
/// callers waiting for its end.
struct Registered {
    lookups: Lookups,
    company: String,
    id: u64,
    _ended: oneshot::Sender<()>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        let mut map = self.lookups.lock().unwrap_or_else(|p| p.into_inner());
        // Only this very lookup is removed; a newer one may already be registered.
        if map.get(&self.company).is_some_and(|l| l.id == self.id) {
            map.remove(&self.company);
        }
    }
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
        // answer (its error too) without a read of their own.
        let mut short_answers = 0;
        loop {
            let joined = Instant::now();
            let lookup = self.lookup(deps, &company, need, deadline);
            let waited = lookup.answer.peek().is_none();
            let mut found = lookup.answer.await?;
            if !waited {
                // A new token answered before this caller came is, to this caller, cached.
                found.served = Served::CacheHit;
            }
            // An answer that will not do for this caller: its read began more than the memory
            // window before the caller asked (a save may have answered since), or it is a cached
            // token with less life than this caller needs (joining raised the lookup's need, but
            // it had already decided). The lookup may stay registered until its new token is
            // written: wait for its end, then look again (for a short token, twice at most).
            let stale = !found.read.usable_by(joined);
            let short =
                found.served == Served::CacheHit && found.token.expires_at - Utc::now() <= need;
            if stale || (short && short_answers < 2) {
                // Only fresh answers count against the bound: a stale one is never used anyway.
                short_answers += usize::from(short && !stale);
                lookup.ended.await;
                continue;
            }
            if found.served == Served::CacheHit {
                self.recent
                    .put(company.as_str(), found.token.clone(), found.read);
            }
            return Ok((found.token, found.served));
        }
    }

    /// The company's lookup under way, or a new one.
    fn lookup(
        &self,
        deps: &BrokerDeps,
        company: &CompanyId,
        need: chrono::Duration,
        deadline: Duration,
    ) -> Lookup {
        let (lookup, answer, ended) = {
            let mut map = self.lookups.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(running) = map.get(company.as_str()) {
                running.need.raise(need);
                return running.clone();
            }
            let (answer, answered) = oneshot::channel();
            let (ended, on_end) = oneshot::channel::<()>();
            let lookup = Lookup {
                id: self.next_lookup.fetch_add(1, Ordering::Relaxed),
                need: Need::new(need),
                answer: async move {
                    answered.await.unwrap_or_else(|_| {
                        Err(ApiError::internal(
                            "the token lookup ended without an answer",
                        ))
                    })
                }
                .boxed()
                .shared(),
                ended: async move {
                    // Its sender is dropped when the lookup's task ends.
                    let _ = on_end.await;
                }
                .boxed()
                .shared(),
            };
            map.insert(company.to_string(), lookup.clone());
            (lookup, answer, ended)
        };
        let registered = Registered {
            lookups: self.lookups.clone(),
            company: company.to_string(),
            id: lookup.id,
            _ended: ended,
        };
        let request = Request {
            owner: self.instance.clone(),
            company: company.clone(),
            need: lookup.need.clone(),
            deadline,
        };
        // Synchronous: nothing between registering and answering or spawning can be cancelled.
        let leased = match crate::token_refresh::first_steps_here(deps, &request) {
            // Answered here, without a hop to another thread; unregistered first, so a caller
            // that needs more life than this token has starts a lookup of its own.
            Some(Start::Done(result)) => {
                drop(registered);
                let _ = answer.send(result);
                return lookup;
            }
            Some(Start::Leased(credentials)) => Some(credentials),
            None => None,
        };
        deps.runtime.spawn(
            crate::token_refresh::run(deps.clone(), request, leased, answer, registered)
                .instrument(tracing::Span::current()),
        );
        lookup
    }
}

//! Access tokens (contract §6): the broker every job request, Test Connection and health check
//! of a company goes through, so they share one exchange with ChannelAdvisor at a time — one per
//! company in this process (`SingleFlight`), one across instances (the lease in the store).
//!
//! A request runs `decide` on what the store holds and does what it says: serve the cached token,
//! wait for the refresh another holds, refuse, or take the lease and refresh. A refresh's outcome
//! is written, fenced by the lease, before anyone is handed its token; then the callers decide
//! again on what is stored, so whatever happened meanwhile (a save, a lost lease) is seen.

pub mod ahead;
pub mod decide;
pub mod flight;
pub mod read_cache;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use connector::{
    AccessInput, ApplicationId, ChannelAdvisorClient, SharedSecret, StoredAccess, TestError,
};
use schema::connection::ObtainedToken;
use schema::credentials::{now, Credentials};
use schema::tokens::{CachedToken, Exchanged, FailedFor, Snapshot, TokenRow, Written};
use schema::{CompanyId, Database, KeyRing};
use secrecy::SecretString;

use crate::fault::Fault;
use crate::service::metrics::Metrics;
use decide::{decide, Ask, Decision, Refusal};
use flight::SingleFlight;
use read_cache::ReadCache;
use schema::visibility::Stamp;

/// What asked for a refresh, for `ca_connector_token_refreshes_total{cause}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// A connector job's token request.
    Job,
    /// Refresh ahead, before a job's token runs out.
    Ahead,
    /// Test Connection pressed by a person (or the Connect flow).
    Test,
    /// A scheduled health check.
    HealthCheck,
}

impl Cause {
    pub fn label(self) -> &'static str {
        match self {
            Cause::Job => "job",
            Cause::Ahead => "ahead",
            Cause::Test => "test",
            Cause::HealthCheck => "health_check",
        }
    }
}

/// Refresh ahead's window, as the broker needs it to place each new token's renewal.
#[derive(Debug, Clone, Copy)]
pub struct Renewal {
    pub window: chrono::Duration,
    pub margin: chrono::Duration,
}

/// How often one instance writes that a company's jobs still want its token: refresh ahead keeps a
/// company warm for hours after that, so a mark a few minutes old is as good as a fresh one, and
/// the cached-token path writes nothing.
const WANTED_MARK_EVERY: Duration = Duration::from_secs(300);

/// How a request was served, for the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Served {
    CacheHit,
    Refreshed,
}

/// A token handed out, and when the read it came from began (see `read_cache`).
#[derive(Clone)]
pub struct Issued {
    pub token: CachedToken,
    pub served: Served,
    /// When the read behind it began.
    read: Stamp,
}

/// Why no token was handed out.
#[derive(Clone, Debug)]
pub enum Failure {
    /// Not ready, or refused by ChannelAdvisor: the caller's to act on.
    Refused(Refusal),
    /// The service's own failure.
    Fault(Fault),
}

impl From<schema::StoreError> for Failure {
    fn from(e: schema::StoreError) -> Self {
        Failure::Fault(e.into())
    }
}

impl From<Fault> for Failure {
    fn from(f: Fault) -> Self {
        Failure::Fault(f)
    }
}

/// Candidate values a Test Connection lays over the stored ones for its exchange. The exchange
/// still spends the stored refresh token, so it runs under the lease like any refresh.
#[derive(Clone)]
pub struct Candidate {
    pub application_id: ApplicationId,
    pub shared_secret: SecretString,
    /// Distinguishes the flights of different candidate values (a digest, never the values).
    pub digest: String,
}

pub struct TokenBroker {
    db: Database,
    keys: Arc<KeyRing>,
    client: ChannelAdvisorClient,
    metrics: Arc<Metrics>,
    /// Names this instance in lease holders.
    instance: String,
    /// Company (plus candidate digest) → the flight under way.
    flights: SingleFlight<String, Result<Issued, Failure>>,
    recent: ReadCache<Issued>,
    /// Refresh ahead's window; `None` when it is off.
    renewal: Option<Renewal>,
    /// Companies whose jobs this instance marked as wanting their token lately.
    wanted: moka::sync::Cache<String, ()>,
}

impl TokenBroker {
    pub fn new(
        db: Database,
        keys: Arc<KeyRing>,
        client: ChannelAdvisorClient,
        metrics: Arc<Metrics>,
        renewal: Option<Renewal>,
    ) -> Arc<Self> {
        Arc::new(TokenBroker {
            renewal,
            wanted: moka::sync::Cache::builder()
                .max_capacity(200_000)
                .time_to_live(WANTED_MARK_EVERY)
                .build(),
            recent: ReadCache::new(db.clone()),
            db,
            keys,
            client,
            metrics,
            instance: uuid::Uuid::new_v4().to_string(),
            flights: SingleFlight::default(),
        })
    }

    /// A token with at least `life` left, for a connector job.
    pub async fn issue(
        self: &Arc<Self>,
        company: &CompanyId,
        life: Duration,
    ) -> Result<Issued, Failure> {
        self.mark_wanted(company);
        let life = chrono::Duration::from_std(life).unwrap_or(chrono::Duration::zero());
        let ask = Ask {
            life: Some(life),
            since: now(),
        };
        if let Some(issued) = self.recent.get(company.as_str()) {
            if ask.accepts(&issued.token, Utc::now()) {
                return Ok(Issued {
                    served: Served::CacheHit,
                    ..issued
                });
            }
        }
        self.shared(company, ask, None, Cause::Job).await
    }

    /// Refresh ahead: a token with more than the window left, renewed now unless another instance
    /// or a job already did. Jobs asking meanwhile join this flight.
    pub async fn renew(self: &Arc<Self>, company: &CompanyId) -> Result<Issued, Failure> {
        let window = self.renewal.map(|r| r.window).unwrap_or_default();
        let ask = Ask {
            life: Some(window),
            since: now(),
        };
        self.shared(company, ask, None, Cause::Ahead).await
    }

    /// The upstream deadline, which a refresh's lease outlives.
    pub fn deadline(&self) -> Duration {
        self.client.deadline()
    }

    /// Notes (at most every few minutes per company and instance) that a job wants this
    /// company's token, so refresh ahead keeps it fresh. Off the request's path.
    fn mark_wanted(&self, company: &CompanyId) {
        if self.renewal.is_none() || self.wanted.contains_key(company.as_str()) {
            return;
        }
        self.wanted.insert(company.to_string(), ());
        let (db, id) = (self.db.clone(), company.clone());
        tokio::spawn(async move {
            let marked = db
                .run(move |conn| schema::renewals::note_wanted(conn, &id))
                .await;
            if let Err(e) = marked {
                tracing::warn!(error = %e, "noting a job's token request for refresh ahead failed");
            }
        });
    }

    /// A token exchanged after this call began, for Test Connection: the exchange is shared with
    /// any job refresh or other test of the company under way.
    pub async fn exchange(
        self: &Arc<Self>,
        company: &CompanyId,
        candidate: Option<Candidate>,
        cause: Cause,
    ) -> Result<Issued, Failure> {
        let ask = Ask {
            life: None,
            since: now(),
        };
        self.shared(company, ask, candidate, cause).await
    }

    /// Joins the company's flight, or starts one; a result that will not do for this caller (a
    /// token from before it asked that is too short, or a read that began too long before it
    /// asked) sends it round again, to a flight with its own needs.
    async fn shared(
        self: &Arc<Self>,
        company: &CompanyId,
        ask: Ask,
        candidate: Option<Candidate>,
        cause: Cause,
    ) -> Result<Issued, Failure> {
        let asked = Instant::now();
        let key = match &candidate {
            Some(c) => format!("{company}\u{1f}{}", c.digest),
            None => company.to_string(),
        };
        // Bounded: a second round starts a flight with this caller's own needs, which a refresh
        // meets; a third is only ever needed if reads kept falling outside the window.
        for round in 1.. {
            let (broker, id, flight_ask) = (self.clone(), company.clone(), ask.clone());
            let laid_over = candidate.clone();
            let issued = self
                .flights
                .run(key.clone(), move || async move {
                    broker
                        .drive(&id, &flight_ask, laid_over.as_ref(), cause)
                        .await
                })
                .await
                .unwrap_or_else(|| {
                    Err(Failure::Fault(Fault::Ended(
                        "the token lookup ended without an answer",
                    )))
                })?;
            let fresh_read = issued.read.usable_by(asked);
            if round >= 4 || (fresh_read && ask.accepts(&issued.token, Utc::now())) {
                if candidate.is_none() && issued.served == Served::CacheHit {
                    self.recent
                        .put(company.as_str(), issued.clone(), issued.read);
                }
                return Ok(issued);
            }
        }
        unreachable!("the rounds above end in a return")
    }

    /// One flight: decide on what is stored and act, until there is an answer.
    async fn drive(
        &self,
        company: &CompanyId,
        ask: &Ask,
        candidate: Option<&Candidate>,
        cause: Cause,
    ) -> Result<Issued, Failure> {
        let lease = schema::tokens::lease_for(self.client.deadline());
        let give_up = Instant::now() + lease.to_std().unwrap_or(Duration::from_secs(20)) * 2;
        // A test's first round goes straight to the locked decision: no token stored before it
        // asked will do, so a plain read first would only find that out.
        let mut read_first = ask.life.is_some();
        loop {
            if Instant::now() > give_up {
                let secs = self.client.deadline().as_secs();
                return Err(Failure::Refused(Refusal::Upstream(TestError::timeout(
                    secs,
                ))));
            }
            let read = self.recent.stamp();
            let decision = if read_first {
                let (keys, id) = (self.keys.clone(), company.clone());
                let snapshot = self
                    .db
                    .run(move |conn| schema::tokens::snapshot(conn, &keys, &id))
                    .await?;
                let (cached, row) = for_candidate(&snapshot, candidate.is_some());
                decide(cached.as_ref(), row.as_ref(), ask, now())
            } else {
                Decision::Refresh
            };
            read_first = true;
            let step = match decision {
                Decision::Refresh => self.take_lease(company, ask, lease, candidate).await?,
                other => Step::Decided(other),
            };
            match step {
                Step::Decided(Decision::Serve(token)) => {
                    let served = Served::CacheHit;
                    return Ok(Issued {
                        token,
                        served,
                        read,
                    });
                }
                Step::Decided(Decision::Refuse(refusal)) => return Err(Failure::Refused(refusal)),
                Step::Decided(Decision::Wait | Decision::Refresh) => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Step::Leased(credentials, holder) => {
                    if let Some(issued) = self
                        .refresh(company, credentials, &holder, candidate, cause)
                        .await?
                    {
                        return Ok(issued);
                    }
                }
            }
        }
    }

    /// Decides again under the row lock and, if it is still a refresh, takes the lease.
    async fn take_lease(
        &self,
        company: &CompanyId,
        ask: &Ask,
        lease: chrono::Duration,
        candidate: Option<&Candidate>,
    ) -> Result<Step, Failure> {
        let holder = format!("{}/{}", self.instance, uuid::Uuid::new_v4());
        let (keys, id, ask) = (self.keys.clone(), company.clone(), ask.clone());
        let ignore_cached = candidate.is_some();
        let step = self
            .db
            .write(move |conn| {
                let locked = schema::tokens::lock(conn, &keys, &id)?;
                let (cached, row) = for_candidate(&locked.snapshot, ignore_cached);
                let at = now();
                Ok(match decide(cached.as_ref(), row.as_ref(), &ask, at) {
                    Decision::Refresh => {
                        let credentials = locked.lease(conn, &keys, &holder, at + lease)?;
                        Step::Leased(Box::new(credentials), holder.clone())
                    }
                    other => Step::Decided(other),
                })
            })
            .await?;
        Ok(step)
    }

    /// Asks ChannelAdvisor with the leased credentials and writes the outcome. `None` when the
    /// outcome was not this attempt's to hand out (the values changed, or the lease was lost):
    /// the caller decides again.
    async fn refresh(
        &self,
        company: &CompanyId,
        credentials: Box<Credentials>,
        holder: &str,
        candidate: Option<&Candidate>,
        cause: Cause,
    ) -> Result<Option<Issued>, Failure> {
        let app = candidate
            .map(|c| c.application_id.clone())
            .or_else(|| credentials.application_id.clone());
        let secret = candidate
            .map(|c| c.shared_secret.clone())
            .or_else(|| credentials.shared_secret.clone());
        let (Some(app), Some(secret), Ok(access)) =
            (app, secret, access_input(&credentials).complete())
        else {
            let (state, missing) = (credentials.state, credentials.missing());
            return Err(Failure::Refused(Refusal::NotReady { state, missing }));
        };
        let started = Instant::now();
        // A refresh token is refreshed; SOAP Credentials are simply granted again (contract §8).
        let grant = self
            .client
            .grant(&app, &SharedSecret::from_secret(secret), &access)
            .await;
        let upstream = started.elapsed();
        self.metrics
            .token_refresh_seconds
            .observe(upstream.as_secs_f64());
        self.metrics
            .token_refreshes
            .with_label_values(&[cause.label()])
            .inc();
        let version = credentials.version;
        let grant = match grant {
            Ok(grant) => grant,
            Err(error) => {
                return self
                    .record_failure(
                        company,
                        holder,
                        version,
                        error,
                        failed_for(cause, candidate),
                    )
                    .await
            }
        };
        let obtained = ObtainedToken {
            expires_at: Utc::now() + chrono::Duration::seconds(grant.expires_in as i64),
            access_token: grant.access_token,
            rotated_refresh_token: grant.refresh_token,
        };
        let (keys, id, owner) = (self.keys.clone(), company.clone(), holder.to_string());
        let cache = candidate.is_none();
        let renew_at = self.renewal.and_then(|r| {
            schema::renewals::renewal_moment(
                Utc::now(),
                obtained.expires_at,
                r.window,
                r.margin,
                rand::random::<f64>(),
            )
        });
        let token = CachedToken {
            access_token: obtained.access_token.clone(),
            expires_at: obtained.expires_at,
            obtained_at: now(),
        };
        let read = self.recent.stamp();
        // Durable before anyone is handed it; a write that lost a race is tried again.
        let writing = Instant::now();
        let written = self
            .db
            .write(move |conn| {
                let done = Exchanged {
                    company: &id,
                    holder: &owner,
                    version,
                    spent: credentials.refresh_token.as_ref(),
                    token: &obtained,
                    cache,
                    renew_at,
                };
                schema::tokens::finish_ok(conn, &keys, &done)
            })
            .await?;
        // Exact figures where the histogram has only buckets.
        let upstream_ms = upstream.as_secs_f64() * 1000.0;
        let write_ms = writing.elapsed().as_secs_f64() * 1000.0;
        tracing::info!(company = %company, upstream_ms, write_ms, written = ?written, "access token refreshed");
        let issued = Issued {
            token,
            served: Served::Refreshed,
            read,
        };
        Ok(match written {
            Written::Stored => Some(issued),
            // A test of candidate values gets its token whether or not it could be kept.
            _ if candidate.is_some() => Some(issued),
            Written::Outdated | Written::NotHolder => None,
        })
    }

    async fn record_failure(
        &self,
        company: &CompanyId,
        holder: &str,
        version: i64,
        error: TestError,
        failed_for: FailedFor,
    ) -> Result<Option<Issued>, Failure> {
        let (id, owner, remembered) = (company.clone(), holder.to_string(), error.clone());
        let (written, _) = self
            .db
            .write(move |conn| {
                schema::tokens::finish_err(conn, &id, &owner, version, &remembered, failed_for)
            })
            .await?;
        tracing::warn!(company = %company, code = error.code.as_str(), upstream_status = error.upstream_status, written = ?written, "access token refresh failed");
        match written {
            // Not this attempt's to hand out: the caller decides again.
            Written::NotHolder | Written::Outdated if failed_for != FailedFor::Candidate => {
                Ok(None)
            }
            _ => Err(Failure::Refused(Refusal::Upstream(error))),
        }
    }
}

/// What a failed refresh is recorded for: a test records its own outcome (and state change) with
/// its id, so the refresh it spent records only the error.
fn failed_for(cause: Cause, candidate: Option<&Candidate>) -> FailedFor {
    match (cause, candidate) {
        (_, Some(_)) => FailedFor::Candidate,
        (Cause::Test | Cause::HealthCheck, None) => FailedFor::Test,
        (Cause::Job | Cause::Ahead, None) => FailedFor::Refresh,
    }
}

/// What a decision sees: for a test of candidate values, no cached token (it is of the stored
/// values) and only the stored refresh token required (the candidate brings the rest).
fn for_candidate(snapshot: &Snapshot, candidate: bool) -> (Option<CachedToken>, Option<TokenRow>) {
    if !candidate {
        return (snapshot.cached.clone(), snapshot.row.clone());
    }
    let row = snapshot.row.clone().map(|mut row| {
        row.missing
            .retain(|f| !matches!(*f, "application_id" | "shared_secret"));
        row
    });
    (None, row)
}

enum Step {
    Decided(Decision),
    Leased(Box<Credentials>, String),
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

//! Scheduled health checks: every complete connection is re-tested once per interval (which also
//! keeps refresh tokens from expiring unused). Checks are spread over the interval by the store's
//! scheduling (each connection at its own moment), claimed through the database so several
//! instances never check a company twice, and run a few at a time, so jobs keep most of the
//! instance's upstream slots. How far the schedule is behind is exported, and said in the log
//! once per interval when a round cannot finish in it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::connection_test::TestRunner;
use crate::connection_test::{TestRequest, SCHEDULER};
use crate::service::claim_pace::ClaimPace;
use crate::service::metrics::Metrics;

/// Checks of one instance running at once: an eighth of its upstream slots (each check makes two
/// calls, one after the other), so jobs keep the rest.
pub fn parallel_checks(upstream_concurrency: usize) -> usize {
    (upstream_concurrency / 8).max(1)
}

/// What the scheduled checks use of the service, and nothing more.
#[derive(Clone)]
pub struct HealthChecks {
    pub db: schema::Database,
    pub tests: Arc<TestRunner>,
    pub metrics: Arc<Metrics>,
    /// The instance's upstream slots; an eighth of them run checks.
    pub upstream_concurrency: usize,
}

pub fn spawn(state: HealthChecks, interval: Duration) {
    // Look for due checks often enough that none is late by more than a small part of the interval.
    let tick = (interval / 20).clamp(Duration::from_millis(100), Duration::from_secs(30));
    let round = chrono::Duration::from_std(interval).unwrap_or(chrono::Duration::hours(6));
    let parallel = parallel_checks(state.upstream_concurrency);
    let mut pace = ClaimPace::new(parallel, tick);
    let mut late = Lateness::new(interval, parallel);
    tokio::spawn(async move {
        loop {
            let free = pace.next_look().await;
            let due = match state
                .db
                .run(move |conn| schema::schedule::claim_due(conn, round, free))
                .await
            {
                Ok(due) => due,
                Err(e) => {
                    tracing::warn!(error = %e, "health-check scheduling failed; retrying next tick");
                    pace.failed();
                    continue;
                }
            };
            pace.claimed(due.claimed.len(), free);
            let lag = due
                .oldest
                .map(|at| (chrono::Utc::now() - at).num_milliseconds().max(0) as f64 / 1000.0)
                .unwrap_or(0.0);
            state.metrics.health_check_lag.set(lag);
            late.check(lag);
            for company in due.claimed {
                let Some(permit) = pace.slot().await else {
                    return;
                };
                let state = state.clone();
                tokio::spawn(async move {
                    let request = TestRequest {
                        company: company.clone(),
                        candidate: None,
                        triggered_by: SCHEDULER.into(),
                    };
                    let result = state.tests.run(request).await;
                    let outcome = match &result {
                        Ok(t) => t.result.outcome.as_str().to_string(),
                        Err(e) => {
                            tracing::warn!(company = %company, error = %e, "scheduled health check could not run");
                            "error".to_string()
                        }
                    };
                    state
                        .metrics
                        .health_checks
                        .with_label_values(&[&outcome])
                        .inc();
                    drop(permit);
                });
            }
        }
    });
}

/// Says once per interval, in the log, that the schedule has fallen so far behind that a round of
/// checks cannot finish within its interval.
struct Lateness {
    interval: Duration,
    parallel: usize,
    said: Option<Instant>,
}

impl Lateness {
    fn new(interval: Duration, parallel: usize) -> Self {
        Lateness {
            interval,
            parallel,
            said: None,
        }
    }

    /// A tenth of the interval behind: at this instance's pace the backlog only grows.
    fn check(&mut self, lag_secs: f64) {
        let behind = lag_secs > self.interval.as_secs_f64() / 10.0;
        let quiet = self.said.is_some_and(|at| at.elapsed() < self.interval);
        if behind && !quiet {
            self.said = Some(Instant::now());
            tracing::warn!(
                lag_seconds = lag_secs as u64,
                interval_seconds = self.interval.as_secs(),
                parallel_checks = self.parallel,
                "scheduled health checks are behind: a round of every complete connection cannot finish within the interval. Raise --health-check-interval-secs, or --upstream-concurrency (an eighth of it runs checks) or the number of instances; docs/operations.md works out the capacity"
            );
        }
    }
}

/// How often old records are swept (contract: retention settings); the first sweep comes a
/// minute after start, so a restart loop does not sweep on every start.
const SWEEP_EVERY: Duration = Duration::from_secs(3600);

/// Deletes what is past its retention, on every instance (a sweep is idempotent, and several at
/// once only find less to delete).
pub fn spawn_retention(db: schema::Database, keep: schema::retention::Retention) {
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(60)).await;
        loop {
            match db
                .run(move |conn| schema::retention::sweep(conn, &keep, chrono::Utc::now()))
                .await
            {
                Ok(swept) if swept != schema::retention::Swept::default() => {
                    tracing::info!(?swept, "old records swept")
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "retention sweep failed; trying again later"),
            }
            tokio::time::sleep(SWEEP_EVERY).await;
        }
    });
}

//! Scheduled health checks: every complete connection is re-tested once per interval (which also
//! keeps refresh tokens from expiring unused). Checks are spread over the interval by the store's
//! scheduling, claimed through the database so several instances never check a company twice,
//! and run a few at a time; upstream calls stay within the per-application limit of the client.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::connection_test::TestRequest;
use crate::service::startup::AppState;

/// Checks of one instance running at once.
const PARALLEL_CHECKS: usize = 8;

pub fn spawn(state: Arc<AppState>, interval: Duration) {
    // Look for due checks often enough that none is late by more than a small part of the interval.
    let tick = (interval / 20).clamp(Duration::from_millis(100), Duration::from_secs(30));
    let interval = chrono::Duration::from_std(interval).unwrap_or(chrono::Duration::hours(6));
    let running = Arc::new(Semaphore::new(PARALLEL_CHECKS));
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(tick).await;
            let free = running.available_permits() as i64;
            if free == 0 {
                continue;
            }
            let due = match state
                .db
                .run(move |conn| schema::schedule::claim_due(conn, interval, free))
                .await
            {
                Ok(due) => due,
                Err(e) => {
                    tracing::warn!(error = %e, "health-check scheduling failed; retrying next tick");
                    continue;
                }
            };
            for company in due {
                let Ok(permit) = running.clone().acquire_owned().await else {
                    return;
                };
                let state = state.clone();
                tokio::spawn(async move {
                    let request = TestRequest {
                        company: company.clone(),
                        candidate: None,
                        triggered_by: "scheduler".into(),
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
                    state.webhook_wake.notify_one();
                    drop(permit);
                });
            }
        }
    });
}

/// How often old records are swept (contract: retention settings); the first sweep comes a
/// minute after start, so a restart loop does not sweep on every start.
const SWEEP_EVERY: Duration = Duration::from_secs(3600);

/// Deletes what is past its retention, on every instance (a sweep is idempotent, and several at
/// once only find less to delete).
pub fn spawn_retention(state: Arc<AppState>) {
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(60)).await;
        loop {
            let keep = state.config.retention;
            match state
                .db
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

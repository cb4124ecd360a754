//! Refresh ahead (contract §6): tokens of companies whose jobs asked lately are renewed in the
//! background before they run out, so jobs at the top of the hour find a fresh token and make no
//! upstream call. Each renewal is claimed through the store (one instance renews each token) and
//! goes through the broker's single flight (a job asking meanwhile joins it).

use std::sync::Arc;
use std::time::Duration;

use schema::Database;

use crate::service::claim_pace::ClaimPace;
use crate::tokens::TokenBroker;

/// How often the store is asked for renewals that fell due: small beside the window they are
/// spread over.
const TICK: Duration = Duration::from_secs(1);

/// Renewals of one instance under way at once: a quarter of its upstream slots, so jobs keep the
/// rest.
pub fn parallel_renewals(upstream_concurrency: usize) -> usize {
    (upstream_concurrency / 4).max(1)
}

pub fn spawn(db: Database, broker: Arc<TokenBroker>, keep_warm: Duration, parallel: usize) {
    let keep_warm = chrono::Duration::from_std(keep_warm).unwrap_or(chrono::Duration::hours(24));
    // A claimed renewal that did not happen (a failure, a crash) falls due again after this.
    let hold = schema::tokens::lease_for(broker.deadline()) * 2;
    let mut pace = ClaimPace::new(parallel, TICK);
    tokio::spawn(async move {
        loop {
            let free = pace.next_look().await;
            let due = match db
                .run(move |conn| schema::renewals::claim_due(conn, keep_warm, hold, free))
                .await
            {
                Ok(due) => due,
                Err(e) => {
                    tracing::warn!(error = %e, "refresh ahead could not claim renewals; retrying next tick");
                    pace.failed();
                    continue;
                }
            };
            pace.claimed(due.len(), free);
            for company in due {
                let Some(permit) = pace.slot().await else {
                    return;
                };
                let broker = broker.clone();
                tokio::spawn(async move {
                    // Failures are logged and recorded by the broker like a job's; the renewal
                    // falls due again after its hold.
                    let _ = broker.renew(&company).await;
                    drop(permit);
                });
            }
        }
    });
}

//! The pace of a background worker that claims due work from the store (health checks, refresh
//! ahead) and runs at most N items at once. It looks once a tick while little is due; after a look
//! that filled every free slot it looks again as soon as one item ends, so a backlog goes at the
//! pace of the slots rather than one batch a tick. The first look is at once: what fell due while
//! the instance was down starts without waiting a tick (30 s for health checks).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub struct ClaimPace {
    running: Arc<Semaphore>,
    tick: Duration,
    more_due: bool,
}

impl ClaimPace {
    pub fn new(parallel: usize, tick: Duration) -> Self {
        ClaimPace {
            running: Arc::new(Semaphore::new(parallel.max(1))),
            tick,
            more_due: true,
        }
    }

    /// Waits until the next look is worth making and says how many items it may claim (at least
    /// one).
    pub async fn next_look(&mut self) -> i64 {
        if !self.more_due {
            tokio::time::sleep(self.tick).await;
        }
        if self.running.available_permits() == 0 {
            // The semaphore is never closed: the worker owns it.
            if let Ok(freed) = self.running.clone().acquire_owned().await {
                drop(freed);
            }
        }
        self.running.available_permits().max(1) as i64
    }

    /// What the look found: as many as it asked for means more may be due at once.
    pub fn claimed(&mut self, found: usize, asked: i64) {
        self.more_due = found as i64 >= asked;
    }

    /// A look that failed: try again a tick later.
    pub fn failed(&mut self) {
        self.more_due = false;
    }

    /// One slot for one claimed item, held while it runs.
    pub async fn slot(&self) -> Option<OwnedSemaphorePermit> {
        self.running.clone().acquire_owned().await.ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_first_look_and_one_after_a_full_look_are_at_once_a_short_one_waits_a_tick() {
        let tick = Duration::from_secs(30);
        let mut pace = ClaimPace::new(2, tick);
        let started = tokio::time::Instant::now();
        assert_eq!(pace.next_look().await, 2);
        assert_eq!(
            started.elapsed(),
            Duration::ZERO,
            "the first look is at once"
        );
        pace.claimed(2, 2);
        let (a, b) = (pace.slot().await.unwrap(), pace.slot().await.unwrap());
        let release = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            drop(a);
        });
        let before = tokio::time::Instant::now();
        assert_eq!(pace.next_look().await, 1, "one slot came free");
        assert_eq!(
            before.elapsed(),
            Duration::from_secs(1),
            "as soon as it did"
        );
        release.await.unwrap();
        drop(b);
        pace.claimed(0, 2);
        let before = tokio::time::Instant::now();
        pace.next_look().await;
        assert_eq!(before.elapsed(), tick, "nothing more due: a tick later");
    }
}

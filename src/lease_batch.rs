//! Refresh leases asked for at about the same time are taken together, by one transaction of a
//! few statements (`schema::tokens::begin_refresh_batch`) instead of one transaction each. In a
//! burst on PostgreSQL — a hundred companies' first callers at once — the single leases queued
//! for the pool's connections, each crossing the network five times, and ChannelAdvisor was asked
//! only after up to ~80 ms. Like SQLite's group commit: whoever finds no batch being taken starts
//! one on a blocking thread, which takes everything queued meanwhile until the queue is empty.

use std::sync::{Arc, Mutex};

use schema::tokens::{Begin, BeginRequest};
use schema::{Database, KeyRing, StoreError};
use tokio::sync::oneshot;

type Answer = oneshot::Sender<Result<Begin, StoreError>>;

#[derive(Default)]
struct Queue {
    waiting: Vec<(BeginRequest, Answer)>,
    /// A blocking thread is taking the queued leases.
    taking: bool,
}

#[derive(Default)]
pub struct LeaseBatches {
    queue: Mutex<Queue>,
}

impl LeaseBatches {
    /// `begin_refresh` for one company, in the next batch.
    pub async fn begin(
        self: &Arc<Self>,
        db: &Database,
        keys: &Arc<KeyRing>,
        req: BeginRequest,
    ) -> Result<Begin, StoreError> {
        let (answer, answered) = oneshot::channel();
        let start = {
            let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
            queue.waiting.push((req, answer));
            !std::mem::replace(&mut queue.taking, true)
        };
        if start {
            let (batches, db, keys) = (self.clone(), db.clone(), keys.clone());
            tokio::task::spawn_blocking(move || batches.take_all(&db, &keys));
        }
        // A dropped answer (a panic while taking) is an error, never a hang.
        answered
            .await
            .map_err(|_| StoreError::Worker("the lease batch was not taken".into()))?
    }

    fn take_all(&self, db: &Database, keys: &KeyRing) {
        let _stop = StopTaking(self);
        loop {
            let batch = {
                let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
                if queue.waiting.is_empty() {
                    queue.taking = false;
                    return;
                }
                std::mem::take(&mut queue.waiting)
            };
            let (reqs, answers): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
            let begins = schema::pool::with_retry(|| {
                let mut conn = db.get()?;
                schema::tokens::begin_refresh_batch(&mut conn, keys, &reqs)
            });
            match begins {
                Ok(begins) => {
                    for (answer, begin) in answers.into_iter().zip(begins) {
                        let _ = answer.send(Ok(begin));
                    }
                }
                Err(e) => {
                    let message = e.to_string();
                    for answer in answers {
                        let _ = answer.send(Err(StoreError::Worker(message.clone())));
                    }
                }
            }
        }
    }
}

/// Lets the next caller start a batch if taking this one panicked.
struct StopTaking<'a>(&'a LeaseBatches);

impl Drop for StopTaking<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let mut queue = self.0.queue.lock().unwrap_or_else(|p| p.into_inner());
            queue.taking = false;
            // Their answers dropped: errors for the callers, not a wait for a batch never taken.
            queue.waiting.clear();
        }
    }
}

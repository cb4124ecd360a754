//! The token broker's writes (refresh leases and outcomes) as group commits on SQLite: writes
//! that arrive while a group is being written share the next transaction, each in a savepoint
//! of its own, so one that fails leaves the others standing. SQLite takes one writer at a time,
//! so a refresh burst's leases and outcomes, one transaction each, would queue for the lock one
//! by one behind ChannelAdvisor's own latency (`docs/performance.md`). PostgreSQL writes run in
//! parallel and are not grouped.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use diesel::Connection;
use tokio::sync::oneshot;

use crate::pool::{with_retry, write_tx, AnyConnection, Backend, Database};
use crate::visibility::{pending_visible, set_pending_visible, Unsettled, SETTLE};
use crate::StoreError;

/// Runs one write inside the group's transaction; what it returns hands the result over once
/// the group's commit has succeeded (`Some(commit time)`) or failed (`None`).
type Job = Box<dyn FnOnce(&mut AnyConnection) -> Deliver + Send>;
type Deliver = Box<dyn FnOnce(Option<Instant>) + Send>;

enum Retry {
    Again(StoreError),
    Not(StoreError),
}

#[derive(Default)]
pub struct Group {
    queue: Mutex<Queue>,
}

#[derive(Default)]
struct Queue {
    jobs: Vec<Job>,
    /// A blocking thread is draining the queue.
    flushing: bool,
}

impl Database {
    /// A write transaction that settles like `run`; grouped with others that arrive meanwhile on
    /// SQLite. A write that lost a race, or whose group did not commit, is tried again (a few
    /// times): what it writes — a rotated refresh token — may exist nowhere else.
    pub async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Fn(&mut AnyConnection) -> Result<T, StoreError> + Send + Sync + 'static,
    {
        if self.backend() != Backend::Sqlite {
            return self
                .run(move |conn| with_retry(|| write_tx(conn, &f)))
                .await;
        }
        let f = Arc::new(f);
        let mut tries = 0;
        loop {
            match self.write_grouped(f.clone()).await {
                Err(Retry::Again(e)) if tries < 8 => {
                    tries += 1;
                    tracing::debug!(error = %e, tries, "grouped write tried again");
                    tokio::time::sleep(Duration::from_millis(5 * tries)).await;
                }
                Err(Retry::Again(e) | Retry::Not(e)) => return Err(e),
                Ok(unsettled) => return unsettled.settled().await,
            }
        }
    }

    async fn write_grouped<T, F>(&self, f: Arc<F>) -> Result<Unsettled<T>, Retry>
    where
        T: Send + 'static,
        F: Fn(&mut AnyConnection) -> Result<T, StoreError> + Send + Sync + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |conn| {
            let group_visible = pending_visible();
            set_pending_visible(false);
            let result = conn.transaction(|conn| f(conn));
            let visible = pending_visible();
            set_pending_visible(group_visible || visible);
            Box::new(move |committed: Option<Instant>| {
                let result = match (result, committed) {
                    (Ok(value), Some(at)) => Ok(Unsettled {
                        value,
                        settles_at: visible.then_some(at + SETTLE),
                    }),
                    (Ok(_), None) => Err(Retry::Again(StoreError::Worker(
                        "the grouped write transaction did not commit".into(),
                    ))),
                    (Err(e), _) if e.is_retryable() => Err(Retry::Again(e)),
                    (Err(e), _) => Err(Retry::Not(e)),
                };
                let _ = tx.send(result);
            })
        });
        let start = {
            let mut queue = self.group().queue.lock().unwrap_or_else(|p| p.into_inner());
            queue.jobs.push(job);
            !std::mem::replace(&mut queue.flushing, true)
        };
        if start {
            let db = self.clone();
            tokio::task::spawn_blocking(move || db.flush_groups());
        }
        // A dropped job (a panic) drops its sender: an error, never a hang.
        rx.await
            .map_err(|_| Retry::Not(StoreError::Worker("the grouped write was not run".into())))?
    }

    fn flush_groups(&self) {
        let _done = RestartAfterPanic(self);
        loop {
            let jobs = {
                let mut queue = self.group().queue.lock().unwrap_or_else(|p| p.into_inner());
                if queue.jobs.is_empty() {
                    queue.flushing = false;
                    return;
                }
                std::mem::take(&mut queue.jobs)
            };
            let Ok(mut conn) = self.get() else {
                tracing::warn!(
                    writes = jobs.len(),
                    "no database connection for grouped writes"
                );
                continue;
            };
            set_pending_visible(false);
            let mut deliveries = Vec::with_capacity(jobs.len());
            let outcome = write_tx(&mut conn, |conn| {
                deliveries.extend(jobs.into_iter().map(|job| job(conn)));
                Ok(())
            });
            if let Err(e) = &outcome {
                tracing::warn!(error = %e, writes = deliveries.len(), "grouped writes failed");
            }
            self.count_write();
            let committed = outcome.is_ok().then(Instant::now);
            for deliver in deliveries {
                deliver(committed);
            }
        }
    }
}

/// After a flusher ended by a panic (the writes of its group get errors: their deliveries are
/// dropped), the writes queued meanwhile get a new flusher rather than waiting for one that
/// never comes.
struct RestartAfterPanic<'a>(&'a Database);

impl Drop for RestartAfterPanic<'_> {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let mut queue = self
            .0
            .group()
            .queue
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if queue.jobs.is_empty() {
            queue.flushing = false;
        } else {
            let db = self.0.clone();
            tokio::task::spawn_blocking(move || db.flush_groups());
        }
    }
}

#[cfg(test)]
mod tests {
    use diesel::RunQueryDsl;

    use super::*;

    /// A burst of writes lands in far fewer transactions than writes, every write that succeeds
    /// is stored, one that fails is refused alone, and a write that panics fails only its group.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_burst_shares_transactions_and_a_failure_stays_its_own() {
        let dir = tempfile::TempDir::new().unwrap();
        let db = crate::pool::test_sqlite(dir.path());
        db.run(|conn| {
            diesel::sql_query("CREATE TABLE t (id INTEGER PRIMARY KEY)").execute(conn)?;
            Ok(())
        })
        .await
        .unwrap();
        let writes_before = db.writes();
        let writes: Vec<_> = (0..200)
            .map(|i| {
                let db = db.clone();
                // Write 100 repeats the id of write 99: its own savepoint fails, no other.
                let id = if i == 100 { 99 } else { i };
                tokio::spawn(async move {
                    db.write(move |conn| {
                        diesel::sql_query(format!("INSERT INTO t (id) VALUES ({id})"))
                            .execute(conn)?;
                        Ok(())
                    })
                    .await
                })
            })
            .collect();
        let mut failed = 0;
        for w in writes {
            failed += usize::from(w.await.unwrap().is_err());
        }
        let groups = db.writes() - writes_before;
        assert_eq!(failed, 1);
        #[derive(diesel::QueryableByName)]
        struct Count {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        let rows = db
            .run(|conn| Ok(diesel::sql_query("SELECT COUNT(*) AS n FROM t").load::<Count>(conn)?))
            .await
            .unwrap();
        assert_eq!(rows[0].n, 199);
        assert!(groups < 100, "200 writes in {groups} transactions");

        let panicking = tokio::spawn({
            let db = db.clone();
            async move {
                db.write(|_conn| -> Result<(), StoreError> {
                    std::thread::sleep(std::time::Duration::from_millis(100));
                    panic!("a write that panics")
                })
                .await
            }
        });
        // Queued while the panicking group runs: the next group.
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
        let behind: Vec<_> = (0..5)
            .map(|_| {
                let db = db.clone();
                tokio::spawn(async move { db.write(|_conn| Ok(7)).await })
            })
            .collect();
        assert!(panicking.await.unwrap().is_err());
        for write in behind {
            assert_eq!(write.await.unwrap().unwrap(), 7);
        }
    }
}

//! Group commit on SQLite: write transactions that arrive while another is being written run
//! together in the next one. SQLite takes one writer at a time, so a burst of small writes (a
//! hundred token refreshes taking their leases at once) queued for the write lock one by one,
//! each with its own hop to a blocking thread, its own BEGIN and COMMIT; together they cost one.
//! Each write keeps a savepoint of its own, so one that fails leaves the others standing.
//! PostgreSQL writes run in parallel and are not grouped.

use std::sync::Mutex;

use diesel::Connection;
use tokio::sync::oneshot;

use crate::pool::{write_tx, AnyConnection, Backend, Database};
use crate::StoreError;

/// Runs one write inside the group's transaction; what it returns hands the result over once
/// the group's commit has succeeded (`true`) or failed (`false`).
type Job = Box<dyn FnOnce(&mut AnyConnection) -> Deliver + Send>;
type Deliver = Box<dyn FnOnce(bool) + Send>;

#[derive(Default)]
pub struct Group {
    state: Mutex<Queue>,
}

#[derive(Default)]
struct Queue {
    jobs: Vec<Job>,
    /// A blocking thread is draining the queue.
    flushing: bool,
}

impl Database {
    /// A write transaction, grouped with others that arrive meanwhile on SQLite.
    pub async fn write_grouped<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut AnyConnection) -> Result<T, StoreError> + Send + 'static,
    {
        if self.backend() != Backend::Sqlite {
            return self.run(move |conn| write_tx(conn, f)).await;
        }
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |conn| {
            let result = conn.transaction(f);
            Box::new(move |committed| {
                let result = match result {
                    Ok(_) if !committed => Err(StoreError::Worker(
                        "the grouped write transaction did not commit".into(),
                    )),
                    other => other,
                };
                let _ = tx.send(result);
            })
        });
        let start = {
            let mut queue = self.group().state.lock().unwrap_or_else(|p| p.into_inner());
            queue.jobs.push(job);
            !std::mem::replace(&mut queue.flushing, true)
        };
        if start {
            let db = self.clone();
            tokio::task::spawn_blocking(move || db.flush_groups());
        }
        // A dropped job (no connection, or a panic) drops its sender: an error, never a hang.
        rx.await
            .map_err(|_| StoreError::Worker("the grouped write was not run".into()))?
    }

    /// A short write on the calling thread, if it can run there at once: SQLite, a pooled
    /// connection idle and no group being written (whose lock it would wait for).
    /// `None` when it cannot; the caller then goes the usual way. A token refresh takes its
    /// lease like this the moment its first caller is read: handed to a blocking thread in a
    /// burst, the lease waited behind the burst for a share of the CPU, and with it the call
    /// to ChannelAdvisor and every caller of the company.
    pub fn try_write_here<T, F>(&self, f: F) -> Option<Result<T, StoreError>>
    where
        F: FnOnce(&mut AnyConnection) -> Result<T, StoreError>,
    {
        if self
            .group()
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .flushing
        {
            return None;
        }
        let mut conn = self.sqlite_connection_here()?;
        Some(write_tx(&mut conn, f))
    }

    fn flush_groups(&self) {
        let _done = ResetOnDrop(self);
        loop {
            let jobs = {
                let mut queue = self.group().state.lock().unwrap_or_else(|p| p.into_inner());
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
            let mut deliveries = Vec::with_capacity(jobs.len());
            let outcome = write_tx(&mut conn, |conn| {
                deliveries.extend(jobs.into_iter().map(|job| job(conn)));
                Ok(())
            });
            if let Err(e) = &outcome {
                tracing::warn!(error = %e, writes = deliveries.len(), "grouped writes failed");
            }
            for deliver in deliveries {
                deliver(outcome.is_ok());
            }
        }
    }
}

/// After a flusher ended by a panic (the writes of its group get errors: their deliveries are
/// dropped), the writes queued meanwhile get a new flusher rather than failing with it or waiting
/// for one that never comes.
struct ResetOnDrop<'a>(&'a Database);

impl Drop for ResetOnDrop<'_> {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let mut queue = self
            .0
            .group()
            .state
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
    /// is stored, and one that fails is refused alone.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_burst_shares_transactions_and_a_failure_stays_its_own() {
        let dir = tempfile::TempDir::new().unwrap();
        let db = Database::connect(
            &format!("sqlite://{}", dir.path().join("g.db").display()),
            4,
        )
        .unwrap();
        db.run(|conn| {
            diesel::sql_query("CREATE TABLE t (id INTEGER PRIMARY KEY)").execute(conn)?;
            Ok(())
        })
        .await
        .unwrap();
        let commits_before = crate::pool::local_commits();
        let writes: Vec<_> = (0..200)
            .map(|i| {
                let db = db.clone();
                // Write 100 repeats the id of write 99: its own savepoint fails, no other.
                let id = if i == 100 { 99 } else { i };
                tokio::spawn(async move {
                    db.write_grouped(move |conn| {
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
        let commits = crate::pool::local_commits() - commits_before;
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
        assert!(commits < 100, "200 writes in {commits} transactions");
    }

    /// A write that panics fails its own group; writes queued while it ran are still written.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writes_queued_behind_a_panicking_group_are_written() {
        let dir = tempfile::TempDir::new().unwrap();
        let db = Database::connect(
            &format!("sqlite://{}", dir.path().join("p.db").display()),
            4,
        )
        .unwrap();
        let panicking = tokio::spawn({
            let db = db.clone();
            async move {
                db.write_grouped(|_conn| -> Result<(), StoreError> {
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
                tokio::spawn(async move { db.write_grouped(|_conn| Ok(7)).await })
            })
            .collect();
        assert!(panicking.await.unwrap().is_err());
        for write in behind {
            assert_eq!(write.await.unwrap().unwrap(), 7);
        }
    }
}

//! Short-lived in-memory copies of hot reads (a company's cached access token, its connection
//! status). Connector jobs and ERP screens ask for the same company many times a second; each
//! answer read from the database would be most of that request's cost.
//!
//! Never serving anything older than a write that has answered is the store's one rule
//! (`schema::visibility`, with its proof sketch): every copy here carries the `Stamp` of its read
//! and is served only while the stamp `is_current`; callers that miss the memory together share
//! one read (`get_or_read`), and a caller is handed a shared read only if its stamp is
//! `usable_by` the moment the caller asked.

use std::future::Future;
use std::time::{Duration, Instant};

use schema::visibility::{Stamp, SETTLE};
use schema::Database;

use crate::fault::Fault;
use crate::tokens::flight::SingleFlight;

/// How long a read is reused: the store's settle time (`schema::visibility`).
pub const READ_WINDOW: Duration = SETTLE;

/// Values `V` by key; `E` is what a read fails with (the caller's own error type).
pub struct ReadCache<V, E = Fault> {
    db: Database,
    entries: moka::sync::Cache<String, (V, Stamp)>,
    /// Reads under way for `get_or_read`, by key.
    reading: SingleFlight<String, Result<(V, Stamp), E>>,
}

impl<V, E> ReadCache<V, E>
where
    V: Clone + Send + Sync + 'static,
    E: Clone + Send + Sync + 'static + From<Fault>,
{
    pub fn new(db: Database) -> Self {
        ReadCache {
            db,
            entries: moka::sync::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(READ_WINDOW)
                .build(),
            reading: SingleFlight::default(),
        }
    }

    /// Taken just before the database read whose result may be kept.
    pub fn stamp(&self) -> Stamp {
        Stamp::now(&self.db)
    }

    fn is_current(&self, stamp: &Stamp) -> bool {
        stamp.is_current(&self.db)
    }

    /// The value in memory, or else what `read` finds, kept for the next callers. Callers that
    /// miss together share one read: a screen polling many times a second must not send a herd
    /// to the database each time the memory lapses.
    pub async fn get_or_read<F, Fut>(&self, key: &str, read: F) -> Result<V, E>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<V, E>> + Send + 'static,
    {
        if let Some(value) = self.get(key) {
            return Ok(value);
        }
        let asked = Instant::now();
        // A read under way when this caller asked may have begun too long before; the next one
        // begins after the caller asked, so two rounds always end with an answer.
        for round in 1..=2 {
            let (db, entries, key) = (self.db.clone(), self.entries.clone(), key.to_string());
            let reading = read();
            let (value, read_at) = self
                .reading
                .run(key.clone(), move || async move {
                    let read_at = Stamp::now(&db);
                    let value = reading.await?;
                    if read_at.is_current(&db) {
                        entries.insert(key, (value.clone(), read_at));
                    }
                    Ok((value, read_at))
                })
                .await
                .unwrap_or_else(|| Err(Fault::Ended("the read ended without an answer").into()))?;
            if round == 2 || read_at.usable_by(asked) {
                return Ok(value);
            }
        }
        unreachable!("the second round returns")
    }

    pub fn get(&self, company: &str) -> Option<V> {
        let (value, stamp) = self.entries.get(company)?;
        self.is_current(&stamp).then_some(value)
    }

    /// Keeps what a read that began at `read` found, unless a write has committed since.
    pub fn put(&self, company: &str, value: V, read: Stamp) {
        if self.is_current(&read) {
            self.entries.insert(company.to_string(), (value, read));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use super::*;

    fn cache(dir: &tempfile::TempDir) -> Arc<ReadCache<usize>> {
        let url = format!("sqlite://{}", dir.path().join("cache.db").display());
        Arc::new(ReadCache::new(Database::connect(&url, 1).unwrap()))
    }

    /// Reads taking `took`, each answering its own number (1, 2, …).
    fn reader(
        reads: &Arc<AtomicUsize>,
        took: Duration,
    ) -> impl Fn() -> std::pin::Pin<Box<dyn Future<Output = Result<usize, Fault>> + Send>> {
        let reads = reads.clone();
        move || {
            let reads = reads.clone();
            Box::pin(async move {
                tokio::time::sleep(took).await;
                Ok(reads.fetch_add(1, Ordering::SeqCst) + 1)
            })
        }
    }

    /// Callers that miss together share one read, and the next caller is served from memory.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn callers_that_miss_together_share_one_read() {
        let dir = tempfile::TempDir::new().unwrap();
        let (cache, reads) = (cache(&dir), Arc::new(AtomicUsize::new(0)));
        let callers: Vec<_> = (0..10)
            .map(|_| {
                let (cache, read) = (cache.clone(), reader(&reads, Duration::from_millis(30)));
                tokio::spawn(async move { cache.get_or_read("c1", read).await.unwrap() })
            })
            .collect();
        for caller in callers {
            assert_eq!(caller.await.unwrap(), 1);
        }
        let again = cache.get_or_read("c1", reader(&reads, Duration::ZERO));
        assert_eq!(again.await.unwrap(), 1);
        assert_eq!(reads.load(Ordering::SeqCst), 1);
    }

    /// A caller that asks more than the window after a slow read began is not handed that read
    /// (a change that answered in between would be missing from it): it gets a read of its own.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_read_that_began_a_window_before_the_caller_asked_is_not_shared() {
        let dir = tempfile::TempDir::new().unwrap();
        let (cache, reads) = (cache(&dir), Arc::new(AtomicUsize::new(0)));
        let slow = reader(&reads, READ_WINDOW * 3);
        let first = {
            let cache = cache.clone();
            tokio::spawn(async move { cache.get_or_read("c1", slow).await.unwrap() })
        };
        tokio::time::sleep(READ_WINDOW + Duration::from_millis(50)).await;
        let late = cache
            .get_or_read("c1", reader(&reads, Duration::ZERO))
            .await
            .unwrap();
        assert_eq!(first.await.unwrap(), 1);
        assert_eq!(
            late, 2,
            "the late caller was handed the read from before it asked"
        );
    }
}

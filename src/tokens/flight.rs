//! One run of a piece of work per key at a time, shared by everyone who asks for the same key
//! meanwhile. The run is a spawned task, so it completes (and writes what it must) even when
//! every caller has gone; it leaves the map before its result is handed out, so a finished
//! result is never replayed to a later caller.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use futures_util::future::{BoxFuture, FutureExt, Shared};
use tracing::Instrument;

type Running<V> = Shared<BoxFuture<'static, Option<V>>>;

pub struct SingleFlight<K, V> {
    running: Arc<Mutex<HashMap<K, Running<V>>>>,
}

impl<K, V> Default for SingleFlight<K, V> {
    fn default() -> Self {
        SingleFlight {
            running: Arc::default(),
        }
    }
}

/// Takes a run out of the map when its task ends, by a panic too.
struct Leave<K: Eq + Hash, V> {
    running: Arc<Mutex<HashMap<K, Running<V>>>>,
    key: Option<K>,
}

impl<K: Eq + Hash, V> Drop for Leave<K, V> {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            self.running
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&key);
        }
    }
}

impl<K, V> SingleFlight<K, V>
where
    K: Eq + Hash + Clone + Send + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// The result of the run under way for `key`, or of a new one made by `start`. `None` when
    /// the run panicked.
    pub async fn run<F, Fut>(&self, key: K, start: F) -> Option<V>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = V> + Send + 'static,
    {
        let running = {
            let mut map = self.running.lock().unwrap_or_else(|p| p.into_inner());
            match map.get(&key) {
                Some(run) => run.clone(),
                None => {
                    let leave = Leave {
                        running: self.running.clone(),
                        key: Some(key.clone()),
                    };
                    let work = start();
                    // Inserted under the lock the task's `Leave` takes, so it cannot come after.
                    let task = tokio::spawn(
                        async move {
                            let _leave = leave;
                            work.await
                        }
                        .instrument(tracing::Span::current()),
                    );
                    let run = async move { task.await.ok() }.boxed().shared();
                    map.insert(key, run.clone());
                    run
                }
            }
        };
        running.await
    }

    #[cfg(test)]
    pub fn is_idle(&self) -> bool {
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    /// Callers of one key share one run; a run whose callers all left still completes and then
    /// is gone, so the next caller gets a new run, not a replay.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn callers_share_a_run_and_a_finished_run_is_never_replayed() {
        let flights: Arc<SingleFlight<&str, usize>> = Arc::default();
        let runs = Arc::new(AtomicUsize::new(0));
        let call = |flights: Arc<SingleFlight<&'static str, usize>>, runs: Arc<AtomicUsize>| async move {
            flights
                .run("k", || async move {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    runs.fetch_add(1, Ordering::SeqCst) + 1
                })
                .await
        };
        let together: Vec<_> = (0..10)
            .map(|_| tokio::spawn(call(flights.clone(), runs.clone())))
            .collect();
        for c in together {
            assert_eq!(c.await.unwrap(), Some(1));
        }
        let left = tokio::time::timeout(
            Duration::from_millis(20),
            call(flights.clone(), runs.clone()),
        )
        .await;
        assert!(left.is_err(), "the caller left");
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            runs.load(Ordering::SeqCst),
            2,
            "the abandoned run completed"
        );
        assert!(flights.is_idle());
        assert_eq!(call(flights.clone(), runs).await, Some(3));
    }
}

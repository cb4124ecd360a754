//! Store calls that arrive together run together: one call of the store's batch function (a
//! few statements, whatever the number of requests) for everything queued meanwhile, instead of
//! one transaction or round trip each. In a burst on PostgreSQL — a hundred companies' first
//! callers at once — single refresh leases queued for the pool's connections, each crossing the
//! network five times, and ChannelAdvisor was asked only after up to ~80 ms. Like SQLite's group
//! commit: whoever finds no batch running starts one on a blocking thread, which takes everything
//! queued until the queue is empty.

use std::sync::{Arc, Mutex};

use schema::{AnyConnection, Database, StoreError};
use tokio::sync::oneshot;

/// Answers a batch of requests, one answer per request, in their order.
pub type Work<R, A> =
    Box<dyn Fn(&mut AnyConnection, &[R]) -> Result<Vec<A>, StoreError> + Send + Sync>;

struct Queue<R, A> {
    waiting: Vec<(R, oneshot::Sender<Result<A, StoreError>>)>,
    /// A blocking thread is running the queued requests.
    running: bool,
}

pub struct Batches<R, A> {
    db: Database,
    work: Work<R, A>,
    queue: Mutex<Queue<R, A>>,
}

impl<R: Send + 'static, A: Send + 'static> Batches<R, A> {
    pub fn new(db: Database, work: Work<R, A>) -> Arc<Self> {
        Arc::new(Batches {
            db,
            work,
            queue: Mutex::new(Queue {
                waiting: Vec::new(),
                running: false,
            }),
        })
    }

    /// The answer to one request, from the next batch.
    pub async fn call(self: &Arc<Self>, req: R) -> Result<A, StoreError> {
        let (answer, answered) = oneshot::channel();
        let start = {
            let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
            queue.waiting.push((req, answer));
            !std::mem::replace(&mut queue.running, true)
        };
        if start {
            let batches = self.clone();
            tokio::task::spawn_blocking(move || batches.run_all());
        }
        // A dropped answer (a panic in its batch) is an error, never a hang.
        answered
            .await
            .map_err(|_| StoreError::Worker("the batched store call was not run".into()))?
    }

    fn run_all(self: Arc<Self>) {
        let _next = RunOnAfterPanic(self.clone());
        loop {
            let batch = {
                let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
                if queue.waiting.is_empty() {
                    queue.running = false;
                    return;
                }
                std::mem::take(&mut queue.waiting)
            };
            let (reqs, answers): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
            let results = schema::pool::with_retry(|| {
                let mut conn = self.db.get()?;
                (self.work)(&mut conn, &reqs)
            });
            match results {
                Ok(results) if results.len() == answers.len() => {
                    for (answer, result) in answers.into_iter().zip(results) {
                        let _ = answer.send(Ok(result));
                    }
                }
                Ok(_) => {
                    for answer in answers {
                        let _ = answer.send(Err(StoreError::Worker(
                            "a batch answered a different number of requests".into(),
                        )));
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

/// After a batch panicked (its callers get errors: their answers are dropped), the requests
/// queued meanwhile get a new run rather than waiting for one that never comes.
struct RunOnAfterPanic<R: Send + 'static, A: Send + 'static>(Arc<Batches<R, A>>);

impl<R: Send + 'static, A: Send + 'static> Drop for RunOnAfterPanic<R, A> {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let mut queue = self.0.queue.lock().unwrap_or_else(|p| p.into_inner());
        if queue.waiting.is_empty() {
            queue.running = false;
        } else {
            let batches = self.0.clone();
            tokio::task::spawn_blocking(move || batches.run_all());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn doubling(runs: Arc<AtomicUsize>) -> Work<u32, u32> {
        Box::new(move |_conn, reqs: &[u32]| {
            runs.fetch_add(1, Ordering::SeqCst);
            // Lets requests pile up behind a running batch, as a round trip does.
            std::thread::sleep(std::time::Duration::from_millis(2));
            if reqs.contains(&13) {
                std::thread::sleep(std::time::Duration::from_millis(100));
                panic!("thirteen");
            }
            Ok(reqs.iter().map(|r| r * 2).collect())
        })
    }

    /// Concurrent calls share far fewer runs than calls, each caller gets its own answer, and a
    /// batch that panics fails its callers while the calls queued behind it are still answered.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn calls_together_run_together_and_a_panic_fails_only_its_batch() {
        let dir = tempfile::TempDir::new().unwrap();
        let db = Database::connect(
            &format!("sqlite://{}", dir.path().join("b.db").display()),
            2,
        )
        .unwrap();
        let runs = Arc::new(AtomicUsize::new(0));
        let batches = Batches::new(db, doubling(runs.clone()));
        let calls: Vec<_> = (0..200u32)
            .filter(|n| *n != 13)
            .map(|n| {
                let batches = batches.clone();
                tokio::spawn(async move { (n, batches.call(n).await.unwrap()) })
            })
            .collect();
        for call in calls {
            let (n, doubled) = call.await.unwrap();
            assert_eq!(doubled, n * 2);
        }
        let runs_for_199 = runs.load(Ordering::SeqCst);
        assert!(runs_for_199 < 50, "{runs_for_199} runs for 199 calls");

        let panicking = tokio::spawn({
            let batches = batches.clone();
            async move { batches.call(13).await }
        });
        // Queued while the panicking batch runs.
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
        let behind: Vec<_> = (20..25u32)
            .map(|n| {
                let batches = batches.clone();
                tokio::spawn(async move { (n, batches.call(n).await) })
            })
            .collect();
        assert!(
            panicking.await.unwrap().is_err(),
            "the panicking batch fails its caller"
        );
        for call in behind {
            let (n, doubled) = call.await.unwrap();
            assert_eq!(
                doubled.unwrap(),
                n * 2,
                "calls queued behind it are answered"
            );
        }
    }
}

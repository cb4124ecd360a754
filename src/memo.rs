//! Short-lived in-memory copies of hot reads (a company's cached access token, its connection
//! status). Connector jobs and ERP screens ask for the same company many times a second; each
//! answer read from the database was most of that request's cost.
//!
//! Why this cannot serve stale data past what the contract allows:
//! - an entry is dropped once this process commits any write (`schema::pool::local_commits`), so a
//!   change made here is seen by the next read here;
//! - an entry is used for at most `WINDOW` after its read began, so a change made by another
//!   instance is seen here within `WINDOW`; a credentials save or delete, and a Test Connection
//!   that changed the state, answer only `WINDOW` after their commit (`settle`), so once they have
//!   answered no instance still hands out a token or a state from before them.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a read is reused.
pub const WINDOW: Duration = Duration::from_millis(100);

/// When a read began, in the two clocks an entry is checked against.
#[derive(Clone, Copy)]
pub struct Stamp {
    at: Instant,
    commits: u64,
}

impl Stamp {
    /// Taken just before the database read whose result will be remembered.
    pub fn now() -> Stamp {
        Stamp {
            at: Instant::now(),
            commits: schema::pool::local_commits(),
        }
    }

    /// Whether a caller that asked at `asked` may still be given what this read found: the read
    /// began at most `WINDOW` before it asked (see the module's rules).
    pub fn usable_by(&self, asked: Instant) -> bool {
        asked.saturating_duration_since(self.at) < WINDOW
    }

    fn is_current(&self) -> bool {
        self.at.elapsed() < WINDOW && self.commits == schema::pool::local_commits()
    }
}

pub struct Memo<V> {
    inner: Mutex<Entries<V>>,
}

struct Entries<V> {
    by_company: HashMap<String, (V, Stamp)>,
    /// Old entries are swept when the map grows past this.
    sweep_at: usize,
}

impl<V: Clone> Default for Memo<V> {
    fn default() -> Self {
        Memo {
            inner: Mutex::new(Entries {
                by_company: HashMap::new(),
                sweep_at: 1024,
            }),
        }
    }
}

impl<V: Clone> Memo<V> {
    pub fn get(&self, company: &str) -> Option<V> {
        let entries = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let (value, stamp) = entries.by_company.get(company)?;
        stamp.is_current().then(|| value.clone())
    }

    pub fn put(&self, company: &str, value: V, read: Stamp) {
        let mut entries = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if entries.by_company.len() >= entries.sweep_at {
            entries
                .by_company
                .retain(|_, (_, stamp)| stamp.is_current());
            entries.sweep_at = (entries.by_company.len() * 2).max(1024);
        }
        entries
            .by_company
            .insert(company.to_string(), (value, read));
    }
}

/// Waits until every instance has dropped what it read before a change committed at
/// `committed`; a request that made such a change answers only then.
pub async fn settle(committed: Instant) {
    tokio::time::sleep_until((committed + WINDOW).into()).await;
}

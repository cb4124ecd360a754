//! Short-lived in-memory copies of hot reads (a company's cached access token, its connection
//! status). Connector jobs and ERP screens ask for the same company many times a second; each
//! answer read from the database was most of that request's cost.
//!
//! The one rule — never serve anything older than a write that has answered — is kept here and
//! in the store, not by handlers:
//! - an entry is dropped once this instance commits any write (`Database::writes` moved since its
//!   read began), so a change made here is seen by the next read here;
//! - an entry lives `READ_WINDOW` from when its read began, and a store write that changes what a
//!   caller may be handed (credentials, state) returns only that long after its commit
//!   (`schema::pool::SETTLE`), so once it has answered no instance still holds a copy from
//!   before it.

use std::time::{Duration, Instant};

use schema::Database;

/// How long a read is reused; the store's settle time is the same span.
pub const READ_WINDOW: Duration = schema::pool::SETTLE;

/// When a read began, in the two clocks an entry is checked against.
#[derive(Clone, Copy)]
pub struct Stamp {
    at: Instant,
    writes: u64,
}

impl Stamp {
    /// Whether what the read found may be handed to a caller that asked at `asked`: the read
    /// began at most the window before (so after any change that had answered by then).
    pub fn usable_by(&self, asked: Instant) -> bool {
        asked.saturating_duration_since(self.at) < READ_WINDOW
    }
}

pub struct ReadCache<V> {
    db: Database,
    entries: moka::sync::Cache<String, (V, Stamp)>,
}

impl<V: Clone + Send + Sync + 'static> ReadCache<V> {
    pub fn new(db: Database) -> Self {
        ReadCache {
            db,
            entries: moka::sync::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(READ_WINDOW)
                .build(),
        }
    }

    /// Taken just before the database read whose result may be kept.
    pub fn stamp(&self) -> Stamp {
        Stamp {
            at: Instant::now(),
            writes: self.db.writes(),
        }
    }

    fn is_current(&self, stamp: &Stamp) -> bool {
        stamp.at.elapsed() < READ_WINDOW && stamp.writes == self.db.writes()
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

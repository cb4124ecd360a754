//! The one consistency rule between instances, and its one owner: **a write that others must see
//! answers only `SETTLE` after its commit, and no read older than `SETTLE` is ever served from
//! memory.** (A commit-wait.)
//!
//! Why that is enough (every instance shares one database; each may keep a read in memory):
//! 1. A caller is answered for a visible change at `c + SETTLE`, where `c` is its commit
//!    (`Database::run` waits; `Unsettled` hands the wait to a caller that shares the work).
//! 2. Any read an instance serves from memory began at some `r` with `now - r < SETTLE`
//!    (`Stamp::usable_by`, `Stamp::is_current`).
//! 3. So a read served to anyone who asks after the answer, at `t ≥ c + SETTLE`, began at
//!    `r > t - SETTLE ≥ c`: after the commit, so it saw the change. An instance's own commits
//!    also drop its copies at once (`Stamp::is_current` compares the write count), so a change
//!    made here is seen here without waiting.
//!
//! What a "visible change" is — one a caller must never be handed the old view of after it
//! answered (credentials, the connection state, a token's invalidation) — is marked by the store
//! code that writes it (`mark_visible_change`); other writes (audit, leases, claims) answer at
//! once. The figures that depend on the rule (cached tokens and status reads from memory) are in
//! docs/performance.md; the proof sketch is repeated in docs/architecture.md.

use std::cell::Cell;
use std::time::{Duration, Instant};

use crate::pool::Database;

/// How long a read may be served from memory, and how long after its commit a visible change
/// answers.
pub const SETTLE: Duration = Duration::from_millis(100);

// ---- the write side ----

/// What the store code of one `Database::run` committed, handed from `write_tx` on the blocking
/// thread back to `run`.
#[derive(Default, Clone, Copy)]
pub(crate) struct Commits {
    pub(crate) count: u64,
    /// When the last commit holding a visible change was made.
    visible_at: Option<Instant>,
    /// The transaction under way holds a visible change.
    pending_visible: bool,
}

impl Commits {
    /// When the change these commits made is seen by every instance (`None`: nothing to wait for).
    pub(crate) fn settles_at(&self) -> Option<Instant> {
        self.visible_at.map(|at| at + SETTLE)
    }
}

thread_local! {
    static COMMITS: Cell<Commits> = Cell::new(Commits::default());
}

/// Called inside a write transaction that changes what a read cache may hold about a company —
/// its credentials, its state — in a way a caller must never be handed the old view of after
/// the change answered: its `Database::run` then settles before it returns.
pub fn mark_visible_change() {
    COMMITS.set(Commits {
        pending_visible: true,
        ..COMMITS.get()
    });
}

/// Starts counting the commits of one `Database::run` on this (blocking) thread.
pub(crate) fn begin() {
    COMMITS.set(Commits::default());
}

/// What the `Database::run` under way committed.
pub(crate) fn end() -> Commits {
    COMMITS.take()
}

pub(crate) fn committed() {
    let c = COMMITS.get();
    COMMITS.set(Commits {
        count: c.count + 1,
        visible_at: if c.pending_visible {
            Some(Instant::now())
        } else {
            c.visible_at
        },
        pending_visible: false,
    });
}

/// A transaction that did not commit leaves no visible change behind.
pub(crate) fn rolled_back() {
    COMMITS.set(Commits {
        pending_visible: false,
        ..COMMITS.get()
    });
}

/// Whether the transaction under way on this thread holds a visible change (group commit keeps
/// it per write).
pub(crate) fn pending_visible() -> bool {
    COMMITS.get().pending_visible
}

pub(crate) fn set_pending_visible(pending: bool) {
    COMMITS.set(Commits {
        pending_visible: pending,
        ..COMMITS.get()
    });
}

/// A store result whose visible change (if any) others may still be serving the old view of
/// until `settles_at`.
#[must_use = "answer only once it has settled"]
#[derive(Debug, Clone)]
pub struct Unsettled<T> {
    pub value: T,
    pub settles_at: Option<Instant>,
}

impl<T> Unsettled<T> {
    pub async fn settled(self) -> Result<T, crate::StoreError> {
        settle(self.settles_at).await;
        Ok(self.value)
    }
}

/// Waits until a change committed with `settles_at` is seen by every instance.
pub async fn settle(settles_at: Option<Instant>) {
    if let Some(at) = settles_at {
        tokio::time::sleep_until(at.into()).await;
    }
}

// ---- the read side ----

/// When a read began, in the two clocks a copy of it is checked against: the time, and this
/// instance's count of committed writes.
#[derive(Clone, Copy, Debug)]
pub struct Stamp {
    at: Instant,
    writes: u64,
}

impl Stamp {
    /// Taken just before a database read whose result may be kept in memory.
    pub fn now(db: &Database) -> Stamp {
        Stamp {
            at: Instant::now(),
            writes: db.writes(),
        }
    }

    /// Whether what the read found may be handed to a caller that asked at `asked`: the read
    /// began less than `SETTLE` before, so after any change that had answered by then.
    pub fn usable_by(&self, asked: Instant) -> bool {
        asked.saturating_duration_since(self.at) < SETTLE
    }

    /// Whether a copy of the read may still be served: younger than `SETTLE`, and no write has
    /// committed on this instance since it began.
    pub fn is_current(&self, db: &Database) -> bool {
        self.at.elapsed() < SETTLE && self.writes == db.writes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rule's arithmetic: a read that began before a commit is never usable by a caller who
    /// asks once that commit has answered (`SETTLE` after it).
    #[test]
    fn a_read_from_before_a_commit_is_not_usable_after_its_answer() {
        let dir = tempfile::TempDir::new().unwrap();
        let url = format!("sqlite://{}", dir.path().join("v.db").display());
        let db = Database::connect(&url, 1).unwrap();
        let read = Stamp::now(&db);
        let commit = Instant::now();
        let answered = commit + SETTLE;
        assert!(!read.usable_by(answered));
        assert!(read.usable_by(commit));
        // A commit on this instance makes every copy from before it stale at once.
        db.count_write();
        assert!(!read.is_current(&db));
    }
}

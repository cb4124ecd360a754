use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use diesel::connection::{AnsiTransactionManager, SimpleConnection, TransactionManager};
use diesel::r2d2::{ManageConnection, Pool, PooledConnection, R2D2Connection};
use diesel::{Connection, PgConnection, SqliteConnection};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};
use tokio::sync::Semaphore;

use crate::error::StoreError;
use crate::visibility::Unsettled;

const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations/sqlite");
const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations/postgres");

/// One connection type for both backends; queries written once run on either.
#[derive(diesel::MultiConnection)]
pub enum AnyConnection {
    Postgresql(PgConnection),
    Sqlite(SqliteConnection),
}

/// `$body` with `$c` bound to the backend's own connection, for the statements run on every
/// token request and status read: through `AnyConnection` diesel writes out a statement's SQL on
/// each run to find it in its statement cache, and prepares an `UPDATE` anew, while on the
/// backend's own connection a statement of fixed shape is found by its type.
macro_rules! on_backend {
    ($conn:expr, |$c:ident| $body:expr) => {
        match $conn {
            $crate::pool::AnyConnection::Postgresql($c) => $body,
            $crate::pool::AnyConnection::Sqlite($c) => $body,
        }
    };
}
pub(crate) use on_backend;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// Opens connections of the backend chosen from the URL. We do not use the MultiConnection's own
/// `establish`, which tries every backend in turn: with PostgreSQL down it would fall through to
/// SQLite and create a stray file named after the URL.
#[derive(Debug)]
pub struct Manager {
    backend: Backend,
    target: String,
}

impl Manager {
    fn for_url(url: &str) -> Result<Manager, StoreError> {
        let (backend, target) =
            if url.starts_with("postgres://") || url.starts_with("postgresql://") {
                (Backend::Postgres, url.to_string())
            } else if let Some(path) = url.strip_prefix("sqlite://") {
                (Backend::Sqlite, path.to_string())
            } else if url.contains("://") {
                return Err(StoreError::UnsupportedUrl(redact_url(url)));
            } else {
                (Backend::Sqlite, url.to_string())
            };
        Ok(Manager { backend, target })
    }
}

/// Opens one connection and drops it: the pool would retry a failing connection until its
/// timeout, so a database that cannot be opened at all (a damaged SQLite file, a refused login)
/// is reported at once, with the database's own words.
pub fn probe(url: &str) -> Result<(), StoreError> {
    Manager::for_url(url)?.connect().map(drop)
}

/// Initialises OpenSSL without its exit handler; call before any PostgreSQL connection. libpq
/// would initialise it with one, and that handler frees OpenSSL's state at process exit while
/// the pool's threads may still be using a TLS connection (a process that ended this way crashed
/// after its work was done).
pub fn init_tls() {
    openssl_sys::init();
}

impl ManageConnection for Manager {
    type Connection = AnyConnection;
    type Error = StoreError;

    fn connect(&self) -> Result<AnyConnection, StoreError> {
        match self.backend {
            Backend::Postgres => Ok(AnyConnection::Postgresql({
                init_tls();
                PgConnection::establish(&self.target)?
            })),
            Backend::Sqlite => {
                let mut conn = SqliteConnection::establish(&self.target)?;
                // WAL lets readers run beside the one writer; the busy timeout makes writers wait
                // for each other instead of failing; foreign keys are off by default in SQLite.
                // A 1 MiB page cache per connection (SQLite's default is 2 MiB): the pool's
                // connections each fill theirs, the operating system caches the file anyway, and
                // the hot rows of a busy instance fit (peak memory, `docs/performance.md`).
                conn.batch_execute(
                    "PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 10000; \
                     PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL; \
                     PRAGMA cache_size = -1024;",
                )
                .map_err(StoreError::Query)?;
                Ok(AnyConnection::Sqlite(conn))
            }
        }
    }

    fn is_valid(&self, conn: &mut AnyConnection) -> Result<(), StoreError> {
        conn.ping().map_err(StoreError::Query)
    }

    fn has_broken(&self, conn: &mut AnyConnection) -> bool {
        conn.is_broken()
    }
}

pub type Conn = PooledConnection<Manager>;

/// The connection pool plus what the service needs to know about the backend behind it.
#[derive(Clone)]
pub struct Database {
    pool: Pool<Manager>,
    backend: Backend,
    /// One permit per pooled connection: callers wait here, asynchronously, instead of parking a
    /// blocking thread on the pool's condition variable (which cost a thread switch per wait).
    permits: Arc<Semaphore>,
    /// Write transactions this handle has committed (see `writes`).
    writes: Arc<AtomicU64>,
    group: Arc<crate::grouped::Group>,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database")
            .field("backend", &self.backend)
            .finish()
    }
}

impl Database {
    /// `sqlite://PATH` (or a bare path) or `postgres://…` / `postgresql://…`.
    pub fn connect(url: &str, max_size: u32) -> Result<Self, StoreError> {
        let Manager { backend, target } = Manager::for_url(url)?;
        let pool = Pool::builder()
            .max_size(max_size)
            // PostgreSQL connections are kept open, all of them: one opened in a burst costs a
            // TCP and TLS handshake and a login while every request behind it waits.
            .min_idle(Some(match backend {
                Backend::Postgres => max_size,
                Backend::Sqlite => 0,
            }))
            .connection_timeout(Duration::from_secs(10))
            // No ping query on every checkout: it doubled the statements of a cached-token read.
            // A broken connection is detected by its failing query (`has_broken`) and replaced.
            .test_on_check_out(false)
            .build_unchecked(Manager { backend, target });
        Ok(Database {
            pool,
            backend,
            permits: Arc::new(Semaphore::new(max_size as usize)),
            writes: Arc::default(),
            group: Arc::default(),
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Write transactions committed through this handle's `run` so far. A read cache notes it
    /// before a read and drops what it read once it has moved: the entry may predate a write.
    pub fn writes(&self) -> u64 {
        self.writes.load(Ordering::Acquire)
    }

    pub(crate) fn count_write(&self) {
        self.writes.fetch_add(1, Ordering::AcqRel);
    }

    pub(crate) fn group(&self) -> &crate::grouped::Group {
        &self.group
    }

    pub fn get(&self) -> Result<Conn, StoreError> {
        self.pool.get().map_err(|e| StoreError::Pool(e.to_string()))
    }

    /// Runs store code on tokio's blocking pool: diesel is synchronous and must never stall the
    /// async executor. The caller's tracing span goes along so log lines keep their request id.
    ///
    /// When the code committed a change another instance may have cached a view of (see
    /// `visibility`), this returns only `SETTLE` after the commit: by then no instance still
    /// serves a read from before it, so no caller has to remember to wait.
    pub async fn run<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut AnyConnection) -> Result<T, StoreError> + Send + 'static,
    {
        self.run_unsettled(f).await?.settled().await
    }

    /// `run`, handing the wait for the settle to the caller: for work shared by several callers
    /// that must end (and stop being joined) at its commit, each caller then settling itself.
    pub async fn run_unsettled<T, F>(&self, f: F) -> Result<Unsettled<T>, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut AnyConnection) -> Result<T, StoreError> + Send + 'static,
    {
        let db = self.clone();
        let span = tracing::Span::current();
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| StoreError::Worker(e.to_string()))?;
        let (result, commits) = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            crate::visibility::begin();
            let result = span.in_scope(|| {
                let mut conn = db.get()?;
                f(&mut conn)
            });
            (result, crate::visibility::end())
        })
        .await
        .map_err(|e| StoreError::Worker(e.to_string()))?;
        if commits.count > 0 {
            self.writes.fetch_add(commits.count, Ordering::AcqRel);
        }
        Ok(Unsettled {
            value: result?,
            settles_at: commits.settles_at(),
        })
    }

    /// Readiness: a connection answers within `timeout` and no migration is pending.
    pub async fn check_ready(&self, timeout: Duration) -> Result<(), StoreError> {
        let db = self.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = db
                .pool
                .get_timeout(timeout)
                .map_err(|e| StoreError::Pool(e.to_string()))?;
            let pending = pending_migrations(&mut conn)?;
            if pending > 0 {
                return Err(StoreError::Migration(format!(
                    "{pending} migrations not applied"
                )));
            }
            Ok(())
        })
        .await
        .map_err(|e| StoreError::Worker(e.to_string()))?
    }

    /// Applies pending migrations; returns the names of the ones applied.
    pub fn migrate(&self) -> Result<Vec<String>, StoreError> {
        let mut conn = self.get()?;
        match &mut *conn {
            AnyConnection::Sqlite(c) => c
                .run_pending_migrations(SQLITE_MIGRATIONS)
                .map(|v| v.iter().map(|m| m.to_string()).collect())
                .map_err(|e| StoreError::Migration(e.to_string())),
            AnyConnection::Postgresql(c) => {
                // Instances of a rolling deploy start at once: one migrates while the others wait
                // on this lock, then find nothing pending (without it, two ran the same CREATE
                // TYPE/TABLE and one died on a duplicate key in the catalogue).
                c.batch_execute(&format!("SELECT pg_advisory_lock({MIGRATION_LOCK})"))
                    .map_err(StoreError::Query)?;
                let applied = c
                    .run_pending_migrations(POSTGRES_MIGRATIONS)
                    .map(|v| v.iter().map(|m| m.to_string()).collect());
                let unlocked = c
                    .batch_execute(&format!("SELECT pg_advisory_unlock({MIGRATION_LOCK})"))
                    .map_err(StoreError::Query);
                let applied = applied.map_err(|e| StoreError::Migration(e.to_string()))?;
                unlocked?;
                Ok(applied)
            }
        }
    }
}

/// A migrated SQLite database in `dir`, for the store's own tests.
#[cfg(test)]
pub(crate) fn test_sqlite(dir: &std::path::Path) -> Database {
    let db = Database::connect(&format!("sqlite://{}", dir.join("t.db").display()), 2)
        .unwrap_or_else(|e| panic!("test database: {e}"));
    db.migrate()
        .unwrap_or_else(|e| panic!("test migrations: {e}"));
    db
}

/// The advisory lock key held while PostgreSQL migrations run ("ca-conn" in ASCII).
const MIGRATION_LOCK: i64 = 0x0063_612d_636f_6e6e;

fn pending_migrations(conn: &mut AnyConnection) -> Result<usize, StoreError> {
    let pending = match conn {
        AnyConnection::Sqlite(c) => c.pending_migrations(SQLITE_MIGRATIONS).map(|v| v.len()),
        AnyConnection::Postgresql(c) => c.pending_migrations(POSTGRES_MIGRATIONS).map(|v| v.len()),
    };
    pending.map_err(|e| StoreError::Migration(e.to_string()))
}

/// One SQLite write transaction at a time in this process (see `write_tx`). Taken only on the
/// blocking pool, never on the async executor.
static SQLITE_WRITERS: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Woken by every transaction of this process that committed events (see `event_wake`).
static EVENT_WAKE: tokio::sync::Notify = tokio::sync::Notify::const_new();

thread_local! {
    /// The transaction under way on this thread wrote events (`outbox::emit`).
    static EVENTS_WRITTEN: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Wakes whoever follows the event log in this process (the web-hook worker, the live-events
/// reader) once a transaction that wrote events has committed, so no writer has to remember to.
/// Create the `Notified` and `enable` it before looking at the database, so no commit falls in
/// between. Other instances' events are found by each follower's own poll.
pub fn event_wake() -> &'static tokio::sync::Notify {
    &EVENT_WAKE
}

/// Called by `outbox::emit`, inside the transaction that writes the event.
pub(crate) fn event_written() {
    EVENTS_WRITTEN.set(true);
}

fn committed() {
    crate::visibility::committed();
    if EVENTS_WRITTEN.take() {
        EVENT_WAKE.notify_waiters();
    }
}

fn rolled_back() {
    crate::visibility::rolled_back();
    EVENTS_WRITTEN.set(false);
}

/// A write transaction. On SQLite it starts with `BEGIN IMMEDIATE` so the write lock is taken up
/// front: a deferred transaction that reads first and writes later cannot wait for the lock and
/// fails with "database is locked" under concurrent writers. PostgreSQL uses a plain transaction
/// and the callers take row locks where they read-then-write.
pub fn write_tx<T, F>(conn: &mut AnyConnection, f: F) -> Result<T, StoreError>
where
    F: FnOnce(&mut AnyConnection) -> Result<T, StoreError>,
{
    if let AnyConnection::Sqlite(c) = conn {
        let nested = AnsiTransactionManager::transaction_manager_status_mut(c)
            .transaction_depth()
            .is_ok_and(|depth| depth.is_some());
        // Writers of this process queue here, in order, rather than in SQLite's busy handler,
        // which polls with sleeps of up to 100 ms: under a burst of writes those sleeps, not the
        // writes, would be the waiting time. Writers in other processes still meet the busy
        // timeout.
        let _queue = (!nested).then(|| SQLITE_WRITERS.lock().unwrap_or_else(|p| p.into_inner()));
        match AnsiTransactionManager::begin_transaction_sql(c, "BEGIN IMMEDIATE") {
            // Inside a caller's transaction the lock is the caller's business: use a savepoint.
            Err(diesel::result::Error::AlreadyInTransaction) => {
                return conn.transaction(f).inspect(|_| committed())
            }
            other => other?,
        }
        return match f(conn) {
            Ok(value) => {
                <AnyConnection as Connection>::TransactionManager::commit_transaction(conn)?;
                committed();
                Ok(value)
            }
            Err(e) => {
                // The original error matters more than a failed rollback.
                let _ =
                    <AnyConnection as Connection>::TransactionManager::rollback_transaction(conn);
                rolled_back();
                Err(e)
            }
        };
    }
    conn.transaction(f)
        .inspect(|_| committed())
        .inspect_err(|_| rolled_back())
}

/// Retries a whole transaction a few times when it lost a race (see `StoreError::is_retryable`).
pub fn with_retry<T>(mut attempt: impl FnMut() -> Result<T, StoreError>) -> Result<T, StoreError> {
    let mut tries = 0;
    loop {
        match attempt() {
            Err(e) if e.is_retryable() && tries < 8 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(5 * tries));
            }
            other => return other,
        }
    }
}

/// A database URL fit for logs and errors: the password is replaced.
pub fn redact_url(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((userinfo, host)) => {
                let user = userinfo.split(':').next().unwrap_or("");
                format!("{scheme}://{user}:***@{host}")
            }
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

// Why the store reads single rows with `.load(…)` and `.into_iter().next()` rather than `.first()`:
// `.first()` binds `LIMIT ?`, and the bundled SQLite (built with STAT4) marks a statement whose
// planner looked at a bound LIMIT as expired whenever that variable is re-bound, so every call
// re-parsed and re-planned the query (a quarter of a cached-token request's time). Primary-key
// lookups return at most one row anyway.

#[cfg(test)]
mod tests {
    use diesel::sql_types::BigInt;
    use diesel::{QueryableByName, RunQueryDsl};

    use super::*;

    #[derive(QueryableByName)]
    struct Value {
        #[diesel(sql_type = BigInt)]
        v: i64,
    }

    #[derive(QueryableByName)]
    struct Mode {
        #[diesel(sql_type = diesel::sql_types::Text)]
        journal_mode: String,
    }

    /// Every pooled SQLite connection gets WAL, the busy timeout and foreign keys.
    #[test]
    fn every_sqlite_connection_is_configured() {
        let dir = tempfile::TempDir::new().unwrap();
        let db = Database::connect(
            &format!("sqlite://{}", dir.path().join("t.db").display()),
            3,
        )
        .unwrap();
        let held: Vec<Conn> = (0..3).map(|_| db.get().unwrap()).collect();
        for mut conn in held {
            let mode: Vec<Mode> = diesel::sql_query("PRAGMA journal_mode")
                .load(&mut *conn)
                .unwrap();
            assert_eq!(mode[0].journal_mode, "wal");
            let timeout: Vec<Value> =
                diesel::sql_query("SELECT timeout AS v FROM pragma_busy_timeout")
                    .load(&mut *conn)
                    .unwrap();
            assert_eq!(timeout[0].v, 10_000);
            let fk: Vec<Value> =
                diesel::sql_query("SELECT foreign_keys AS v FROM pragma_foreign_keys")
                    .load(&mut *conn)
                    .unwrap();
            assert_eq!(fk[0].v, 1);
        }
    }

    #[test]
    fn urls_choose_the_backend_and_passwords_stay_out_of_messages() {
        assert_eq!(
            Database::connect("sqlite:///tmp/x.db", 1)
                .unwrap()
                .backend(),
            Backend::Sqlite
        );
        assert_eq!(
            Database::connect("postgres://u:p@127.0.0.1:1/db", 1)
                .unwrap()
                .backend(),
            Backend::Postgres
        );
        let err = Database::connect("mysql://user:hunter2@h/db", 1)
            .unwrap_err()
            .to_string();
        assert!(!err.contains("hunter2"), "{err}");
        assert_eq!(
            redact_url("postgres://ca:s3cret@db:5432/x"),
            "postgres://ca:***@db:5432/x"
        );
    }
}

use thiserror::Error;

use crate::seal::SealError;

/// Errors of the store layer. Messages never contain secret values: sealed data is described by
/// company and field only.
#[derive(Debug, Error)]
pub enum StoreError {
    // With its causes: a stored value that does not parse says which and why only there.
    #[error("database error: {}", with_causes(.0))]
    Query(#[from] diesel::result::Error),
    #[error("database connection error: {0}")]
    Connection(#[from] diesel::ConnectionError),
    #[error("database pool error: {0}")]
    Pool(String),
    #[error("database migration error: {0}")]
    Migration(String),
    #[error("unsupported database url: {0}")]
    UnsupportedUrl(String),
    #[error(transparent)]
    Seal(#[from] SealError),
    #[error("not found")]
    NotFound,
    #[error("version conflict: current version is {current:?}")]
    VersionConflict { current: Option<i64> },
    #[error("database worker failed: {0}")]
    Worker(String),
}

impl StoreError {
    /// The database could not be reached for this statement (refused, or a connection lost in
    /// use), as opposed to a statement that failed: the caller should try again shortly.
    pub fn is_unavailable(&self) -> bool {
        use diesel::result::{DatabaseErrorKind, Error};
        match self {
            StoreError::Pool(_) | StoreError::Connection(_) => true,
            StoreError::Query(Error::DatabaseError(DatabaseErrorKind::ClosedConnection, _)) => true,
            StoreError::Query(Error::DatabaseError(_, info)) => [
                "server closed the connection",
                "SSL SYSCALL",
                "SSL error",
                "no connection to the server",
                "could not connect",
                "terminating connection",
                "connection to server",
            ]
            .iter()
            .any(|m| info.message().contains(m)),
            _ => false,
        }
    }

    /// Errors worth retrying the whole transaction for: lost races on insert (two first saves of
    /// one company), PostgreSQL serialization failures and SQLite lock contention past the timeout.
    pub fn is_retryable(&self) -> bool {
        use diesel::result::{DatabaseErrorKind, Error};
        match self {
            StoreError::Query(Error::DatabaseError(kind, info)) => {
                matches!(
                    kind,
                    DatabaseErrorKind::UniqueViolation | DatabaseErrorKind::SerializationFailure
                ) || info.message().contains("database is locked")
            }
            _ => false,
        }
    }
}

/// An error and the chain of its sources, as one line.
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut line = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        line.push_str(": ");
        line.push_str(&c.to_string());
        cause = c.source();
    }
    line
}

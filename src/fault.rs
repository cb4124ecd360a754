//! A failure inside the service itself: not the caller's input and not ChannelAdvisor's answer.
//! Services return it (inside their own error types); only `http` decides what a caller is told.

use std::sync::Arc;

use schema::StoreError;

#[derive(Debug, Clone, thiserror::Error)]
pub enum Fault {
    /// The store failed. Shared (`Arc`) because one failed read or flight answers every caller
    /// that joined it.
    #[error(transparent)]
    Store(Arc<StoreError>),
    /// Work shared by several callers ended without an answer (its task was cancelled).
    #[error("{0}")]
    Ended(&'static str),
    /// A value the service itself produced or stored does not hold (a bug, not an input).
    #[error("{0}")]
    Invalid(String),
}

impl From<StoreError> for Fault {
    fn from(e: StoreError) -> Self {
        Fault::Store(Arc::new(e))
    }
}

//! The store of ca-connector: diesel tables, the SQLite/PostgreSQL connection pool, embedded
//! migrations, sealed secrets (AES-256-GCM key ring) and every query and transaction the service
//! runs. Nothing here speaks HTTP; callers hand in parsed values and get typed records back.

pub mod audit;
pub mod companies;
pub mod connect;
pub mod connection;
pub mod credentials;
pub mod error;
pub mod events;
mod grouped;
pub mod keys;
pub mod outbox;
pub mod pool;
pub mod renewals;
pub mod retention;
pub mod schedule;
pub mod schema;
pub mod seal;
pub mod secrets;
pub mod tokens;
pub mod visibility;
pub mod webhooks;

pub use domain::{CompanyId, ConnectionState};
pub use error::StoreError;
pub use pool::{AnyConnection, Backend, Database};
pub use seal::{KeyRing, SealError};

//! Web-hooks (Standard Webhooks): subscription secrets and signatures (`signing`), which targets
//! may be called (`target`), and the delivery worker that drains the outbox (`worker`). The outbox
//! itself is written by the store (`schema::outbox`) in the transaction of each change.

pub mod signing;
pub mod target;
pub mod worker;

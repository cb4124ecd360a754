//! The values from ChannelAdvisor's Developer Console live in the `domain` crate (the store reads
//! and writes them too); re-exported here, where the code that sends them upstream looks.

pub use domain::credentials::*;

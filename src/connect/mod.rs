//! Connect to ChannelAdvisor (contract §10): start an attempt, finish it from the callback or a
//! pasted code, and the settings it needs.

pub mod flow;
pub mod settings;

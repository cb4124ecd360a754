//! Connect to ChannelAdvisor (contract §10): start an attempt, finish it from the callback or a
//! pasted code (its settings are with the others, `service::connect_settings`).

pub mod flow;

//! Everything that speaks ChannelAdvisor: the credential value types an admin pastes from the
//! Developer Console, the OAuth 2.0 token grant, the profiles probe, the error taxonomy of
//! Test Connection, and a ChannelAdvisor simulator (`ca-sim`) for demos, tests and benchmarks.
//! Nothing here touches the database.

pub mod credentials;

pub use credentials::{ApplicationId, CredentialError, ProfileId, RefreshToken, SharedSecret};

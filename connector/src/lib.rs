//! Everything that speaks ChannelAdvisor: the credential value types an admin pastes from the
//! Developer Console, the OAuth 2.0 refresh-token grant and the profiles probe (`client`), the
//! classified failures of Test Connection (`taxonomy`), the checks themselves (`check`), and,
//! with the `simulator` feature, a ChannelAdvisor simulator (`sim`, binary `ca-sim`) for demos,
//! tests and benchmarks. Nothing here touches the database; only the simulator uses actix-web.

pub mod access;
pub mod check;
pub mod client;
pub mod connect;
pub mod credentials;
pub mod result;
#[cfg(feature = "simulator")]
pub mod sim;
pub mod taxonomy;

pub use access::{Access, AccessInput, SoapCredentials, StoredAccess};
pub use check::{run_checks, CheckStatus, TestInput, TestOutcome};
pub use client::{ChannelAdvisorClient, Profile, TokenGrant};
pub use credentials::{
    AccountId, ApplicationId, AuthMethod, CredentialError, DeveloperKey, ProfileId, RefreshToken,
    SharedSecret, SoapPassword,
};
pub use result::{Outcome, TestResult};
pub use taxonomy::{ErrorCode, TestError};

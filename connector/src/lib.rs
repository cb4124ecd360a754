//! Everything that speaks ChannelAdvisor: the credential value types an admin pastes from the
//! Developer Console, the OAuth 2.0 refresh-token grant and the profiles probe (`client`), the
//! checks of Test Connection (`check`; their result and its error taxonomy live in `domain`), and,
//! with the `simulator` feature, a ChannelAdvisor simulator (`sim`, binary `ca-sim`) for demos,
//! tests and benchmarks. Nothing here touches the database; only the simulator uses actix-web.

pub mod access;
pub mod check;
pub mod client;
pub mod connect;
pub mod credentials;
#[cfg(feature = "simulator")]
pub mod sim;

pub use access::{Access, AccessInput, SoapCredentials, StoredAccess};
pub use check::{run_checks, TestInput, TestOutcome};
pub use client::{ChannelAdvisorClient, Profile, TokenGrant};
pub use credentials::{
    AccountId, ApplicationId, AuthMethod, CredentialError, DeveloperKey, ProfileId, RefreshToken,
    SharedSecret, SoapPassword,
};
pub use domain::test_result::CheckStatus;
// The result of a test and its error taxonomy are the product's model (`domain`): the store and
// the HTTP layer use them without depending on this crate.
pub use domain::taxonomy;
pub use domain::test_result::{Check, CheckName, Outcome, TestResult};
pub use domain::{ErrorCode, TestError};

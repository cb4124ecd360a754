//! The values of the product's domain, shared by every crate: the company id, the values an admin
//! pastes from ChannelAdvisor's Developer Console, the connection state, and Test Connection's
//! result with its error taxonomy (contract §4). Each is parsed once,
//! where it enters (a request, a stored row), and carried typed from there; with the `diesel`
//! feature each maps to its column and a stored value that does not parse is a read error, never
//! a silent default.

pub mod company;
pub mod credentials;
#[cfg(feature = "diesel")]
mod sql;
pub mod state;
pub mod taxonomy;
pub mod test_result;
pub mod values;

pub use company::CompanyId;
pub use credentials::{
    AccountId, ApplicationId, AuthMethod, CredentialError, DeveloperKey, ProfileId, RefreshToken,
    SharedSecret, SoapPassword,
};
pub use state::ConnectionState;
pub use taxonomy::{ErrorCode, TestError};
pub use test_result::{Outcome, TestResult};
pub use values::{Change, CredentialField, CredentialValues, CredentialsChange};

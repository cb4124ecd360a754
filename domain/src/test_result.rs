//! The Test Connection result: the product's main object. One type is answered by the API, stored
//! as history (JSON text), sent in `connection.tested` events and shown by the settings screen.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize, Serializer};
use utoipa::ToSchema;

use crate::taxonomy::TestError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Connected,
    Failed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Connected => "connected",
            Outcome::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TestResult {
    pub id: String,
    pub company: String,
    pub outcome: Outcome,
    /// true when candidate values from the request were tested, not the stored ones
    pub candidate: bool,
    /// null when connected; otherwise the classified failure (contract §4)
    pub error: Option<TestError>,
    /// credentials_complete, token_exchange, api_probe, in order
    pub checks: Vec<Check>,
    /// The ChannelAdvisor profiles the credentials reach (empty unless the probe ran)
    pub profiles: Vec<Profile>,
    /// RFC 3339, UTC, milliseconds
    #[serde(serialize_with = "rfc3339_millis")]
    #[schema(value_type = String, format = DateTime)]
    pub started_at: DateTime<Utc>,
    pub duration_ms: u64,
    /// The `sub` of the person or job that ran it
    pub triggered_by: String,
}

/// The API's time format: RFC 3339 in UTC with milliseconds (chrono's default prints as many
/// fraction digits as the value has).
fn rfc3339_millis<S: Serializer>(at: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&at.to_rfc3339_opts(SecondsFormat::Millis, true))
}

impl TestResult {
    pub fn connected(&self) -> bool {
        self.outcome == Outcome::Connected
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CheckStatus {
    Passed,
    Failed,
    Skipped,
}

/// The checks, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CheckName {
    CredentialsComplete,
    TokenExchange,
    ApiProbe,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Check {
    pub name: CheckName,
    pub status: CheckStatus,
    pub duration_ms: u64,
}

/// A ChannelAdvisor profile the credentials reach, as the probe found it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct Profile {
    pub id: i64,
    pub account_name: Option<String>,
    pub company_name: Option<String>,
}

//! The classified failures of Test Connection (contract §4): a stable code, a message an ERP admin
//! understands, a hint in the Developer Console's words, and the fields to highlight.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    IncompleteCredentials,
    InvalidClient,
    InvalidRefreshToken,
    InvalidSoapCredentials,
    CredentialsRejected,
    ProfileNotAuthorized,
    AccessDenied,
    RateLimited,
    UpstreamUnavailable,
    UpstreamTimeout,
    UpstreamProtocolError,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::IncompleteCredentials => "incomplete_credentials",
            ErrorCode::InvalidClient => "invalid_client",
            ErrorCode::InvalidRefreshToken => "invalid_refresh_token",
            ErrorCode::InvalidSoapCredentials => "invalid_soap_credentials",
            ErrorCode::CredentialsRejected => "credentials_rejected",
            ErrorCode::ProfileNotAuthorized => "profile_not_authorized",
            ErrorCode::AccessDenied => "access_denied",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::UpstreamUnavailable => "upstream_unavailable",
            ErrorCode::UpstreamTimeout => "upstream_timeout",
            ErrorCode::UpstreamProtocolError => "upstream_protocol_error",
        }
    }

    /// Permanent: the values themselves are wrong and retrying will not help. Transient failures
    /// (rate limits, outages, timeouts, garbled answers) may pass on their own.
    pub fn is_permanent(self) -> bool {
        matches!(
            self,
            ErrorCode::IncompleteCredentials
                | ErrorCode::InvalidClient
                | ErrorCode::InvalidRefreshToken
                | ErrorCode::InvalidSoapCredentials
                | ErrorCode::CredentialsRejected
                | ErrorCode::ProfileNotAuthorized
                | ErrorCode::AccessDenied
        )
    }
}

/// A classified failure, as the result's `error` object shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TestError {
    pub code: ErrorCode,
    pub message: String,
    pub hint: String,
    pub fields: Vec<String>,
    pub retry_after_seconds: Option<u64>,
    pub upstream_status: Option<u16>,
}

const ALL_FIELDS: [&str; 3] = ["application_id", "shared_secret", "refresh_token"];

impl TestError {
    fn new(code: ErrorCode, message: String, hint: &str, fields: Vec<&'static str>) -> Self {
        TestError {
            code,
            message,
            hint: hint.to_string(),
            fields: fields.into_iter().map(String::from).collect(),
            retry_after_seconds: None,
            upstream_status: None,
        }
    }

    pub fn status(mut self, status: Option<u16>) -> Self {
        self.upstream_status = status;
        self
    }

    pub fn incomplete(missing: Vec<&'static str>) -> Self {
        let names: Vec<&str> = missing.iter().map(|f| display_name(f)).collect();
        TestError::new(
            ErrorCode::IncompleteCredentials,
            format!("The connection cannot be tested yet: {} not saved.", join(&names)),
            "Copy the missing values from your application in ChannelAdvisor's Developer Console and save them. The Refresh Token comes from Add Integration and Request Tokens.",
            missing,
        )
    }

    pub fn invalid_client() -> Self {
        TestError::new(
            ErrorCode::InvalidClient,
            "ChannelAdvisor did not accept the Application ID and Shared Secret.".into(),
            "In the Developer Console, open your application and copy the Application ID and the Shared Secret again, in full; they must belong to the same application.",
            vec!["application_id", "shared_secret"],
        )
    }

    pub fn invalid_refresh_token() -> Self {
        TestError::new(
            ErrorCode::InvalidRefreshToken,
            "ChannelAdvisor did not accept the Refresh Token: it is mistyped, was revoked, belongs to another application, or expired after long disuse.".into(),
            "In the Developer Console, choose Add Integration and Request Tokens for the account, have it grant access, then copy the new Refresh Token (it is shown only once) and save it here.",
            vec!["refresh_token"],
        )
    }

    pub fn invalid_soap_credentials() -> Self {
        TestError::new(
            ErrorCode::InvalidSoapCredentials,
            "ChannelAdvisor did not accept the SOAP credentials: the Developer Key, its password or the account GUID is wrong, or the account has not granted this Developer Key SOAP access.".into(),
            "Check the Developer Key and password in the Developer Console, and the account GUID of the ChannelAdvisor account; the account must have granted your Developer Key SOAP access.",
            vec!["developer_key", "password", "account_id"],
        )
    }

    pub fn credentials_rejected() -> Self {
        TestError::new(
            ErrorCode::CredentialsRejected,
            "ChannelAdvisor rejected the credentials without saying which value is wrong.".into(),
            "Copy the Application ID, the Shared Secret and the Refresh Token again from the Developer Console, in full and without spaces. If it persists, Request Tokens again for a new Refresh Token.",
            ALL_FIELDS.to_vec(),
        )
    }

    pub fn profile_not_authorized(profile_id: i64, available: &[i64]) -> Self {
        let list = if available.is_empty() {
            "none".to_string()
        } else {
            available
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        TestError::new(
            ErrorCode::ProfileNotAuthorized,
            format!("The credentials work, but profile {profile_id} is not among the ChannelAdvisor accounts this integration may use (available: {list})."),
            "Use one of the available Profile IDs, or in the Developer Console Request Tokens for the account with this profile, have it grant access, and save the new Refresh Token.",
            vec!["profile_id"],
        )
    }

    pub fn access_denied() -> Self {
        TestError::new(
            ErrorCode::AccessDenied,
            "ChannelAdvisor issued an access token but refused access to the account's data.".into(),
            "Ask the ChannelAdvisor account's administrator to grant your application access (Developer Console: Add Integration, Request Tokens), then test again.",
            vec![],
        )
    }

    pub fn rate_limited(retry_after: Option<u64>) -> Self {
        let secs = retry_after.unwrap_or(60);
        let mut e = TestError::new(
            ErrorCode::RateLimited,
            format!("ChannelAdvisor is limiting requests for this application right now; try again in {secs} seconds."),
            "Nothing to change in the Developer Console. Wait, then test again; if it happens often, other tools may be using the same application's limits.",
            vec![],
        );
        e.retry_after_seconds = Some(secs);
        e
    }

    pub fn unavailable(what: &str) -> Self {
        TestError::new(
            ErrorCode::UpstreamUnavailable,
            format!("ChannelAdvisor could not be reached ({what})."),
            "This is usually temporary: try again in a few minutes. Nothing to change in the Developer Console.",
            vec![],
        )
    }

    /// Not even a connection to the configured URL: say which URL, and the setting that holds it.
    pub fn unreachable_at(url: &str, what: &str) -> Self {
        TestError::new(
            ErrorCode::UpstreamUnavailable,
            format!("ChannelAdvisor could not be reached at {url}: {what}."),
            &format!("Check the service's --channeladvisor-url setting (now {url}): a wrong host or port, or https:// for a plain-http address, fails this way. If it is right, ChannelAdvisor or the network may be down: try again in a few minutes. Nothing to change in the Developer Console."),
            vec![],
        )
    }

    pub fn timeout(secs: u64) -> Self {
        TestError::new(
            ErrorCode::UpstreamTimeout,
            format!("ChannelAdvisor did not answer within {secs} seconds."),
            "This is usually temporary: try again in a few minutes. Nothing to change in the Developer Console.",
            vec![],
        )
    }

    pub fn protocol(what: &str) -> Self {
        TestError::new(
            ErrorCode::UpstreamProtocolError,
            format!("ChannelAdvisor answered with something unexpected ({what})."),
            "Try again later. If it persists, check that the ChannelAdvisor URL setting points at ChannelAdvisor's API.",
            vec![],
        )
    }
}

fn display_name(field: &str) -> &'static str {
    match field {
        "application_id" => "the Application ID",
        "shared_secret" => "the Shared Secret",
        "refresh_token" => "the Refresh Token",
        "developer_key" => "the Developer Key",
        "password" => "the SOAP password",
        "account_id" => "the account GUID",
        _ => "a value",
    }
}

fn join(names: &[&str]) -> String {
    match names {
        [] => "nothing is".into(),
        [one] => format!("{one} is"),
        [init @ .., last] => format!("{} and {last} are", init.join(", ")),
    }
}

//! How a company obtains access tokens: a refresh token (the Developer Console's, or one Connect
//! obtained), or SOAP Credentials (contract §8), whose grant is simply repeated when the access
//! token runs out. Test Connection, job tokens and health checks all go through `grant`.

use secrecy::{ExposeSecret, SecretString};

use crate::client::{classify_grant, form, ChannelAdvisorClient, TokenGrant};
use crate::credentials::{
    AccountId, ApplicationId, AuthMethod, DeveloperKey, RefreshToken, SharedSecret, SoapPassword,
};
use crate::taxonomy::{ErrorCode, TestError};

/// SOAP Credentials: the Developer Key, its password and the account GUID.
#[derive(Debug, Clone)]
pub struct SoapCredentials {
    pub developer_key: DeveloperKey,
    pub password: SoapPassword,
    pub account_id: AccountId,
}

/// What is exchanged, besides the Application ID and Shared Secret, for an access token.
#[derive(Debug, Clone)]
pub enum Access {
    RefreshToken(RefreshToken),
    Soap(SoapCredentials),
}

/// The values of one method as stored (each possibly missing), before a test or refresh.
#[derive(Debug, Clone)]
pub enum AccessInput {
    RefreshToken(Option<RefreshToken>),
    Soap {
        developer_key: Option<DeveloperKey>,
        password: Option<SoapPassword>,
        account_id: Option<AccountId>,
    },
}

/// The stored values an `AccessInput` is made from (opened secrets; each possibly missing).
pub struct StoredAccess<'a> {
    pub method: AuthMethod,
    pub refresh_token: Option<&'a SecretString>,
    pub developer_key: Option<&'a SecretString>,
    pub password: Option<&'a SecretString>,
    pub account_id: Option<&'a AccountId>,
}

impl AccessInput {
    /// The values the stored method uses; the other method's values are ignored.
    pub fn from_stored(stored: StoredAccess<'_>) -> AccessInput {
        match stored.method {
            AuthMethod::RefreshToken => AccessInput::RefreshToken(
                stored.refresh_token.cloned().map(RefreshToken::from_secret),
            ),
            AuthMethod::Soap => AccessInput::Soap {
                developer_key: stored.developer_key.cloned().map(DeveloperKey::from_secret),
                password: stored.password.cloned().map(SoapPassword::from_secret),
                account_id: stored.account_id.cloned(),
            },
        }
    }

    /// The complete `Access`, or the names of the fields the method still needs.
    pub fn complete(&self) -> Result<Access, Vec<&'static str>> {
        match self {
            AccessInput::RefreshToken(Some(t)) => Ok(Access::RefreshToken(t.clone())),
            AccessInput::RefreshToken(None) => Err(vec!["refresh_token"]),
            AccessInput::Soap {
                developer_key: Some(k),
                password: Some(p),
                account_id: Some(a),
            } => Ok(Access::Soap(SoapCredentials {
                developer_key: k.clone(),
                password: p.clone(),
                account_id: a.clone(),
            })),
            AccessInput::Soap {
                developer_key,
                password,
                account_id,
            } => Err([
                (developer_key.is_none(), "developer_key"),
                (password.is_none(), "password"),
                (account_id.is_none(), "account_id"),
            ]
            .into_iter()
            .filter(|(missing, _)| *missing)
            .map(|(_, name)| name)
            .collect()),
        }
    }
}

impl ChannelAdvisorClient {
    /// An access token by the company's method: the refresh-token grant or the SOAP grant.
    pub async fn grant(
        &self,
        app: &ApplicationId,
        secret: &SharedSecret,
        access: &Access,
    ) -> Result<TokenGrant, TestError> {
        match access {
            Access::RefreshToken(token) => self.refresh_grant(app, secret, token).await,
            Access::Soap(soap) => self.soap_grant(app, secret, soap).await,
        }
    }

    /// `grant_type=soap` with `client_id`, `scope`, `developer_key`, `password`, `account_id`.
    pub async fn soap_grant(
        &self,
        app: &ApplicationId,
        secret: &SharedSecret,
        soap: &SoapCredentials,
    ) -> Result<TokenGrant, TestError> {
        let form = form(&[
            ("client_id", app.as_str()),
            ("grant_type", "soap"),
            ("scope", self.scope()),
            ("developer_key", soap.developer_key.secret().expose_secret()),
            ("password", soap.password.secret().expose_secret()),
            ("account_id", soap.account_id.as_str()),
        ]);
        let answer = self.token_call(app, secret, form).await?;
        let mut grant = classify_grant(answer).map_err(about_soap)?;
        // There is nothing to rotate: the SOAP grant is repeated, never refreshed.
        grant.refresh_token = None;
        Ok(grant)
    }
}

/// A refused SOAP grant is about the SOAP values (`invalid_grant`, or a 400 without a recognised
/// `error`); a refused client stays `invalid_client`.
fn about_soap(e: TestError) -> TestError {
    match e.code {
        ErrorCode::InvalidRefreshToken | ErrorCode::CredentialsRejected => {
            TestError::invalid_soap_credentials().status(e.upstream_status)
        }
        _ => e,
    }
}

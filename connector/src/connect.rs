//! ChannelAdvisor's authorization-code flow (contract §8, §10): the authorize URL an admin's
//! browser is sent to, and the exchange of the code it comes back with for a refresh token.

use secrecy::{ExposeSecret, SecretString};

use crate::client::{classify_grant, form, ChannelAdvisorClient, TokenGrant};
use crate::credentials::{ApplicationId, SharedSecret};
use crate::taxonomy::{ErrorCode, TestError};

/// What the authorize URL carries besides the Application ID.
pub struct AuthorizeRequest<'a> {
    pub scope: &'a str,
    pub redirect_uri: &'a str,
    pub state: &'a str,
}

impl ChannelAdvisorClient {
    /// `{base}/oauth2/authorize?client_id=…&response_type=code&access_type=offline&scope=…&redirect_uri=…&state=…`
    pub fn authorize_url(&self, app: &ApplicationId, request: &AuthorizeRequest<'_>) -> url::Url {
        let mut url = self.endpoint("/oauth2/authorize");
        url.query_pairs_mut()
            .append_pair("client_id", app.as_str())
            .append_pair("response_type", "code")
            .append_pair("access_type", "offline")
            .append_pair("scope", request.scope)
            .append_pair("redirect_uri", request.redirect_uri)
            .append_pair("state", request.state);
        url
    }

    /// Exchanges an authorization code (the same `redirect_uri` as the authorize URL) for tokens.
    /// An answer without a refresh token is a failure: a refresh token is what Connect is for.
    pub async fn code_grant(
        &self,
        app: &ApplicationId,
        secret: &SharedSecret,
        code: &SecretString,
        redirect_uri: &str,
    ) -> Result<TokenGrant, TestError> {
        let form = form(&[
            ("grant_type", "authorization_code"),
            ("code", code.expose_secret()),
            ("redirect_uri", redirect_uri),
        ]);
        let answer = self.token_call(app, secret, form).await?;
        let grant = classify_grant(answer).map_err(about_the_code)?;
        if grant.refresh_token.is_none() {
            return Err(TestError::protocol(
                "the authorization code was exchanged without a refresh token",
            ));
        }
        Ok(grant)
    }
}

/// `invalid_grant` from a code exchange is about the code, not a stored refresh token: same
/// stable code, words that say what happened and what to press.
fn about_the_code(e: TestError) -> TestError {
    if e.code != ErrorCode::InvalidRefreshToken {
        return e;
    }
    TestError {
        message: "ChannelAdvisor did not accept the authorization code: it was used already, is more than five minutes old, or was issued for another Redirect URI.".into(),
        hint: "Press Connect to ChannelAdvisor again and grant access within five minutes. If it keeps failing, check that the Redirect URI registered on your application in the Developer Console is exactly the one ca-connector uses.".into(),
        fields: vec![],
        ..e
    }
}

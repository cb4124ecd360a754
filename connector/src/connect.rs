//! ChannelAdvisor's authorization-code flow (contract §8, §10): the authorize URL an admin's
//! browser is sent to, and the exchange of the code it comes back with for a refresh token.

use secrecy::{ExposeSecret, SecretString};

use crate::client::{classify_grant, form, ChannelAdvisorClient};
use crate::credentials::{ApplicationId, SharedSecret};
use crate::taxonomy::{ErrorCode, TestError};

/// What an exchanged authorization code gives: the refresh token Connect is for. (The access
/// token that comes with it is not kept: Test Connection obtains its own.) `Debug` is redacted.
#[derive(Debug)]
pub struct CodeGrant {
    pub refresh_token: SecretString,
}

/// The scopes an authorize URL asks for, as ChannelAdvisor spells them (space-separated).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope(String);

impl Scope {
    pub fn new(scopes: impl Into<String>) -> Self {
        Scope(scopes.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The Redirect URI registered on the application in the Developer Console: where ChannelAdvisor
/// sends the browser back, and what the code exchange must name again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedirectUri(url::Url);

impl RedirectUri {
    pub fn parse(uri: &str) -> Result<Self, url::ParseError> {
        url::Url::parse(uri).map(RedirectUri)
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

/// The `state` that binds an authorize URL to one attempt: a secret until the browser brings it
/// back (only its hash is stored). `Debug` is redacted.
#[derive(Debug)]
pub struct CsrfState(SecretString);

impl CsrfState {
    pub fn new(state: String) -> Self {
        CsrfState(SecretString::from(state))
    }

    pub fn secret(&self) -> &str {
        self.0.expose_secret()
    }
}

/// A code ChannelAdvisor handed back for one exchange. `Debug` is redacted.
#[derive(Debug)]
pub struct AuthorizationCode(SecretString);

impl AuthorizationCode {
    pub fn new(code: SecretString) -> Self {
        AuthorizationCode(code)
    }
}

/// What the authorize URL carries besides the Application ID.
pub struct AuthorizeRequest<'a> {
    pub scope: &'a Scope,
    pub redirect_uri: &'a RedirectUri,
    pub state: &'a CsrfState,
}

impl ChannelAdvisorClient {
    /// `{base}/oauth2/authorize?client_id=…&response_type=code&access_type=offline&scope=…&redirect_uri=…&state=…`
    pub fn authorize_url(&self, app: &ApplicationId, request: &AuthorizeRequest<'_>) -> url::Url {
        let mut url = self.endpoint("/oauth2/authorize");
        url.query_pairs_mut()
            .append_pair("client_id", app.as_str())
            .append_pair("response_type", "code")
            .append_pair("access_type", "offline")
            .append_pair("scope", request.scope.as_str())
            .append_pair("redirect_uri", request.redirect_uri.as_str())
            .append_pair("state", request.state.secret());
        url
    }

    /// Exchanges an authorization code (the same `redirect_uri` as the authorize URL) for tokens.
    /// An answer without a refresh token is a failure: a refresh token is what Connect is for.
    pub async fn code_grant(
        &self,
        app: &ApplicationId,
        secret: &SharedSecret,
        code: &AuthorizationCode,
        redirect_uri: &RedirectUri,
    ) -> Result<CodeGrant, TestError> {
        let form = form(&[
            ("grant_type", "authorization_code"),
            ("code", code.0.expose_secret()),
            ("redirect_uri", redirect_uri.as_str()),
        ]);
        let answer = self.token_call(app, secret, form).await?;
        let grant = classify_grant(answer).map_err(about_the_code)?;
        let refresh_token = grant.refresh_token.ok_or_else(|| {
            TestError::protocol("the authorization code was exchanged without a refresh token")
        })?;
        Ok(CodeGrant { refresh_token })
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::time::Duration;

    use secrecy::{ExposeSecret, SecretString};
    use wiremock::matchers::{body_string_contains, method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    use super::*;

    async fn exchange(answer: ResponseTemplate) -> Result<CodeGrant, TestError> {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/oauth2/token"))
            .and(body_string_contains("grant_type=authorization_code"))
            .and(body_string_contains(
                "redirect_uri=https%3A%2F%2Fca.example%2Fcb",
            ))
            .respond_with(answer)
            .mount(&server)
            .await;
        let client = ChannelAdvisorClient::new(
            url::Url::parse(&server.uri()).unwrap(),
            Duration::from_secs(5),
            4,
        )
        .unwrap();
        client
            .code_grant(
                &ApplicationId::parse("app").unwrap().unwrap(),
                &SharedSecret::parse("secret").unwrap().unwrap(),
                &AuthorizationCode::new(SecretString::from("the-code")),
                &RedirectUri::parse("https://ca.example/cb").unwrap(),
            )
            .await
    }

    #[tokio::test]
    async fn a_code_grant_yields_its_refresh_token_or_a_classified_refusal() {
        let ok = exchange(ResponseTemplate::new(200).set_body_json(serde_json::json!(
            {"access_token": "a", "expires_in": 3600, "refresh_token": "granted-rt"}
        )))
        .await
        .unwrap();
        assert_eq!(ok.refresh_token.expose_secret(), "granted-rt");

        let without = exchange(ResponseTemplate::new(200).set_body_json(serde_json::json!(
            {"access_token": "a", "expires_in": 3600}
        )))
        .await
        .unwrap_err();
        assert_eq!(without.code, ErrorCode::UpstreamProtocolError);

        let refused = exchange(
            ResponseTemplate::new(400).set_body_json(serde_json::json!({"error": "invalid_grant"})),
        )
        .await
        .unwrap_err();
        assert_eq!(refused.code, ErrorCode::InvalidRefreshToken);
        assert!(
            refused.message.contains("authorization code"),
            "{}",
            refused.message
        );
        assert!(refused.fields.is_empty());
    }
}

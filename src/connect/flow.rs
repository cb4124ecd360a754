//! Connect to ChannelAdvisor (contract §10): starting an attempt (the authorize URL for the
//! admin's browser) and finishing one with the code ChannelAdvisor hands back, whether it arrives
//! at the callback or is pasted by the admin. Both HTTP faces (`routes::connect`) call these.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};
use connector::connect::{AuthorizationCode, AuthorizeRequest, CsrfState, RedirectUri, Scope};
use connector::{SharedSecret, TestError};
use rand::RngCore;
use schema::connect::{self, Attempt, Refused};
use schema::CompanyId;
use secrecy::SecretString;
use sha2::{Digest, Sha256};

use crate::connection_test::TestRunner;
use crate::connection_test::{TestRequest, Tested};
use crate::fault::Fault;
use crate::service::connect_settings::ConnectSettings;

/// How long an attempt may be finished (contract §10).
const ATTEMPT_LIFETIME: chrono::Duration = chrono::Duration::minutes(10);

pub struct Started {
    pub authorize_url: url::Url,
    pub redirect_uri: String,
    pub expires_at: DateTime<Utc>,
}

/// How a finished attempt ended.
pub enum Finished {
    /// The refresh token was stored and Test Connection ran (connected or failed).
    Tested(Tested),
    /// ChannelAdvisor refused the code or could not be asked: nothing stored.
    ExchangeFailed(TestError),
}

/// The hash an attempt is stored under: the `state` itself never reaches the database.
pub fn state_hash(state: &str) -> String {
    format!("{:x}", Sha256::digest(state.as_bytes()))
}

/// Why Connect could not start or finish. `http` says what the caller is told.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// Neither a public URL nor a Redirect URI is configured.
    #[error("Connect to ChannelAdvisor is not set up on this service: it needs the service's public URL (--public-url) or the Redirect URI registered in the Developer Console (--oauth-redirect-uri).")]
    NotConfigured,
    /// The Application ID or Shared Secret is not stored.
    #[error("Connect to ChannelAdvisor needs the Application ID and the Shared Secret of your application saved first (Developer Console: your application's page).")]
    NotReady { missing: Vec<&'static str> },
    /// The values the attempt was started with were changed meanwhile: nothing was stored.
    #[error("The Application ID or Shared Secret changed since Connect to ChannelAdvisor started. Nothing was stored; press Connect to ChannelAdvisor again.")]
    ApplicationChanged,
    #[error(transparent)]
    Fault(#[from] Fault),
}

impl From<schema::StoreError> for ConnectError {
    fn from(e: schema::StoreError) -> Self {
        ConnectError::Fault(e.into())
    }
}

/// Why a `state` (or a pasted code's attempt) finishes nothing, in an admin's words.
pub fn refused_detail(why: Refused) -> &'static str {
    match why {
        Refused::Unknown => "This Connect to ChannelAdvisor link is not known here (it may have been started elsewhere or altered). Nothing was stored; press Connect to ChannelAdvisor again.",
        Refused::Used => "This Connect to ChannelAdvisor link was already used. Nothing more was stored; press Connect to ChannelAdvisor again if the connection is not working.",
        Refused::Expired => "This Connect to ChannelAdvisor link expired (they last 10 minutes). Nothing was stored; press Connect to ChannelAdvisor again.",
    }
}

/// What Connect uses of the service, and nothing more.
#[derive(Clone)]
pub struct ConnectFlow {
    pub db: schema::Database,
    pub keys: std::sync::Arc<schema::KeyRing>,
    pub upstream: connector::ChannelAdvisorClient,
    pub settings: ConnectSettings,
    pub tests: std::sync::Arc<TestRunner>,
}

impl ConnectFlow {
    /// The company's stored credentials (secrets open), if any.
    async fn stored(
        &self,
        company: &CompanyId,
    ) -> Result<Option<schema::credentials::Credentials>, ConnectError> {
        let (keys, id) = (self.keys.clone(), company.clone());
        Ok(self
            .db
            .run(move |conn| schema::credentials::load(conn, &keys, &id))
            .await?)
    }

    /// Starts an attempt for the company with its stored Application ID and Shared Secret.
    pub async fn start(
        &self,
        caller: &str,
        company: CompanyId,
        return_to: Option<url::Url>,
    ) -> Result<Started, ConnectError> {
        let Some(redirect_uri) = self.settings.redirect_uri.clone() else {
            return Err(ConnectError::NotConfigured);
        };
        let stored = self.stored(&company).await?;
        let application_id = stored.as_ref().and_then(|c| c.application_id.clone());
        let missing: Vec<&str> = [
            (application_id.is_some(), "application_id"),
            (
                stored.as_ref().is_some_and(|c| c.shared_secret.is_some()),
                "shared_secret",
            ),
        ]
        .into_iter()
        .filter(|(set, _)| !set)
        .map(|(_, name)| name)
        .collect();
        let (Some(app), true) = (application_id, missing.is_empty()) else {
            return Err(ConnectError::NotReady { missing });
        };
        let mut random = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut random);
        let secret_state = URL_SAFE_NO_PAD.encode(random);
        let expires_at = Utc::now() + ATTEMPT_LIFETIME;
        let attempt = Attempt {
            state_hash: state_hash(&secret_state),
            company: company.to_string(),
            caller: caller.to_string(),
            application_id: app.as_str().to_string(),
            redirect_uri: redirect_uri.to_string(),
            return_to: return_to.map(|u| u.to_string()),
            expires_at,
        };
        self.db
            .run(move |conn| connect::start(conn, &attempt))
            .await?;
        tracing::info!(company = %company, "connect started");
        let registered = RedirectUri::parse(redirect_uri.as_str())
            .map_err(|e| Fault::Invalid(format!("the configured Redirect URI: {e}")))?;
        let authorize_url = self.upstream.authorize_url(
            &app,
            &AuthorizeRequest {
                scope: &Scope::new(self.settings.scope.clone()),
                redirect_uri: &registered,
                state: &CsrfState::new(secret_state),
            },
        );
        Ok(Started {
            authorize_url,
            redirect_uri: redirect_uri.to_string(),
            expires_at,
        })
    }

    /// Takes the attempt a `state` names (single use); `Refused` when it names none that is open.
    pub async fn take(&self, secret_state: &str) -> Result<Result<Attempt, Refused>, ConnectError> {
        let hash = state_hash(secret_state);
        Ok(self.db.run(move |conn| connect::take(conn, &hash)).await?)
    }

    /// Records how an attempt ended without a code exchange (`connect_denied`, `connect_failed`).
    pub async fn end(&self, attempt: Attempt, action: &'static str) -> Result<(), ConnectError> {
        tracing::info!(company = %attempt.company, action, "connect ended");
        Ok(self
            .db
            .run(move |conn| connect::record_end(conn, &attempt, action))
            .await?)
    }

    /// Exchanges the code, stores the refresh token as the person who started the attempt, and runs
    /// Test Connection as that person. A refused exchange stores nothing.
    pub async fn finish(
        &self,
        attempt: Attempt,
        code: SecretString,
    ) -> Result<Finished, ConnectError> {
        let company = CompanyId::parse(&attempt.company)
            .map_err(|e| Fault::Invalid(format!("a stored attempt's company: {e}")))?;
        let stored = self.stored(&company).await?;
        let app = stored
            .as_ref()
            .and_then(|c| c.application_id.clone())
            .filter(|a| a.as_str() == attempt.application_id);
        let secret = stored
            .and_then(|c| c.values.shared_secret)
            .map(SharedSecret::from_secret);
        let (Some(app), Some(secret)) = (app, secret) else {
            self.end(attempt, "connect_failed").await?;
            return Err(ConnectError::ApplicationChanged);
        };
        let grant = match self
            .upstream
            .code_grant(
                &app,
                &secret,
                &AuthorizationCode::new(code),
                &RedirectUri::parse(&attempt.redirect_uri)
                    .map_err(|e| Fault::Invalid(format!("a stored attempt's Redirect URI: {e}")))?,
            )
            .await
        {
            Ok(grant) => grant,
            Err(e) => {
                // `error_code`: the classified failure, never the authorization code itself.
                tracing::info!(company = %company, error_code = e.code.as_str(), "connect: the code exchange failed");
                self.end(attempt, "connect_failed").await?;
                return Ok(Finished::ExchangeFailed(e));
            }
        };
        let keys = self.keys.clone();
        let kept = attempt.clone();
        // The save's settle overlaps the test that follows (whose own commit settles last), so the
        // callback waits the settle window once, not twice.
        let saved = self
            .db
            .run_unsettled(move |conn| {
                connect::store_granted(conn, &keys, &kept, &grant.refresh_token)
            })
            .await?;
        let settles_at = saved.settles_at;
        let Some(saved) = saved.value else {
            schema::visibility::settle(settles_at).await;
            return Err(ConnectError::ApplicationChanged);
        };
        tracing::info!(company = %company, version = saved.credentials.version, "connect: refresh token stored");
        let tested = self
            .tests
            .run(TestRequest {
                company,
                candidate: None,
                triggered_by: attempt.caller.clone(),
            })
            .await;
        schema::visibility::settle(settles_at).await;
        let tested = tested?;
        let connected = tested.result.connected();
        self.end(
            attempt,
            if connected {
                "connect_connected"
            } else {
                "connect_failed"
            },
        )
        .await?;
        Ok(Finished::Tested(tested))
    }
}

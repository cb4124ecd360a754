//! Runs Test Connection for a company: effective values (stored, overlaid by candidate values),
//! the upstream checks, and the record in history and status. Concurrent tests of one company
//! with the same effective values share one run (one result); a test whose exchange spends the
//! stored refresh token shares it with job refreshes and health checks (`tokens`).

use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use connector::{
    run_checks, Access, AccessInput, ApplicationId, AuthMethod, ChannelAdvisorClient, SharedSecret,
    StoredAccess, TestError, TestInput,
};
use connector::{Outcome, TestResult};
use schema::credentials::{
    Change, CredentialField, CredentialValues, Credentials, CredentialsChange,
};
use schema::{CompanyId, Database, KeyRing};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use crate::fault::Fault;
use crate::tokens::decide::Refusal;
use crate::tokens::flight::SingleFlight;
use crate::tokens::{Candidate, Cause, Failure, TokenBroker};

/// `triggered_by` of a scheduled health check.
pub const SCHEDULER: &str = "scheduler";

/// A test's result as answered and stored, and whether it changed the connection's state.
#[derive(Clone)]
pub struct Tested {
    pub result: TestResult,
    /// A state change is seen by every instance from then on.
    settles_at: Option<std::time::Instant>,
}

pub struct TestRunner {
    db: Database,
    keys: Arc<KeyRing>,
    client: ChannelAdvisorClient,
    tokens: Arc<TokenBroker>,
    /// Tests in flight, keyed by a digest of company and effective values (never the values).
    running: SingleFlight<String, Result<Tested, Fault>>,
}

pub struct TestRequest {
    pub company: CompanyId,
    /// Values laid over the stored ones for this test only; `None` for a test of the stored values.
    pub candidate: Option<CredentialsChange>,
    pub triggered_by: String,
}

/// The values a test runs on: the stored ones, with a candidate's laid over them.
fn effective(
    stored: Option<&Credentials>,
    candidate: Option<&CredentialsChange>,
) -> CredentialValues {
    let base = stored.map(|c| c.values.clone()).unwrap_or_default();
    match candidate {
        Some(change) => base.overlay(change).0,
        None => base,
    }
}

/// The refresh token, or the SOAP values, by the effective method.
fn access(values: &CredentialValues) -> AccessInput {
    AccessInput::from_stored(StoredAccess {
        method: values.auth_method,
        refresh_token: values.refresh_token.as_ref(),
        developer_key: values.developer_key.as_ref(),
        password: values.password.as_ref(),
        account_id: values.account_id.as_ref(),
    })
}

/// Names a test run by its company and every effective value, so identical presses share one
/// run; a hash, never the values.
fn digest(
    company: &CompanyId,
    candidate: bool,
    version: Option<i64>,
    e: &CredentialValues,
) -> String {
    let secret = |v: &Option<SecretString>| v.as_ref().map(|s| s.expose_secret().to_string());
    let mut h = Sha256::new();
    let head = [
        company.as_str().to_string(),
        (if candidate { "candidate" } else { "stored" }).to_string(),
        version.map(|v| v.to_string()).unwrap_or_default(),
    ];
    let fields = CredentialField::ALL.map(|field| match field {
        CredentialField::AuthMethod => Some(e.auth_method.as_str().to_string()),
        CredentialField::ApplicationId => e.application_id.as_ref().map(|a| a.as_str().into()),
        CredentialField::SharedSecret => secret(&e.shared_secret),
        CredentialField::RefreshToken => secret(&e.refresh_token),
        CredentialField::ProfileId => e.profile_id.map(|p| p.get().to_string()),
        CredentialField::DeveloperKey => secret(&e.developer_key),
        CredentialField::Password => secret(&e.password),
        CredentialField::AccountId => e.account_id.as_ref().map(|a| a.as_str().into()),
    });
    let unset = "\u{0}".to_string();
    for part in head
        .iter()
        .chain(fields.iter().map(|f| f.as_ref().unwrap_or(&unset)))
    {
        h.update(part.as_bytes());
        h.update([0x1f]);
    }
    format!("{:x}", h.finalize())
}

impl TestRunner {
    pub fn new(
        db: Database,
        keys: Arc<KeyRing>,
        client: ChannelAdvisorClient,
        tokens: Arc<TokenBroker>,
    ) -> Self {
        TestRunner {
            db,
            keys,
            client,
            tokens,
            running: SingleFlight::default(),
        }
    }

    pub async fn run(&self, request: TestRequest) -> Result<Tested, Fault> {
        let (load_keys, id) = (self.keys.clone(), request.company.clone());
        let stored = self
            .db
            .run(move |conn| schema::credentials::load(conn, &load_keys, &id))
            .await?;
        let candidate = request.candidate.is_some();
        let values = effective(stored.as_ref(), request.candidate.as_ref());
        // A candidate test changes nothing stored, so it is tied to no version.
        let version = if candidate {
            None
        } else {
            stored.as_ref().map(|c| c.version)
        };
        let key = digest(&request.company, candidate, version, &values);
        let spends_stored =
            spends_stored_refresh_token(stored.as_ref(), request.candidate.as_ref());
        let run = Run {
            db: self.db.clone(),
            client: self.client.clone(),
            tokens: self.tokens.clone(),
            digest: key.clone(),
            spends_stored,
        };
        // Spent even if every caller goes away, so the test completes and is recorded.
        let tested = self
            .running
            .run(key, move || run.execute(request, values, version))
            .await
            .unwrap_or_else(|| Err(Fault::Ended("the connection test ended without a result")))?;
        schema::visibility::settle(tested.settles_at).await;
        Ok(tested)
    }
}

/// Whether a test's exchange spends the stored refresh token: stored values, or candidate values
/// that leave the refresh token (and the method) as stored. Such an exchange goes through the
/// token broker, shared with job refreshes and under the refresh lease, and a rotated refresh
/// token it brings back is stored.
fn spends_stored_refresh_token(
    stored: Option<&Credentials>,
    candidate: Option<&CredentialsChange>,
) -> bool {
    let Some(stored) = stored else { return false };
    let Some(candidate) = candidate else {
        return true;
    };
    let method_kept = match &candidate.auth_method {
        Change::Keep => true,
        Change::Set(m) => *m == stored.auth_method,
        Change::Clear => stored.auth_method == AuthMethod::default(),
    };
    method_kept
        && stored.auth_method == AuthMethod::RefreshToken
        && matches!(candidate.refresh_token, Change::Keep)
}

/// What one test run needs, moved into its task.
struct Run {
    db: Database,
    client: ChannelAdvisorClient,
    tokens: Arc<TokenBroker>,
    digest: String,
    spends_stored: bool,
}

impl Run {
    async fn execute(
        self,
        request: TestRequest,
        values: CredentialValues,
        version: Option<i64>,
    ) -> Result<Tested, Fault> {
        let started_at = Utc::now();
        let started = Instant::now();
        let input = TestInput {
            application_id: values.application_id.clone(),
            access: access(&values),
            shared_secret: values.shared_secret.map(SharedSecret::from_secret),
            profile_id: values.profile_id,
        };
        let candidate = request.candidate.is_some();
        // A store failure ends the test with an error answer: it is no finding about
        // ChannelAdvisor, so nothing goes into history.
        let outcome = run_checks(&self.client, &input, |app, secret, access| {
            self.exchange(&request, candidate, app, secret, access)
        })
        .await?;
        let duration_ms = started.elapsed().as_millis() as u64;
        let result = TestResult {
            id: uuid::Uuid::now_v7().to_string(),
            company: request.company.to_string(),
            outcome: if outcome.error.is_none() {
                Outcome::Connected
            } else {
                Outcome::Failed
            },
            candidate,
            error: outcome.error,
            checks: outcome.checks,
            profiles: outcome.profiles,
            started_at,
            duration_ms,
            triggered_by: request.triggered_by.clone(),
        };
        match &result.error {
            None => {
                tracing::info!(company = %request.company, duration_ms, "connection test passed")
            }
            Some(e) => {
                tracing::info!(company = %request.company, code = e.code.as_str(), upstream_status = e.upstream_status, duration_ms, "connection test failed")
            }
        }
        let stored = result.clone();
        // The run ends at the commit (a test pressed from then on is a new run); its callers
        // each wait for the settle (`TestRunner::run`).
        let recorded = self
            .db
            .run_unsettled(move |conn| schema::connection::record_test(conn, &stored, version))
            .await?;
        Ok(Tested {
            result,
            settles_at: recorded.settles_at,
        })
    }

    /// The test's token exchange: through the broker when it spends the stored refresh token,
    /// otherwise a grant of the candidate values' own.
    async fn exchange(
        &self,
        request: &TestRequest,
        candidate: bool,
        app: ApplicationId,
        secret: SharedSecret,
        access: Access,
    ) -> Result<Result<SecretString, TestError>, Fault> {
        if !self.spends_stored {
            let grant = self.client.grant(&app, &secret, &access).await;
            return Ok(grant.map(|g| g.access_token));
        }
        let laid_over = candidate.then(|| Candidate {
            application_id: app,
            shared_secret: secret.secret().clone(),
            digest: self.digest.clone(),
        });
        let cause = if request.triggered_by == SCHEDULER {
            Cause::HealthCheck
        } else {
            Cause::Test
        };
        let company = &request.company;
        Ok(
            match self.tokens.exchange(company, laid_over, cause).await {
                Ok(issued) => Ok(issued.token.access_token),
                Err(Failure::Refused(Refusal::Upstream(e))) => Err(e),
                Err(Failure::Refused(Refusal::NotReady { missing, .. })) => {
                    Err(TestError::incomplete(missing))
                }
                Err(Failure::Fault(f)) => return Err(f),
            },
        )
    }
}

pub mod health_checks;

//! Runs Test Connection for a company: effective values (stored, overlaid by candidate values),
//! the upstream checks, and the record in history and status. Concurrent tests of one company
//! with the same effective values share one run (one upstream exchange, one result).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use chrono::Utc;
use connector::{
    run_checks, AccessInput, AccountId, ApplicationId, AuthMethod, ChannelAdvisorClient, ProfileId,
    SharedSecret, StoredAccess, TestInput,
};
use connector::{Outcome, TestResult};
use futures_util::future::{BoxFuture, FutureExt, Shared};
use schema::connection::ObtainedToken;
use schema::credentials::{Change, Credentials, CredentialsChange};
use schema::{CompanyId, Database, KeyRing};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use tracing::Instrument;

use crate::problem::ApiError;

type Running = Shared<BoxFuture<'static, Result<Tested, ApiError>>>;

/// A test's result as answered and stored, and whether it changed the connection's state.
#[derive(Clone)]
pub struct Tested {
    pub result: TestResult,
    pub state_changed: bool,
}

/// Tests in flight, keyed by a digest of company and effective values (never the values).
#[derive(Default)]
pub struct TestRunner {
    running: Arc<Mutex<HashMap<String, Running>>>,
}

pub struct TestRequest {
    pub company: CompanyId,
    /// Values laid over the stored ones for this test only; `None` for a test of the stored values.
    pub candidate: Option<CredentialsChange>,
    pub triggered_by: String,
}

fn overlay<T: Clone>(stored: Option<T>, change: Option<&Change<T>>) -> Option<T> {
    match change {
        None | Some(Change::Keep) => stored,
        Some(Change::Set(v)) => Some(v.clone()),
        Some(Change::Clear) => None,
    }
}

struct Effective {
    application_id: Option<ApplicationId>,
    shared_secret: Option<SecretString>,
    refresh_token: Option<SecretString>,
    profile_id: Option<ProfileId>,
    auth_method: AuthMethod,
    developer_key: Option<SecretString>,
    password: Option<SecretString>,
    account_id: Option<AccountId>,
}

impl Effective {
    /// The refresh token, or the SOAP values, by the effective method.
    fn access(&self) -> AccessInput {
        AccessInput::from_stored(StoredAccess {
            method: self.auth_method,
            refresh_token: self.refresh_token.as_ref(),
            developer_key: self.developer_key.as_ref(),
            password: self.password.as_ref(),
            account_id: self.account_id.as_ref(),
        })
    }
}

fn effective(stored: Option<&Credentials>, candidate: Option<&CredentialsChange>) -> Effective {
    Effective {
        application_id: overlay(
            stored.and_then(|c| c.application_id.clone()),
            candidate.map(|c| &c.application_id),
        ),
        shared_secret: overlay(
            stored.and_then(|c| c.shared_secret.clone()),
            candidate.map(|c| &c.shared_secret),
        ),
        refresh_token: overlay(
            stored.and_then(|c| c.refresh_token.clone()),
            candidate.map(|c| &c.refresh_token),
        ),
        profile_id: overlay(
            stored.and_then(|c| c.profile_id),
            candidate.map(|c| &c.profile_id),
        ),
        auth_method: overlay(
            stored.map(|c| c.auth_method),
            candidate.map(|c| &c.auth_method),
        )
        .unwrap_or_default(),
        developer_key: overlay(
            stored.and_then(|c| c.developer_key.clone()),
            candidate.map(|c| &c.developer_key),
        ),
        password: overlay(
            stored.and_then(|c| c.password.clone()),
            candidate.map(|c| &c.password),
        ),
        account_id: overlay(
            stored.and_then(|c| c.account_id.clone()),
            candidate.map(|c| &c.account_id),
        ),
    }
}

fn digest(company: &CompanyId, candidate: bool, version: Option<i64>, e: &Effective) -> String {
    let mut h = Sha256::new();
    for part in [
        company.as_str(),
        if candidate { "candidate" } else { "stored" },
        &version.map(|v| v.to_string()).unwrap_or_default(),
        e.application_id
            .as_ref()
            .map_or("\u{0}", ApplicationId::as_str),
        e.shared_secret
            .as_ref()
            .map(|s| s.expose_secret())
            .unwrap_or("\u{0}"),
        e.refresh_token
            .as_ref()
            .map(|s| s.expose_secret())
            .unwrap_or("\u{0}"),
        &e.profile_id
            .map(|p| p.get().to_string())
            .unwrap_or_default(),
        e.auth_method.as_str(),
        e.developer_key
            .as_ref()
            .map(|s| s.expose_secret())
            .unwrap_or("\u{0}"),
        e.password
            .as_ref()
            .map(|s| s.expose_secret())
            .unwrap_or("\u{0}"),
        e.account_id.as_ref().map_or("\u{0}", AccountId::as_str),
    ] {
        h.update(part.as_bytes());
        h.update([0x1f]);
    }
    format!("{:x}", h.finalize())
}

impl TestRunner {
    pub async fn run(
        &self,
        db: Database,
        keys: Arc<KeyRing>,
        client: ChannelAdvisorClient,
        request: TestRequest,
    ) -> Result<Tested, ApiError> {
        let (load_keys, id) = (keys.clone(), request.company.clone());
        let stored = db
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

        let running = {
            let mut map = self.running.lock().unwrap_or_else(|p| p.into_inner());
            match map.get(&key) {
                Some(shared) => shared.clone(),
                None => {
                    // Spawned, so the test completes and is recorded even if the caller goes away;
                    // the run takes itself out of the map when it ends (the insert below happens
                    // under this lock, so it cannot come after), so no finished result is ever
                    // replayed to a later caller, whether or not anyone awaited it.
                    let (running, done_key) = (self.running.clone(), key.clone());
                    let task = tokio::spawn(
                        async move {
                            let tested = execute(db, keys, client, request, values, version).await;
                            running
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .remove(&done_key);
                            tested
                        }
                        .instrument(tracing::Span::current()),
                    );
                    let shared =
                        async move { task.await.unwrap_or_else(|e| Err(ApiError::internal(e))) }
                            .boxed()
                            .shared();
                    map.insert(key.clone(), shared.clone());
                    shared
                }
            }
        };
        running.await
    }
}

async fn execute(
    db: Database,
    keys: Arc<KeyRing>,
    client: ChannelAdvisorClient,
    request: TestRequest,
    values: Effective,
    version: Option<i64>,
) -> Result<Tested, ApiError> {
    let started_at = Utc::now();
    let started = Instant::now();
    let input = TestInput {
        application_id: values.application_id.clone(),
        access: values.access(),
        shared_secret: values.shared_secret.map(SharedSecret::from_secret),
        profile_id: values.profile_id,
    };
    let outcome = run_checks(&client, &input).await;
    let duration_ms = started.elapsed().as_millis() as u64;
    let result = TestResult {
        id: uuid::Uuid::now_v7().to_string(),
        company: request.company.to_string(),
        outcome: if outcome.error.is_none() {
            Outcome::Connected
        } else {
            Outcome::Failed
        },
        candidate: request.candidate.is_some(),
        error: outcome.error,
        checks: outcome.checks,
        profiles: outcome.profiles,
        started_at,
        duration_ms,
        triggered_by: request.triggered_by.clone(),
    };
    match &result.error {
        None => tracing::info!(company = %request.company, duration_ms, "connection test passed"),
        Some(e) => {
            tracing::info!(company = %request.company, code = e.code.as_str(), upstream_status = e.upstream_status, duration_ms, "connection test failed")
        }
    }
    let obtained = outcome.grant.map(|g| ObtainedToken {
        expires_at: started_at + chrono::Duration::seconds(g.expires_in as i64),
        access_token: g.access_token,
        rotated_refresh_token: g.refresh_token,
    });
    let stored = result.clone();
    let change = db
        .run(move |conn| {
            schema::connection::record_test(conn, &keys, &stored, version, obtained.as_ref())
        })
        .await?;
    Ok(Tested {
        result,
        state_changed: change.is_some_and(|c| c.previous != c.current),
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use connector::sim::{SimConfig, Simulator};
    use schema::credentials::{Change, CredentialsChange};
    use schema::{CompanyId, Database, KeyRing};
    use secrecy::SecretString;

    use super::*;

    /// Every caller of a run goes away (their futures dropped): the run still completes, and
    /// then nothing of it is left to be replayed to the next caller.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_run_whose_callers_all_left_leaves_nothing_behind() {
        let sim = Simulator::start(
            SimConfig {
                latency: Duration::from_millis(300),
                ..Default::default()
            },
            "127.0.0.1:0",
        )
        .unwrap();
        let dir = tempfile::TempDir::new().unwrap();
        let db = Database::connect(
            &format!("sqlite://{}", dir.path().join("t.db").display()),
            2,
        )
        .unwrap();
        db.migrate().unwrap();
        let keys = Arc::new(KeyRing::parse(&KeyRing::generate_spec("k1")).unwrap());
        let company = CompanyId::parse("acme").unwrap();
        let change = CredentialsChange {
            application_id: Change::Set(ApplicationId::parse("demo-app").unwrap().unwrap()),
            shared_secret: Change::Set(SecretString::from("demo-shared-secret-0001")),
            refresh_token: Change::Set(SecretString::from("demo-refresh-token-0001")),
            profile_id: Change::Keep,
            ..Default::default()
        };
        let mut conn = db.get().unwrap();
        schema::credentials::save(&mut conn, &keys, &company, &change, None, "t").unwrap();
        drop(conn);
        let client = ChannelAdvisorClient::new(
            url::Url::parse(&sim.url()).unwrap(),
            Duration::from_secs(5),
            4,
        )
        .unwrap();
        let runner = TestRunner::default();
        let request = || TestRequest {
            company: company.clone(),
            candidate: None,
            triggered_by: "t".into(),
        };
        let left = tokio::time::timeout(
            Duration::from_millis(50),
            runner.run(db.clone(), keys.clone(), client.clone(), request()),
        )
        .await;
        assert!(left.is_err(), "the caller left before the run ended");
        tokio::time::sleep(Duration::from_millis(800)).await;
        assert!(
            runner.running.lock().unwrap().is_empty(),
            "the finished run is gone"
        );
        let again = runner.run(db, keys, client, request()).await.unwrap();
        assert_eq!(sim.token_calls(), 2, "a new run, not a replay");
        assert!(again.result.connected());
    }
}

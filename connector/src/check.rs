//! Test Connection's checks, in order, stopping at the first failure:
//! `credentials_complete` → `token_exchange` → `api_probe`.

use std::future::Future;
use std::time::Instant;

use secrecy::SecretString;

use crate::access::{Access, AccessInput};
use crate::client::ChannelAdvisorClient;
use crate::credentials::{ApplicationId, ProfileId, SharedSecret};
use crate::taxonomy::TestError;
use domain::test_result::{Check, CheckName, CheckStatus, Profile};

/// The effective values of one test (stored ones, possibly overlaid by candidate values).
#[derive(Debug, Clone)]
pub struct TestInput {
    pub application_id: Option<ApplicationId>,
    pub shared_secret: Option<SharedSecret>,
    /// The refresh token, or the SOAP values, by the company's method.
    pub access: AccessInput,
    pub profile_id: Option<ProfileId>,
}

/// What the checks found.
#[derive(Debug, Clone)]
pub struct TestOutcome {
    pub checks: Vec<Check>,
    pub error: Option<TestError>,
    pub profiles: Vec<Profile>,
}

const CHECKS: [CheckName; 3] = [
    CheckName::CredentialsComplete,
    CheckName::TokenExchange,
    CheckName::ApiProbe,
];

struct Recorder {
    checks: Vec<Check>,
}

impl Recorder {
    fn record(&mut self, status: CheckStatus, started: Instant) {
        let name = CHECKS[self.checks.len()];
        self.checks.push(Check {
            name,
            status,
            duration_ms: started.elapsed().as_millis() as u64,
        });
    }

    fn fail(mut self, started: Instant, error: TestError, profiles: Vec<Profile>) -> TestOutcome {
        self.record(CheckStatus::Failed, started);
        while self.checks.len() < CHECKS.len() {
            let name = CHECKS[self.checks.len()];
            self.checks.push(Check {
                name,
                status: CheckStatus::Skipped,
                duration_ms: 0,
            });
        }
        TestOutcome {
            checks: self.checks,
            error: Some(error),
            profiles,
        }
    }
}

/// Runs the checks; `exchange` obtains the access token from the complete values (the caller
/// decides how: a shared refresh for stored values, a grant of its own for candidate ones). Its
/// outer error (`E`) means the test could not be run at all — say, its own store failed — and
/// ends the checks without an outcome; its inner error is the token exchange's failed check.
pub async fn run_checks<F, Fut, E>(
    client: &ChannelAdvisorClient,
    input: &TestInput,
    exchange: F,
) -> Result<TestOutcome, E>
where
    F: FnOnce(ApplicationId, SharedSecret, Access) -> Fut,
    Fut: Future<Output = Result<Result<SecretString, TestError>, E>>,
{
    let mut rec = Recorder {
        checks: Vec::with_capacity(3),
    };

    let started = Instant::now();
    let (app, secret, access) = match (
        &input.application_id,
        &input.shared_secret,
        input.access.complete(),
    ) {
        (Some(a), Some(s), Ok(access)) => (a, s, access),
        (app, secret, access) => {
            let mut missing: Vec<&'static str> = [
                (app.is_none(), "application_id"),
                (secret.is_none(), "shared_secret"),
            ]
            .into_iter()
            .filter(|(m, _)| *m)
            .map(|(_, f)| f)
            .collect();
            missing.extend(access.err().unwrap_or_default());
            return Ok(rec.fail(started, TestError::incomplete(missing), vec![]));
        }
    };
    rec.record(CheckStatus::Passed, started);

    let started = Instant::now();
    let access_token = match exchange(app.clone(), secret.clone(), access).await? {
        Ok(t) => t,
        Err(e) => return Ok(rec.fail(started, e, vec![])),
    };
    rec.record(CheckStatus::Passed, started);

    let started = Instant::now();
    let profiles = match client.profiles(&access_token).await {
        Ok(p) => p,
        Err(e) => return Ok(rec.fail(started, e, vec![])),
    };
    if let Some(wanted) = input.profile_id.map(ProfileId::get) {
        if !profiles.iter().any(|p| p.id == wanted) {
            let ids: Vec<i64> = profiles.iter().map(|p| p.id).collect();
            return Ok(rec.fail(
                started,
                TestError::profile_not_authorized(wanted, &ids),
                profiles,
            ));
        }
    }
    rec.record(CheckStatus::Passed, started);
    Ok(TestOutcome {
        checks: rec.checks,
        error: None,
        profiles,
    })
}

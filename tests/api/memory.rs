//! Hot reads (a company's token, its connection status) are served from memory for a moment.
//! These tests put a `serve` process of its own beside the test app on one database: unlike a
//! second in-process app it does not see the test app's commits, so only the time window and the
//! settling of saves and tests keep it from answering with what was true before a change.

use std::process::Child;

use secrecy::ExposeSecret;
use serde_json::{json, Value};

use crate::cli::{bare, start};
use crate::connection::{app_against, sim, test_connection, APP, REFRESH, SECRET};
use crate::helpers::{admin, Backend, TestApp, JWT_SECRET};
use crate::on_both_backends;

on_both_backends!(nothing_old_is_served_from_memory_after_a_change_answered);

/// `ca-connector serve` as a separate process on `first`'s database.
pub struct OtherProcess {
    child: Child,
    base: String,
    client: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl OtherProcess {
    pub fn beside(first: &TestApp, upstream: &str) -> OtherProcess {
        let dir = tempfile::TempDir::new().unwrap();
        let mut cmd = bare(dir.path());
        cmd.env("CA_CONNECTOR_DATABASE_URL", &first.database_url)
            .env(
                "CA_CONNECTOR_ENCRYPTION_KEYS",
                first.keys_spec.expose_secret(),
            )
            .env("CA_CONNECTOR_JWT_SECRET", JWT_SECRET)
            .env("CA_CONNECTOR_CHANNELADVISOR_URL", upstream)
            .env("CA_CONNECTOR_DATA_DIR", dir.path());
        // `start` keeps reading its log, so a full pipe never stalls it.
        let (child, port, _logs, _) = start(cmd);
        OtherProcess {
            child,
            base: format!("http://127.0.0.1:{port}"),
            client: reqwest::Client::new(),
            _dir: dir,
        }
    }

    /// One call as company's admin; the named string field of the 200 answer.
    async fn field(
        &self,
        method: reqwest::Method,
        path: &str,
        company: &str,
        name: &str,
    ) -> String {
        let res = self
            .client
            .request(
                method,
                format!("{}/api/v1/companies/{company}/{path}", self.base),
            )
            .bearer_auth(admin(&[company]))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        res.json::<Value>().await.unwrap()[name]
            .as_str()
            .unwrap()
            .to_string()
    }

    pub async fn token(&self, company: &str) -> String {
        self.field(
            reqwest::Method::POST,
            "access-token",
            company,
            "access_token",
        )
        .await
    }

    /// A credentials write as company's admin; the answer's status.
    pub async fn write_credentials(
        &self,
        method: reqwest::Method,
        company: &str,
        body: Option<Value>,
    ) -> u16 {
        let mut req = self
            .client
            .request(
                method,
                format!("{}/api/v1/companies/{company}/credentials", self.base),
            )
            .bearer_auth(admin(&[company]));
        if let Some(body) = body {
            req = req.json(&body);
        }
        req.send().await.unwrap().status().as_u16()
    }

    /// Any call as company's admin, with an optional JSON body: the status and the body.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path_in_company: &str,
        company: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .client
            .request(
                method,
                format!("{}/api/v1/companies/{company}/{path_in_company}", self.base),
            )
            .bearer_auth(admin(&[company]));
        if let Some(body) = body {
            req = req.json(&body);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    pub async fn state(&self, company: &str) -> String {
        self.field(reqwest::Method::GET, "connection", company, "state")
            .await
    }
}

impl Drop for OtherProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn nothing_old_is_served_from_memory_after_a_change_answered(backend: Backend) {
    let sim = sim(0);
    let a = app_against(&backend, &sim.url(), &[]).await;
    let b = OtherProcess::beside(&a, &sim.url());
    a.put_credentials(
        "acme",
        &json!({"application_id": APP, "shared_secret": SECRET, "refresh_token": REFRESH}),
    )
    .await;
    let mut old = b.token("acme").await;
    for round in 1..=5 {
        // The other process has just read the token: it holds a copy in memory.
        assert_eq!(b.token("acme").await, old, "a copy serves repeated calls");
        a.patch_credentials("acme", &json!({"profile_id": round}))
            .await;
        let new = b.token("acme").await;
        assert_ne!(
            new, old,
            "round {round}: a token of the old credentials after the save answered"
        );
        old = new;
    }

    // The status, likewise, after a save and after a Test Connection (with no profile named,
    // so the simulator authorizes the test).
    a.patch_credentials("acme", &json!({"profile_id": null}))
        .await;
    assert_eq!(b.state("acme").await, "untested");
    test_connection(&a, "acme", None).await;
    assert_eq!(
        b.state("acme").await,
        "connected",
        "status after the test answered"
    );
    a.patch_credentials("acme", &json!({"profile_id": 99}))
        .await;
    assert_eq!(
        b.state("acme").await,
        "untested",
        "status after the save answered"
    );
}

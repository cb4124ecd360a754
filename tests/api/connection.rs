//! Contract §4: Test Connection through real HTTP against the simulator and wiremock.

use std::sync::Arc;
use std::time::{Duration, Instant};

use connector::sim::{SimConfig, Simulator};
use serde_json::{json, Value};
use wiremock::matchers::{body_string, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{
    admin, assert_problem, captured_logs, spawn_app_with, token, AppOptions, Backend, TestApp,
};
use crate::on_both_backends;

on_both_backends!(
    success_stores_token_and_sets_connected,
    failure_sets_failed_and_saving_resets,
    candidate_tests_change_nothing_stored,
    rotated_refresh_token_replaces_the_stored_one,
    history_is_newest_first_and_limited,
);

pub const APP: &str = "demo-app";
pub const SECRET: &str = "demo-shared-secret-0001";
pub const REFRESH: &str = "demo-refresh-token-0001";

pub fn sim(latency_ms: u64) -> Simulator {
    let mut config = SimConfig {
        latency: Duration::from_millis(latency_ms),
        ..Default::default()
    };
    config
        .refresh_tokens
        .insert("two-profiles-token-0001".into(), vec![111, 222]);
    Simulator::start(config, "127.0.0.1:0").unwrap()
}

pub async fn app_against(backend: &Backend, upstream: &str, extra: &[&str]) -> TestApp {
    let mut args = vec!["--channeladvisor-url".to_string(), upstream.to_string()];
    args.extend(extra.iter().map(|s| s.to_string()));
    spawn_app_with(
        backend,
        AppOptions {
            extra_args: args,
            ..Default::default()
        },
    )
    .await
}

pub async fn test_connection(app: &TestApp, company: &str, body: Option<Value>) -> Value {
    let mut req = app
        .client
        .post(app.url(&format!("/api/v1/companies/{company}/connection/test")))
        .bearer_auth(admin(&[company]));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let res = req.send().await.unwrap();
    assert_eq!(res.status(), 200, "a test that ran answers 200");
    assert_eq!(res.headers()["cache-control"], "no-store");
    res.json().await.unwrap()
}

/// A complete set of credentials the simulator accepts.
pub fn valid() -> Value {
    json!({"application_id": APP, "shared_secret": SECRET, "refresh_token": REFRESH})
}

fn statuses(result: &Value) -> Vec<String> {
    result["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            format!(
                "{}:{}",
                c["name"].as_str().unwrap(),
                c["status"].as_str().unwrap()
            )
        })
        .collect()
}

async fn status(app: &TestApp, company: &str) -> Value {
    app.get_json(
        &format!("/api/v1/companies/{company}/connection"),
        &admin(&[company]),
    )
    .await
    .1
}

async fn success_stores_token_and_sets_connected(backend: Backend) {
    let sim = sim(0);
    let app = app_against(&backend, &sim.url(), &[]).await;
    app.put_credentials("acme", &json!({"application_id": APP, "shared_secret": SECRET, "refresh_token": REFRESH, "profile_id": 12345678})).await;
    assert_eq!(status(&app, "acme").await["state"], "untested");

    let result = test_connection(&app, "acme", None).await;
    assert_eq!(result["outcome"], "connected", "{result}");
    assert_eq!(result["candidate"], false);
    assert_eq!(result["error"], Value::Null);
    assert_eq!(
        statuses(&result),
        [
            "credentials_complete:passed",
            "token_exchange:passed",
            "api_probe:passed"
        ]
    );
    assert_eq!(
        result["profiles"],
        json!([{"id": 12345678, "account_name": "Account 12345678", "company_name": "Company 12345678"}])
    );
    assert_eq!(result["triggered_by"], "admin@test");
    assert!(
        result["id"].is_string()
            && result["started_at"].is_string()
            && result["duration_ms"].is_u64()
    );
    assert_eq!((sim.token_calls(), sim.profile_calls()), (1, 1));

    let s = status(&app, "acme").await;
    assert_eq!(s["state"], "connected");
    assert_eq!(s["last_test"]["id"], result["id"]);
    assert!(s["last_success_at"].is_string());
    assert!(
        s["access_token_expires_at"].is_string(),
        "the token obtained is cached: {s}"
    );
    assert_eq!(s["missing"], json!([]));

    let body = format!("{result}{s}");
    let logs = captured_logs();
    for secret in [SECRET, REFRESH, "sim-access-"] {
        assert!(!body.contains(secret), "{secret} in a response");
        assert!(!logs.contains(secret), "{secret} in the logs");
    }
}

async fn failure_sets_failed_and_saving_resets(backend: Backend) {
    let sim = sim(0);
    let app = app_against(&backend, &sim.url(), &[]).await;
    app.put_credentials("acme", &valid()).await;
    test_connection(&app, "acme", None).await;
    assert_eq!(status(&app, "acme").await["state"], "connected");

    app.patch_credentials("acme", &json!({"refresh_token": "revoked-token-000000"}))
        .await;
    let s = status(&app, "acme").await;
    assert_eq!(s["state"], "untested", "a save resets the state");
    assert_eq!(
        s["access_token_expires_at"],
        Value::Null,
        "a save drops the cached token"
    );

    let result = test_connection(&app, "acme", None).await;
    assert_eq!(result["error"]["code"], "invalid_refresh_token");
    let s = status(&app, "acme").await;
    assert_eq!(s["state"], "failed");
    assert!(
        s["last_success_at"].is_string(),
        "the last success is remembered"
    );
    assert_eq!(s["last_test"]["error"]["code"], "invalid_refresh_token");

    app.patch_credentials("acme", &json!({"refresh_token": null}))
        .await;
    let s = status(&app, "acme").await;
    assert_eq!(
        (s["state"].as_str(), s["missing"].clone()),
        (Some("incomplete"), json!(["refresh_token"]))
    );
    let result = test_connection(&app, "acme", None).await;
    assert_eq!(result["error"]["code"], "incomplete_credentials");
    assert_eq!(status(&app, "acme").await["state"], "incomplete");

    let unknown = status(&app, "nobody").await;
    assert_eq!(unknown["state"], "not_configured");
    assert_eq!(unknown["last_test"], Value::Null);
    let result = test_connection(&app, "nobody", None).await;
    assert_eq!(
        result["error"]["fields"],
        json!(["application_id", "shared_secret", "refresh_token"])
    );
    assert_eq!(status(&app, "nobody").await["state"], "not_configured");

    assert_eq!(app.delete_credentials("acme").await.status(), 204);
    assert_eq!(status(&app, "acme").await["state"], "not_configured");
}

async fn candidate_tests_change_nothing_stored(backend: Backend) {
    let sim = sim(0);
    let app = app_against(&backend, &sim.url(), &[]).await;
    app.put_credentials("acme", &json!({"application_id": APP, "shared_secret": "wrong-secret-000000", "refresh_token": REFRESH})).await;
    let before = status(&app, "acme").await;

    let result = test_connection(&app, "acme", Some(json!({"shared_secret": SECRET}))).await;
    assert_eq!(result["outcome"], "connected");
    assert_eq!(result["candidate"], true);
    let after = status(&app, "acme").await;
    assert_eq!(after, before, "status and token cache untouched");

    let history = app
        .get_json(
            "/api/v1/companies/acme/connection/history",
            &admin(&["acme"]),
        )
        .await
        .1;
    assert_eq!(history["tests"][0]["id"], result["id"]);
    assert_eq!(history["tests"][0]["candidate"], true);

    // Invalid candidate values are refused like a save would refuse them.
    let res = app
        .client
        .post(app.url("/api/v1/companies/acme/connection/test"))
        .bearer_auth(admin(&["acme"]))
        .json(&json!({"refresh_token": "a b"}))
        .send()
        .await
        .unwrap();
    let body = assert_problem(res, 422, "validation_failed").await;
    assert_eq!(body["errors"][0]["field"], "refresh_token");
    // A candidate with a value cleared tests without it: nothing is sent upstream.
    let calls = sim.token_calls();
    let result = test_connection(&app, "acme", Some(json!({"refresh_token": null}))).await;
    assert_eq!(result["error"]["code"], "incomplete_credentials");
    assert_eq!(sim.token_calls(), calls);
}

async fn rotated_refresh_token_replaces_the_stored_one(backend: Backend) {
    let sim = sim(0);
    let app = app_against(&backend, &sim.url(), &[]).await;
    app.put_credentials("acme", &json!({"application_id": APP, "shared_secret": SECRET, "refresh_token": "sim-fault-rotate"})).await;
    let result = test_connection(&app, "acme", None).await;
    assert_eq!(result["outcome"], "connected");
    let creds = app
        .get_json("/api/v1/companies/acme/credentials", &admin(&["acme"]))
        .await
        .1;
    let last4 = creds["refresh_token"]["last4"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(
        last4, "tate",
        "the rotated token replaced the stored one: {creds}"
    );
    assert_eq!(
        creds["shared_secret"]["last4"], "0001",
        "the secret still opens"
    );
    let audit = app
        .get_json("/api/v1/companies/acme/audit", &admin(&["acme"]))
        .await
        .1;
    assert_eq!(audit["entries"][0]["action"], "rotated");
    assert_eq!(audit["entries"][0]["actor"], "channeladvisor");
    // The new token works.
    let again = test_connection(&app, "acme", None).await;
    assert_eq!(again["outcome"], "connected", "{again}");
}

async fn history_is_newest_first_and_limited(backend: Backend) {
    let sim = sim(0);
    let app = app_against(&backend, &sim.url(), &[]).await;
    app.put_credentials("acme", &valid()).await;
    let mut ids = Vec::new();
    for body in [
        None,
        Some(json!({"refresh_token": "bad-token-00000001"})),
        None,
    ] {
        ids.push(
            test_connection(&app, "acme", body).await["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    let t = token(&["acme"], "connection:read");
    let history = app
        .get_json("/api/v1/companies/acme/connection/history", &t)
        .await
        .1;
    let got: Vec<&str> = history["tests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(got, vec![ids[2].as_str(), ids[1].as_str(), ids[0].as_str()]);
    let limited = app
        .get_json("/api/v1/companies/acme/connection/history?limit=2", &t)
        .await
        .1;
    assert_eq!(limited["tests"].as_array().unwrap().len(), 2);
    let res = app
        .client
        .post(app.url("/api/v1/companies/acme/connection/test"))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert_problem(res, 403, "insufficient_scope").await;
    let res = app
        .client
        .get(app.url("/api/v1/companies/acme/connection"))
        .bearer_auth(token(&["beta"], "connection:read"))
        .send()
        .await
        .unwrap();
    assert_problem(res, 403, "company_forbidden").await;
}

/// One candidate test per case; returns the error object.
async fn error_for(app: &TestApp, body: Value) -> Value {
    let result = test_connection(app, "acme", Some(body)).await;
    assert_eq!(result["outcome"], "failed", "{result}");
    let error = result["error"].clone();
    assert!(error["message"].as_str().unwrap().len() > 20, "{error}");
    assert!(error["hint"].as_str().unwrap().len() > 20, "{error}");
    error
}

fn with_token(refresh: &str) -> Value {
    json!({"application_id": APP, "shared_secret": SECRET, "refresh_token": refresh})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_code_of_the_taxonomy() {
    let sim = sim(0);
    let app = app_against(
        &Backend::Sqlite,
        &sim.url(),
        &["--upstream-timeout-secs", "1"],
    )
    .await;
    let cases: Vec<(Value, &str, Value, Option<u16>)> = vec![
        (
            json!({"application_id": APP}),
            "incomplete_credentials",
            json!(["shared_secret", "refresh_token"]),
            None,
        ),
        (
            json!({"application_id": APP, "shared_secret": "wrong-secret-000000", "refresh_token": REFRESH}),
            "invalid_client",
            json!(["application_id", "shared_secret"]),
            Some(401),
        ),
        (
            with_token("sim-fault-401-bare"),
            "invalid_client",
            json!(["application_id", "shared_secret"]),
            Some(401),
        ),
        (
            with_token("sim-fault-400-invalid-client"),
            "invalid_client",
            json!(["application_id", "shared_secret"]),
            Some(400),
        ),
        (
            with_token("sim-fault-unauthorized-client"),
            "invalid_client",
            json!(["application_id", "shared_secret"]),
            Some(400),
        ),
        (
            with_token("sim-fault-302"),
            "upstream_protocol_error",
            json!([]),
            Some(302),
        ),
        (
            with_token("sim-fault-404"),
            "upstream_protocol_error",
            json!([]),
            Some(404),
        ),
        (
            with_token("no-such-token-0000"),
            "invalid_refresh_token",
            json!(["refresh_token"]),
            Some(400),
        ),
        (
            with_token("sim-fault-400-bare"),
            "credentials_rejected",
            json!(["application_id", "shared_secret", "refresh_token"]),
            Some(400),
        ),
        (
            json!({"application_id": APP, "shared_secret": SECRET, "refresh_token": REFRESH, "profile_id": 999}),
            "profile_not_authorized",
            json!(["profile_id"]),
            None,
        ),
        (
            with_token("sim-probe-401"),
            "access_denied",
            json!([]),
            Some(401),
        ),
        (
            with_token("sim-probe-403"),
            "access_denied",
            json!([]),
            Some(403),
        ),
        (
            with_token("sim-fault-429"),
            "rate_limited",
            json!([]),
            Some(429),
        ),
        (
            with_token("sim-probe-429"),
            "rate_limited",
            json!([]),
            Some(429),
        ),
        (
            with_token("sim-fault-html500"),
            "upstream_unavailable",
            json!([]),
            Some(500),
        ),
        (
            with_token("sim-probe-500"),
            "upstream_unavailable",
            json!([]),
            Some(500),
        ),
        (
            with_token("sim-fault-reset"),
            "upstream_unavailable",
            json!([]),
            None,
        ),
        (
            with_token("sim-fault-html200"),
            "upstream_protocol_error",
            json!([]),
            Some(200),
        ),
        (
            with_token("sim-fault-no-token"),
            "upstream_protocol_error",
            json!([]),
            Some(200),
        ),
        (
            with_token("sim-probe-html"),
            "upstream_protocol_error",
            json!([]),
            Some(200),
        ),
    ];
    for (body, code, fields, upstream_status) in cases {
        let error = error_for(&app, body.clone()).await;
        assert_eq!(error["code"], code, "{body} → {error}");
        assert_eq!(error["fields"], fields, "{code}");
        assert_eq!(
            error["upstream_status"],
            json!(upstream_status),
            "{code}: {error}"
        );
    }
    let e = error_for(&app, with_token("sim-fault-429")).await;
    assert_eq!(e["retry_after_seconds"], 60, "60 without Retry-After");
    let e = error_for(&app, with_token("sim-fault-429-retry-7")).await;
    assert_eq!(e["retry_after_seconds"], 7);
    let e = error_for(&app, json!({"application_id": APP, "shared_secret": SECRET, "refresh_token": REFRESH, "profile_id": 999})).await;
    assert!(
        e["message"].as_str().unwrap().contains("12345678"),
        "names the available profiles: {e}"
    );

    // Check statuses: the failing step is failed, the rest skipped.
    let r = test_connection(&app, "acme", Some(with_token("sim-probe-403"))).await;
    assert_eq!(
        statuses(&r),
        [
            "credentials_complete:passed",
            "token_exchange:passed",
            "api_probe:failed"
        ]
    );
    let r = test_connection(&app, "acme", Some(json!({}))).await;
    assert_eq!(
        statuses(&r),
        [
            "credentials_complete:failed",
            "token_exchange:skipped",
            "api_probe:skipped"
        ]
    );
    assert_eq!(
        r["candidate"], false,
        "an empty body is a test of the stored values"
    );

    // Nothing refused at the TCP level hangs either.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://127.0.0.1:{}", closed.local_addr().unwrap().port());
    drop(closed);
    let app2 = app_against(&Backend::Sqlite, &dead, &[]).await;
    let e = error_for(&app2, valid()).await;
    assert_eq!(e["code"], "upstream_unavailable");
    // A refused connection is most often a wrong setting, not an outage: the message says where
    // it tried and the hint names the setting.
    assert!(e["message"].as_str().unwrap().contains(&dead), "{e}");
    assert!(e["message"].as_str().unwrap().contains("refused"), "{e}");
    assert!(
        e["hint"].as_str().unwrap().contains("--channeladvisor-url"),
        "{e}"
    );
    // https:// on the simulator's plain-http port: the TLS handshake fails, said the same way.
    let plain = self::sim(0);
    let tls_on_plain = plain.url().replace("http://", "https://");
    let app3 = app_against(&Backend::Sqlite, &tls_on_plain, &[]).await;
    let e = error_for(&app3, valid()).await;
    assert_eq!(e["code"], "upstream_unavailable");
    assert!(
        e["message"].as_str().unwrap().contains(&tls_on_plain),
        "{e}"
    );
    assert!(
        e["hint"].as_str().unwrap().contains("--channeladvisor-url"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadlines_are_honoured_within_a_second() {
    let sim = sim(0);
    let app = app_against(
        &Backend::Sqlite,
        &sim.url(),
        &["--upstream-timeout-secs", "1"],
    )
    .await;
    for token in ["sim-fault-hang", "sim-probe-hang"] {
        let started = Instant::now();
        let e = error_for(&app, with_token(token)).await;
        let took = started.elapsed();
        assert_eq!(e["code"], "upstream_timeout", "{token}");
        assert!(e["message"].as_str().unwrap().contains("1 seconds"));
        assert!(
            took >= Duration::from_millis(950) && took < Duration::from_secs(2),
            "{token}: {took:?}"
        );
    }
}

/// The exact wire format of §8, checked by an independent fake.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wire_format_of_the_grant_and_the_probe() {
    let server = MockServer::start().await;
    // base64("app%3A1:s%26cret+%2B") — id and secret form-urlencoded before Basic (RFC 6749 §2.3.1).
    Mock::given(method("POST"))
        .and(path("/oauth2/token"))
        .and(header(
            "authorization",
            "Basic YXBwJTNBMTpzJTI2Y3JldCUyQjEyMw==",
        ))
        .and(header("content-type", "application/x-www-form-urlencoded"))
        .and(body_string(
            "grant_type=refresh_token&refresh_token=rt%2B%2F%3D123",
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"access_token": "at-1", "token_type": "bearer", "expires_in": 3600}),
        ))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/Profiles"))
        .and(header("authorization", "Bearer at-1"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(
                json!({"value": [{"ID": 5, "AccountName": "A", "CompanyName": "C"}]}),
            ),
        )
        .expect(1)
        .mount(&server)
        .await;
    let app = app_against(&Backend::Sqlite, &server.uri(), &[]).await;
    let result = test_connection(&app, "acme", Some(json!({"application_id": "app:1", "shared_secret": "s&cret+123", "refresh_token": "rt+/=123"}))).await;
    assert_eq!(result["outcome"], "connected", "{result}");
    assert_eq!(result["profiles"][0]["id"], 5);
}

/// Five clicks at once on one company share one upstream exchange and one result.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_clicks_share_one_exchange() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/oauth2/token"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_delay(Duration::from_millis(300))
                .set_body_json(json!({"access_token": "at-1", "expires_in": 3600})),
        )
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/Profiles"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"value": []})))
        .expect(1)
        .mount(&server)
        .await;
    let app = Arc::new(app_against(&Backend::Sqlite, &server.uri(), &[]).await);
    app.put_credentials("acme", &valid()).await;
    let clicks: Vec<_> = (0..5)
        .map(|_| {
            let app = app.clone();
            tokio::spawn(async move { test_connection(&app, "acme", None).await })
        })
        .collect();
    let mut ids = Vec::new();
    for c in clicks {
        ids.push(c.await.unwrap()["id"].as_str().unwrap().to_string());
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "one result for all clicks");
    let history = app
        .get_json(
            "/api/v1/companies/acme/connection/history",
            &admin(&["acme"]),
        )
        .await
        .1;
    assert_eq!(history["tests"].as_array().unwrap().len(), 1);
}

/// At most --upstream-concurrency calls in flight per Application ID.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_concurrency_per_application_is_capped() {
    let sim = sim(150);
    let app = Arc::new(
        app_against(
            &Backend::Sqlite,
            &sim.url(),
            &["--upstream-concurrency", "2"],
        )
        .await,
    );
    let tests: Vec<_> = (0..8)
        .map(|i| {
            let app = app.clone();
            // Distinct companies, so no two tests share a run.
            tokio::spawn(
                async move { test_connection(&app, &format!("c{i}"), Some(valid())).await },
            )
        })
        .collect();
    for t in tests {
        assert_eq!(t.await.unwrap()["outcome"], "connected");
    }
    let max = sim
        .stats()
        .max_in_flight_per_app
        .load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(
        max, 2,
        "never more than 2 in flight, and the cap was reached"
    );
}

/// Answers are read with a size cap: a 2 MiB body is not ChannelAdvisor's and is not read further.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_answers_are_refused() {
    let server = MockServer::start().await;
    let huge = format!("{{\"access_token\": \"{}\"}}", "a".repeat(2 * 1024 * 1024));
    Mock::given(method("POST"))
        .and(path("/oauth2/token"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(huge, "application/json"))
        .expect(1)
        .mount(&server)
        .await;
    let app = app_against(&Backend::Sqlite, &server.uri(), &[]).await;
    let e = error_for(&app, valid()).await;
    assert_eq!(e["code"], "upstream_protocol_error");
    assert!(
        e["message"].as_str().unwrap().contains("larger than 1 MiB"),
        "{e}"
    );
}

/// The simulator is as strict as ChannelAdvisor about access tokens: one works until its
/// `expires_in` or until it is revoked, then the API answers 401.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulator_access_tokens_expire_and_can_be_revoked() {
    let sim = Simulator::start(
        SimConfig {
            token_lifetime: Duration::from_secs(1),
            ..Default::default()
        },
        "127.0.0.1:0",
    )
    .unwrap();
    let http = reqwest::Client::new();
    let grant = || async {
        let body: Value = http
            .post(format!("{}/oauth2/token", sim.url()))
            .basic_auth(APP, Some(SECRET))
            .form(&[("grant_type", "refresh_token"), ("refresh_token", REFRESH)])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(body["expires_in"], 1, "{body}");
        body["access_token"].as_str().unwrap().to_string()
    };
    let probe = |token: String| {
        let http = http.clone();
        let url = format!("{}/v1/Profiles", sim.url());
        async move {
            http.get(url)
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    let token = grant().await;
    assert_eq!(probe(token.clone()).await, 200);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(probe(token).await, 401, "expired");

    let token = grant().await;
    assert_eq!(probe(token.clone()).await, 200);
    let res = http
        .post(format!("{}/_sim/revoke", sim.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    assert_eq!(probe(token).await, 401, "revoked");
}

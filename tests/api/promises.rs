//! Promises the docs make that no other test held: each is made to happen here, on purpose.

use std::time::{Duration, Instant};

use diesel::prelude::*;
use serde_json::{json, Value};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::connection::{app_against, sim, test_connection, valid, APP, SECRET};
use crate::helpers::{admin, assert_problem, poll_until, spawn_app, Backend, TestApp};
use crate::on_both_backends;
use crate::tokens::issue;
use crate::webhooks::{received, subscribe};

on_both_backends!(
    a_crashed_instances_lease_expires_and_another_refreshes,
    a_delete_overtaking_a_refresh_hands_out_no_token,
    a_test_overtaken_by_a_save_does_not_set_the_state,
    a_test_completes_and_is_recorded_when_its_caller_disconnects,
    a_permanent_rejection_is_remembered_then_asked_again,
    candidate_and_scheduled_tests_emit_connection_tested,
    deleting_a_subscription_drops_its_pending_deliveries,
    upstream_calls_per_application_stay_within_the_limit,
    a_web_hook_secret_that_does_not_open_fails_only_its_own_deliveries,
);

fn with_conn<T>(
    app: &crate::helpers::TestApp,
    f: impl FnOnce(&mut schema::AnyConnection) -> T,
) -> T {
    let db = app.database();
    let mut conn = db.get().unwrap();
    f(&mut conn)
}

/// An instance that took the refresh lease and died leaves it behind; once it runs out another
/// instance takes it and refreshes (one upstream call).
async fn a_crashed_instances_lease_expires_and_another_refreshes(backend: Backend) {
    use schema::schema::credentials::dsl;
    let sim = sim(0);
    let app = app_against(&backend, &sim.url(), &[]).await;
    app.put_credentials("acme", &valid()).await;
    let until = chrono::Utc::now().naive_utc() + chrono::Duration::seconds(2);
    with_conn(&app, |conn| {
        diesel::update(dsl::credentials.find("acme"))
            .set((
                dsl::token_lease_until.eq(Some(until)),
                dsl::token_lease_owner.eq(Some("crashed-instance")),
            ))
            .execute(conn)
            .unwrap()
    });
    let started = Instant::now();
    let res = issue(&app, "acme", "").await;
    assert_eq!(res.status(), 200);
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "waited for the dead instance's lease: {:?}",
        started.elapsed()
    );
    assert_eq!(sim.token_calls(), 1);
}

/// A delete that lands while a refresh is in flight: the refresh's token is neither handed out
/// nor cached, and its caller hears that the company is no longer configured.
async fn a_delete_overtaking_a_refresh_hands_out_no_token(backend: Backend) {
    let sim = sim(600);
    let app = app_against(&backend, &sim.url(), &[]).await;
    app.put_credentials("acme", &valid()).await;
    let asking = issue(&app, "acme", "");
    let deleting = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        app.delete_credentials("acme").await
    };
    let (token, deleted) = tokio::join!(asking, deleting);
    assert_eq!(deleted.status(), 204);
    assert_eq!(sim.token_calls(), 1, "the refresh was in flight");
    assert_problem(token, 409, "connection_not_ready").await;
    let status = app
        .get_json("/api/v1/companies/acme/connection", &admin(&["acme"]))
        .await
        .1;
    assert_eq!(status["state"], "not_configured");
    assert_eq!(status["access_token_expires_at"], Value::Null);
    let cached: i64 = with_conn(&app, |conn| {
        schema::schema::access_tokens::table
            .count()
            .get_result(conn)
            .unwrap()
    });
    assert_eq!(cached, 0, "nothing cached for the deleted company");
}

/// A test whose credentials were saved anew while it ran is recorded, but does not set the
/// state: it speaks of the old values.
async fn a_test_overtaken_by_a_save_does_not_set_the_state(backend: Backend) {
    let sim = sim(600);
    let app = app_against(&backend, &sim.url(), &[]).await;
    app.put_credentials("acme", &valid()).await;
    let testing = test_connection(&app, "acme", None);
    let saving = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        app.patch_credentials("acme", &json!({"profile_id": 12345678}))
            .await
    };
    let (result, saved) = tokio::join!(testing, saving);
    assert!(saved.status().is_success());
    assert_eq!(result["outcome"], "connected", "{result}");
    let status = app
        .get_json("/api/v1/companies/acme/connection", &admin(&["acme"]))
        .await
        .1;
    assert_eq!(status["state"], "untested", "{status}");
    let history = app
        .get_json(
            "/api/v1/companies/acme/connection/history",
            &admin(&["acme"]),
        )
        .await
        .1;
    assert_eq!(history["tests"][0]["id"], result["id"], "recorded");
}

/// The admin closes the page mid-test: the test still completes, is recorded and sets the state.
async fn a_test_completes_and_is_recorded_when_its_caller_disconnects(backend: Backend) {
    let sim = sim(500);
    let app = app_against(&backend, &sim.url(), &[]).await;
    app.put_credentials("acme", &valid()).await;
    let gone = app
        .client
        .post(app.url("/api/v1/companies/acme/connection/test"))
        .bearer_auth(admin(&["acme"]))
        .timeout(Duration::from_millis(150))
        .send()
        .await;
    assert!(gone.is_err_and(|e| e.is_timeout()), "the caller left first");
    let read = || async {
        app.get_json("/api/v1/companies/acme/connection", &admin(&["acme"]))
            .await
            .1
    };
    let status = poll_until(Duration::from_secs(10), read, |s| s["state"] != "untested").await;
    assert_eq!(status["state"], "connected", "{status}");
    assert_eq!(status["last_test"]["triggered_by"], "admin@test");
    let history = app
        .get_json(
            "/api/v1/companies/acme/connection/history",
            &admin(&["acme"]),
        )
        .await
        .1;
    assert_eq!(history["tests"].as_array().unwrap().len(), 1);
    // The finished run left nothing behind: the same test again runs anew, it is not replayed.
    let again = test_connection(&app, "acme", None).await;
    assert_ne!(again["id"], status["last_test"]["id"], "a new run");
    assert_eq!(sim.token_calls(), 2);
}

/// A refresh token ChannelAdvisor refused is remembered for 60 s (callers get the same answer
/// without a call), then asked about again.
async fn a_permanent_rejection_is_remembered_then_asked_again(backend: Backend) {
    use schema::schema::credentials::dsl;
    let sim = sim(0);
    let app = app_against(&backend, &sim.url(), &[]).await;
    app.put_credentials(
        "acme",
        &json!({"application_id": APP, "shared_secret": SECRET, "refresh_token": "revoked-token-0000"}),
    )
    .await;
    for _ in 0..3 {
        let body =
            assert_problem(issue(&app, "acme", "").await, 409, "invalid_refresh_token").await;
        assert_eq!(body["fields"], json!(["refresh_token"]));
    }
    assert_eq!(
        sim.token_calls(),
        1,
        "remembered: one call for three callers"
    );
    // 61 seconds later, as far as the remembered error knows.
    with_conn(&app, |conn| {
        let at: Option<chrono::NaiveDateTime> = dsl::credentials
            .find("acme")
            .select(dsl::token_error_at)
            .first(conn)
            .unwrap();
        let at = at.expect("the rejection is remembered in the row");
        diesel::update(dsl::credentials.find("acme"))
            .set(dsl::token_error_at.eq(Some(at - chrono::Duration::seconds(61))))
            .execute(conn)
            .unwrap()
    });
    // Past the in-process read cache too.
    tokio::time::sleep(crate::read_window() * 2).await;
    assert_problem(issue(&app, "acme", "").await, 409, "invalid_refresh_token").await;
    assert_eq!(sim.token_calls(), 2, "asked again after 60 s");
}

/// `connection.tested` is emitted for candidate tests and scheduled health checks as well.
async fn candidate_and_scheduled_tests_emit_connection_tested(backend: Backend) {
    let sim = sim(0);
    let receiver = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&receiver)
        .await;
    let app = app_against(
        &backend,
        &sim.url(),
        &[
            "--webhook-allow-private",
            "--webhook-allow-http",
            "--health-check-interval-secs",
            "1",
        ],
    )
    .await;
    subscribe(
        &app,
        json!({"url": receiver.uri(), "companies": ["acme"], "events": ["connection.tested"]}),
        &["acme"],
    )
    .await;
    app.put_credentials("acme", &valid()).await;
    let candidate = test_connection(&app, "acme", Some(json!({"profile_id": 12345678}))).await;
    assert_eq!(candidate["candidate"], true);
    let read = || async {
        let events: Vec<Value> = receiver
            .received_requests()
            .await
            .unwrap()
            .iter()
            .map(|r| serde_json::from_slice(&r.body).unwrap())
            .collect();
        events
    };
    let events = poll_until(Duration::from_secs(10), read, |events| {
        events
            .iter()
            .any(|e| e["data"]["triggered_by"] == "scheduler")
            && events.iter().any(|e| e["data"]["candidate"] == true)
    })
    .await;
    assert!(
        events.iter().all(|e| e["type"] == "connection.tested"),
        "{events:?}"
    );
    assert!(
        events
            .iter()
            .any(|e| e["data"]["test_id"] == candidate["id"] && e["data"]["candidate"] == true),
        "the candidate test: {events:?}"
    );
    assert!(
        events
            .iter()
            .any(|e| e["data"]["triggered_by"] == "scheduler"),
        "a scheduled test: {events:?}"
    );
}

/// Deleting a subscription drops its deliveries still waiting for a retry.
async fn deleting_a_subscription_drops_its_pending_deliveries(backend: Backend) {
    use schema::schema::webhook_deliveries::dsl;
    let down = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&down)
        .await;
    // Upstream is never called here: any loopback address will do.
    let app = crate::webhooks::app_for_hooks(&backend, "http://127.0.0.1:9", "0,3600").await;
    let hook = subscribe(
        &app,
        json!({"url": down.uri(), "companies": ["acme"], "events": ["credentials.updated"]}),
        &["acme"],
    )
    .await;
    let id = hook["id"].as_str().unwrap().to_string();
    for i in 0..3 {
        app.put_credentials("acme", &json!({"application_id": format!("app-{i}")}))
            .await;
    }
    received(&down, 1, Duration::from_secs(5)).await;
    let pending = |id: String| {
        with_conn(&app, move |conn| {
            dsl::webhook_deliveries
                .filter(dsl::webhook_id.eq(id))
                .filter(dsl::status.eq("pending"))
                .count()
                .get_result::<i64>(conn)
                .unwrap()
        })
    };
    assert_eq!(pending(id.clone()), 3, "waiting for a retry an hour away");
    let res = app
        .client
        .delete(app.url(&format!("/api/v1/webhooks/{id}")))
        .bearer_auth(admin(&["acme"]))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    let left: i64 = with_conn(&app, |conn| {
        dsl::webhook_deliveries
            .filter(dsl::webhook_id.eq(&id))
            .count()
            .get_result(conn)
            .unwrap()
    });
    assert_eq!(left, 0, "no delivery left for a deleted subscription");
}

/// The benchmark's exact counts, on a small size: twenty companies of one application refreshed
/// at once make exactly twenty upstream calls, never more than the limit in flight.
async fn upstream_calls_per_application_stay_within_the_limit(backend: Backend) {
    let sim = sim(100);
    let app = app_against(&backend, &sim.url(), &["--upstream-concurrency", "2"]).await;
    let companies: Vec<String> = (0..20).map(|i| format!("co{i}")).collect();
    for c in &companies {
        app.put_credentials(c, &valid()).await;
    }
    let calls = companies
        .iter()
        .flat_map(|c| (0..5).map(move |_| c.clone()));
    let answers = futures_util::future::join_all(calls.map(|c| {
        let app = &app;
        async move { issue(app, &c, "").await.status().as_u16() }
    }))
    .await;
    assert!(answers.iter().all(|s| *s == 200), "{answers:?}");
    assert_eq!(sim.token_calls(), 20, "one refresh per company");
    let stats: Value = reqwest::get(format!("{}/_sim/stats", sim.url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let in_flight = stats["max_in_flight_per_app"].as_u64().unwrap();
    assert!((1..=2).contains(&in_flight), "{stats}");
}

#[test]
fn help_never_echoes_a_secret_from_the_environment() {
    let dir = tempfile::TempDir::new().unwrap();
    let secrets = [
        (
            "CA_CONNECTOR_JWT_SECRET",
            "jwt-secret-from-the-environment-0123456789",
        ),
        (
            "CA_CONNECTOR_ENCRYPTION_KEYS",
            "k1:c2VjcmV0LWtleS1mcm9tLXRoZS1lbnZpcm9ubWVudC0wMQ==",
        ),
        (
            "CA_CONNECTOR_DATABASE_URL",
            "postgres://ca:password-in-the-url@db.example/ca",
        ),
    ];
    for args in [
        vec!["--help"],
        vec!["serve", "--help"],
        vec!["token", "--help"],
        vec!["rotate-keys", "--help"],
        vec!["check-config", "--help"],
    ] {
        let mut cmd = crate::cli::bare(dir.path());
        cmd.args(&args);
        for (name, value) in secrets {
            cmd.env(name, value);
        }
        let out = crate::cli::OutputWithin::output_within(&mut cmd, crate::cli::LIMIT);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains("Usage"), "{args:?}: {text}");
        for (_, value) in secrets {
            assert!(!text.contains(value), "{args:?} echoed a secret");
        }
        assert!(!text.contains("password-in-the-url"), "{args:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn if_match_star_and_unparseable() {
    let app = spawn_app(&Backend::Sqlite).await;
    app.put_credentials("acme", &json!({"application_id": "app-1"}))
        .await;
    let patch = |if_match: &'static str| {
        app.client
            .patch(app.url("/api/v1/companies/acme/credentials"))
            .bearer_auth(admin(&["acme"]))
            .header("content-type", "application/merge-patch+json")
            .header("if-match", if_match)
            .body(r#"{"application_id": "app-2"}"#)
            .send()
    };
    let res = patch("*").await.unwrap();
    assert_eq!(res.status(), 200, "* imposes nothing");
    assert_eq!(res.headers()["etag"], "\"2\"");
    for bad in ["two", "\"x\"", "W/", ""] {
        let body = assert_problem(patch(bad).await.unwrap(), 412, "version_conflict").await;
        assert_eq!(body["current_version"], 2, "{bad}: {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_caller_request_id_is_replaced() {
    let app = spawn_app(&Backend::Sqlite).await;
    for bad in ["has spaces", "semi;colon", &"x".repeat(65)] {
        let res = app
            .client
            .get(app.url("/healthz"))
            .header("x-request-id", bad)
            .send()
            .await
            .unwrap();
        let id = res.headers()["x-request-id"].to_str().unwrap();
        assert_ne!(id, bad);
        assert!(
            uuid::Uuid::parse_str(id).is_ok(),
            "replaced by a UUID: {id}"
        );
    }
}

/// A migration the database has not applied makes `/readyz` answer 503 until it is applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_is_503_while_a_migration_is_pending() {
    let app = spawn_app(&Backend::Sqlite).await;
    assert_eq!(
        app.client
            .get(app.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // Forget that the newest migration ran: as if this binary were newer than the database.
    let forgotten = with_conn(&app, |conn| {
        diesel::sql_query(
            "DELETE FROM __diesel_schema_migrations WHERE version = (SELECT MAX(version) FROM __diesel_schema_migrations)",
        )
        .execute(conn)
        .unwrap()
    });
    assert_eq!(forgotten, 1, "the newest migration's record was deleted");
    let res = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_problem(res, 503, "not_ready").await;
}

/// A 500 says nothing of its cause: the log has it, under the response's request id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_internal_error_is_problem_json_without_details() {
    let app = spawn_app(&Backend::Sqlite).await;
    app.put_credentials("acme", &json!({"application_id": "app-1"}))
        .await;
    with_conn(&app, |conn| {
        diesel::sql_query("DROP TABLE audit_entries")
            .execute(conn)
            .unwrap()
    });
    let res = app
        .client
        .get(app.url("/api/v1/companies/acme/audit"))
        .bearer_auth(admin(&["acme"]))
        .send()
        .await
        .unwrap();
    let request_id = res.headers()["x-request-id"].to_str().unwrap().to_string();
    let body = assert_problem(res, 500, "internal_error").await;
    let text = body.to_string();
    assert!(
        !text.contains("audit_entries") && !text.contains("no such table"),
        "{text}"
    );
    let started = Instant::now();
    while !crate::helpers::captured_logs()
        .lines()
        .any(|l| l.contains(&request_id) && l.contains("audit_entries"))
    {
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "the log has the cause under the request id"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A web-hook receiver that does not answer within 10 s: the attempt is recorded as failed then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_attempt_ends_at_its_ten_second_deadline() {
    let slow = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(204).set_delay(Duration::from_secs(30)))
        .mount(&slow)
        .await;
    // Upstream is never called here: any loopback address will do.
    let app = crate::webhooks::app_for_hooks(&Backend::Sqlite, "http://127.0.0.1:9", "0").await;
    let hook = subscribe(
        &app,
        json!({"url": slow.uri(), "companies": ["acme"], "events": ["credentials.updated"]}),
        &["acme"],
    )
    .await;
    let started = Instant::now();
    app.put_credentials("acme", &json!({"application_id": "app-1"}))
        .await;
    let id = hook["id"].as_str().unwrap();
    let log = poll_until(
        Duration::from_secs(20),
        || deliveries(&app, id),
        |log| log["deliveries"].as_array().is_some_and(|d| !d.is_empty()),
    )
    .await;
    let attempt = log["deliveries"][0].clone();
    assert!(attempt.is_object(), "no attempt recorded: {log}");
    let took = started.elapsed();
    assert_eq!(attempt["outcome"], "failed", "{attempt}");
    assert!(
        attempt["error"].as_str().unwrap().contains("10 s"),
        "{attempt}"
    );
    assert!(
        // Well before the receiver's 30 s answer: the deadline ended it (a loaded CI machine
        // may record it a few seconds late).
        took >= Duration::from_secs(9) && took < Duration::from_secs(25),
        "ended at the deadline: {took:?}"
    );
}

/// Instances of a rolling deploy started at the same moment on a fresh PostgreSQL database: one
/// migrates, the others wait for it, and every one succeeds.
#[test]
fn a_fleet_started_at_once_migrates_once() {
    use secrecy::ExposeSecret;
    let Some(backend) = Backend::postgres("a_fleet_started_at_once_migrates_once") else {
        return;
    };
    let dir = tempfile::TempDir::new().unwrap();
    let url = backend.fresh_database(dir.path());
    let keys = schema::KeyRing::generate_spec("k1");
    let fleet: Vec<_> = (0..4)
        .map(|_| {
            let mut cmd = crate::cli::bare(dir.path());
            cmd.args(["migrate", "--database-url", &url])
                .env("CA_CONNECTOR_ENCRYPTION_KEYS", keys.expose_secret())
                .env("CA_CONNECTOR_JWT_SECRET", crate::helpers::JWT_SECRET)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped());
            cmd.spawn().unwrap()
        })
        .collect();
    let migrations = std::fs::read_dir(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/postgres"),
    )
    .unwrap()
    .count();
    let mut applied = 0;
    for child in fleet {
        let out = crate::cli::finish_within(child, crate::cli::LIMIT);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        applied += stdout
            .split_whitespace()
            .next()
            .and_then(|n| n.parse::<usize>().ok())
            .unwrap();
    }
    assert_eq!(applied, migrations, "each migration applied once in all");
}

/// One subscription's sealed secret altered in the database: its deliveries fail with a clear
/// message, and every other subscription's still arrive.
async fn a_web_hook_secret_that_does_not_open_fails_only_its_own_deliveries(backend: Backend) {
    use schema::schema::webhooks::dsl;
    let (good, bad) = (MockServer::start().await, MockServer::start().await);
    for server in [&good, &bad] {
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(204))
            .mount(server)
            .await;
    }
    // Upstream is never called here: any loopback address will do.
    let app = crate::webhooks::app_for_hooks(&backend, "http://127.0.0.1:9", "0").await;
    let events = json!(["credentials.updated"]);
    let good_hook = subscribe(
        &app,
        json!({"url": good.uri(), "companies": ["acme"], "events": events}),
        &["acme"],
    )
    .await;
    let bad_hook = subscribe(
        &app,
        json!({"url": bad.uri(), "companies": ["acme"], "events": events}),
        &["acme"],
    )
    .await;
    let bad_id = bad_hook["id"].as_str().unwrap().to_string();
    with_conn(&app, |conn| {
        let mut sealed: Vec<u8> = dsl::webhooks
            .find(&bad_id)
            .select(dsl::secret)
            .first(conn)
            .unwrap();
        sealed[20] ^= 0xff;
        diesel::update(dsl::webhooks.find(&bad_id))
            .set(dsl::secret.eq(sealed))
            .execute(conn)
            .unwrap()
    });
    app.put_credentials("acme", &json!({"application_id": "app-1"}))
        .await;
    let got = received(&good, 1, Duration::from_secs(5)).await;
    assert_eq!(got.len(), 1, "the other subscription is delivered");
    crate::webhooks::verify(good_hook["secret"].as_str().unwrap(), &got[0]);
    let log = poll_until(
        Duration::from_secs(5),
        || deliveries(&app, &bad_id),
        |log| log["deliveries"].as_array().is_some_and(|d| !d.is_empty()),
    )
    .await;
    let attempt = &log["deliveries"][0];
    assert_eq!(attempt["outcome"], "failed", "{log}");
    assert!(
        attempt["error"]
            .as_str()
            .unwrap()
            .contains("rotate its secret"),
        "{attempt}"
    );
    assert!(bad.received_requests().await.unwrap().is_empty());
}

/// One caller may hold at most 50 subscriptions; a delete makes room again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_hook_subscriptions_per_caller_are_bounded() {
    let app = spawn_app(&Backend::Sqlite).await;
    let create = || {
        app.client
            .post(app.url("/api/v1/webhooks"))
            .bearer_auth(admin(&["acme"]))
            .json(&json!({"url": "https://erp.example/hook", "companies": ["acme"]}))
            .send()
    };
    let mut first = None;
    for _ in 0..ca_connector::http::routes::webhooks::MAX_WEBHOOKS_PER_CALLER {
        let res = create().await.unwrap();
        assert_eq!(res.status(), 201);
        let body: Value = res.json().await.unwrap();
        first.get_or_insert(body["id"].as_str().unwrap().to_string());
    }
    assert_problem(create().await.unwrap(), 409, "too_many_webhooks").await;
    let other = app
        .client
        .post(app.url("/api/v1/webhooks"))
        .bearer_auth(crate::helpers::token_for(
            "another@test",
            &["acme"],
            crate::helpers::ALL_SCOPES,
        ))
        .json(&json!({"url": "https://erp.example/hook", "companies": ["acme"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 201, "the bound is per caller");
    let res = app
        .client
        .delete(app.url(&format!("/api/v1/webhooks/{}", first.unwrap())))
        .bearer_auth(admin(&["acme"]))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    assert_eq!(create().await.unwrap().status(), 201);
}

/// A subscription's delivery log, as its caller sees it.
async fn deliveries(app: &TestApp, webhook_id: &str) -> Value {
    app.get_json(
        &format!("/api/v1/webhooks/{webhook_id}/deliveries"),
        &admin(&["acme"]),
    )
    .await
    .1
}

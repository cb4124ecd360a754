//! Contract §7: subscriptions, signed events from the outbox, retries, order, restarts.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::connection::{sim, test_connection, valid, APP, REFRESH, SECRET};
use crate::helpers::{
    admin, assert_problem, poll_until, second_instance, spawn_app_with, token, token_for,
    AppOptions, Backend, TestApp,
};
use crate::on_both_backends;
use crate::tokens::issue;

on_both_backends!(
    every_event_is_delivered_signed_and_filtered,
    failed_attempts_are_retried_then_given_up,
    events_reach_a_receiver_that_was_down_in_order,
    two_instances_never_deliver_an_event_twice,
    nothing_is_lost_when_the_server_is_killed,
);

const RETRY_FAST: &str = "0,1,1,1,1,1,1,1,1,1";

pub async fn app_for_hooks(backend: &Backend, upstream: &str, schedule: &str) -> TestApp {
    spawn_app_with(
        backend,
        AppOptions {
            extra_args: vec![
                "--channeladvisor-url".into(),
                upstream.into(),
                "--webhook-allow-private".into(),
                "--webhook-allow-http".into(),
                "--webhook-retry-schedule".into(),
                schedule.into(),
            ],
            ..Default::default()
        },
    )
    .await
}

pub async fn subscribe(app: &TestApp, body: Value, companies: &[&str]) -> Value {
    let res = app
        .client
        .post(app.url("/api/v1/webhooks"))
        .bearer_auth(admin(companies))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201, "{:?}", res.text().await);
    res.json().await.unwrap()
}

/// Rotates a subscription's secret; the answer (with the new `secret`).
pub async fn rotate_secret(app: &TestApp, id: &str) -> Value {
    app.client
        .post(app.url(&format!("/api/v1/webhooks/{id}/rotate-secret")))
        .bearer_auth(admin(&["acme"]))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Waits until the receiver holds `n` delivered requests (or times out), and returns them.
pub async fn received(server: &MockServer, n: usize, within: Duration) -> Vec<Request> {
    poll_until(
        within,
        || async { server.received_requests().await.unwrap_or_default() },
        |got| got.len() >= n,
    )
    .await
}

/// The delivery log, polled until `done` holds: the worker records an attempt just after the
/// receiver has seen it, so a test that read the log at once would race the worker.
async fn deliveries_until(
    app: &TestApp,
    webhook_id: &str,
    within: Duration,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let read = || async {
        let log = app
            .get_json(
                &format!("/api/v1/webhooks/{webhook_id}/deliveries"),
                &admin(&["*"]),
            )
            .await
            .1;
        log["deliveries"].as_array().cloned().unwrap_or_default()
    };
    poll_until(within, read, |attempts| done(attempts)).await
}

/// Each delivery of a subscription as (status, attempts), read from the database: what the
/// worker decided, so a test waits for a state instead of sleeping and counting what did not come.
fn delivery_states(app: &TestApp, webhook_id: &str) -> Vec<(String, i64)> {
    use diesel::prelude::*;
    use schema::schema::webhook_deliveries::dsl;
    let db = app.database();
    let mut conn = db.get().unwrap();
    dsl::webhook_deliveries
        .filter(dsl::webhook_id.eq(webhook_id))
        .order(dsl::created_at.asc())
        .select((dsl::status, dsl::attempts))
        .load(&mut *conn)
        .unwrap()
}

/// Polls `delivery_states` until `done` holds (or 10 s pass).
async fn states_until(
    app: &TestApp,
    webhook_id: &str,
    done: impl Fn(&[(String, i64)]) -> bool,
) -> Vec<(String, i64)> {
    let read = || async { delivery_states(app, webhook_id) };
    poll_until(Duration::from_secs(10), read, |states| done(states)).await
}

/// Verifies with the independent Standard Webhooks implementation; returns (id, body).
pub fn verify(secret: &str, req: &Request) -> (String, Value) {
    let mut headers = http::HeaderMap::new();
    for name in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
        let value = req
            .headers
            .get(name)
            .unwrap_or_else(|| panic!("{name} header"));
        headers.insert(name, value.to_str().unwrap().parse().unwrap());
    }
    standardwebhooks::Webhook::new(secret)
        .unwrap()
        .verify(&req.body, &headers)
        .expect("signature verifies");
    (
        headers["webhook-id"].to_str().unwrap().to_string(),
        serde_json::from_slice(&req.body).unwrap(),
    )
}

fn ok() -> ResponseTemplate {
    ResponseTemplate::new(204)
}

async fn every_event_is_delivered_signed_and_filtered(backend: Backend) {
    let sim = sim(0);
    let receiver = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ok())
        .mount(&receiver)
        .await;
    let status_only = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ok())
        .mount(&status_only)
        .await;
    let other_company = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ok())
        .mount(&other_company)
        .await;
    let app = app_for_hooks(&backend, &sim.url(), RETRY_FAST).await;

    let all = subscribe(&app, json!({"url": format!("{}/ca-events", receiver.uri()), "companies": ["acme"], "description": "ERP"}), &["acme"]).await;
    let secret = all["secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("whsec_"));
    assert_eq!(
        all["events"].as_array().unwrap().len(),
        5,
        "all events by default"
    );
    subscribe(&app, json!({"url": status_only.uri(), "companies": ["acme"], "events": ["connection.status_changed"]}), &["acme"]).await;
    subscribe(
        &app,
        json!({"url": other_company.uri(), "companies": ["beta"]}),
        &["beta"],
    )
    .await;

    app.put_credentials("acme", &valid()).await;
    test_connection(&app, "acme", None).await;
    app.patch_credentials("acme", &json!({"refresh_token": "revoked-token-0000"}))
        .await;
    assert_eq!(issue(&app, "acme", "").await.status(), 409);
    assert_eq!(app.delete_credentials("acme").await.status(), 204);

    let expected = [
        ("credentials.updated", None),
        (
            "connection.status_changed",
            Some(("not_configured", "untested")),
        ),
        ("connection.tested", None),
        ("connection.status_changed", Some(("untested", "connected"))),
        ("credentials.updated", None),
        ("connection.status_changed", Some(("connected", "untested"))),
        ("access_token.refresh_failed", None),
        ("connection.status_changed", Some(("untested", "failed"))),
        ("credentials.deleted", None),
        (
            "connection.status_changed",
            Some(("failed", "not_configured")),
        ),
    ];
    let got = received(&receiver, expected.len(), Duration::from_secs(10)).await;
    assert_eq!(
        got.len(),
        expected.len(),
        "{:?}",
        got.iter()
            .map(|r| String::from_utf8_lossy(&r.body).to_string())
            .collect::<Vec<_>>()
    );
    let mut ids = std::collections::HashSet::new();
    for (req, (kind, states)) in got.iter().zip(expected) {
        let (id, body) = verify(&secret, req);
        assert!(ids.insert(id), "one webhook-id per event");
        assert_eq!(body["type"], kind, "{body}");
        assert_eq!(body["data"]["company"], "acme");
        assert!(body["timestamp"].as_str().unwrap().ends_with('Z'));
        if let Some((previous, state)) = states {
            assert_eq!(
                (
                    body["data"]["previous_state"].as_str(),
                    body["data"]["state"].as_str()
                ),
                (Some(previous), Some(state)),
                "{body}"
            );
        }
        match kind {
            "credentials.updated" => {
                assert!(
                    body["data"]["version"].is_i64()
                        && body["data"]["changed"].is_array()
                        && body["data"]["actor"] == "admin@test"
                );
            }
            "connection.tested" => assert_eq!(body["data"]["outcome"], "connected"),
            "access_token.refresh_failed" => {
                assert_eq!(body["data"]["error"]["code"], "invalid_refresh_token")
            }
            _ => {}
        }
        let text = String::from_utf8_lossy(&req.body);
        assert!(
            !text.contains(SECRET) && !text.contains(REFRESH),
            "no secret in an event"
        );
    }
    // The tested → connected change carries its test id; failures carry the error.
    let bodies: Vec<Value> = got
        .iter()
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect();
    assert!(bodies[3]["data"]["test_id"].is_string());
    assert_eq!(bodies[7]["data"]["error"]["code"], "invalid_refresh_token");

    let status_events = received(&status_only, 5, Duration::from_secs(5)).await;
    assert_eq!(status_events.len(), 5);
    assert!(status_events
        .iter()
        .all(
            |r| serde_json::from_slice::<Value>(&r.body).unwrap()["type"]
                == "connection.status_changed"
        ));
    // A barrier, not a pause: beta's subscription gets an event of its own, made after all of
    // acme's. Deliveries are queued when an event is written and sent in order, so had any acme
    // event been queued for beta it would have arrived first.
    app.put_credentials("beta", &json!({"application_id": "beta-app"}))
        .await;
    let heard = received(&other_company, 1, Duration::from_secs(5)).await;
    let companies: Vec<Value> = heard
        .iter()
        .map(|r| serde_json::from_slice::<Value>(&r.body).unwrap()["data"]["company"].clone())
        .collect();
    assert!(
        !companies.is_empty() && companies.iter().all(|c| c == "beta"),
        "a subscription for beta hears nothing of acme: {companies:?}"
    );

    // Ping and the delivery log.
    let id = all["id"].as_str().unwrap();
    let res = app
        .client
        .post(app.url(&format!("/api/v1/webhooks/{id}/ping")))
        .bearer_auth(admin(&["acme"]))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    let got = received(&receiver, expected.len() + 1, Duration::from_secs(5)).await;
    let (_, ping) = verify(&secret, got.last().unwrap());
    assert_eq!(ping["type"], "webhook.ping");
    assert_eq!(
        ping["data"],
        json!({"company": null, "webhook_id": all["id"]}),
        "{ping}"
    );
    assert!(
        ping["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{ping}"
    );
    let log = deliveries_until(&app, id, Duration::from_secs(5), |log| {
        log.first().map(|a| a["event_type"] == "webhook.ping") == Some(true)
    })
    .await;
    let first = &log[0];
    assert_eq!(
        (
            first["event_type"].as_str(),
            first["outcome"].as_str(),
            first["status_code"].as_i64()
        ),
        (Some("webhook.ping"), Some("delivered"), Some(204))
    );
    assert!(first["duration_ms"].is_i64() && first["attempt"] == 1);

    // After a rotation, deliveries are signed with the new secret and no longer with the old.
    let rotated = rotate_secret(&app, id).await;
    let new_secret = rotated["secret"].as_str().unwrap().to_string();
    assert_ne!(new_secret, secret);
    let before = receiver.received_requests().await.unwrap().len();
    app.client
        .post(app.url(&format!("/api/v1/webhooks/{id}/ping")))
        .bearer_auth(admin(&["acme"]))
        .send()
        .await
        .unwrap();
    let got = received(&receiver, before + 1, Duration::from_secs(5)).await;
    let after_rotation = got.last().unwrap();
    verify(&new_secret, after_rotation);
    assert!(
        !verifies(&secret, after_rotation),
        "the old secret no longer verifies"
    );
}

fn verifies(secret: &str, req: &Request) -> bool {
    let mut headers = http::HeaderMap::new();
    for name in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
        headers.insert(name, req.headers[name].to_str().unwrap().parse().unwrap());
    }
    standardwebhooks::Webhook::new(secret)
        .unwrap()
        .verify(&req.body, &headers)
        .is_ok()
}

async fn failed_attempts_are_retried_then_given_up(backend: Backend) {
    let sim = sim(0);
    let flaky = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500))
        .up_to_n_times(2)
        .mount(&flaky)
        .await;
    Mock::given(method("POST"))
        .respond_with(ok())
        .mount(&flaky)
        .await;
    let dead = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(302).insert_header("location", "https://erp.example/elsewhere"),
        )
        .mount(&dead)
        .await;
    let app = app_for_hooks(&backend, &sim.url(), "0,1,1").await;
    let flaky_hook = subscribe(
        &app,
        json!({"url": flaky.uri(), "companies": ["acme"], "events": ["credentials.updated"]}),
        &["acme"],
    )
    .await;
    let dead_hook = subscribe(
        &app,
        json!({"url": dead.uri(), "companies": ["acme"], "events": ["credentials.updated"]}),
        &["acme"],
    )
    .await;
    app.put_credentials("acme", &json!({"application_id": APP}))
        .await;

    let got = received(&flaky, 3, Duration::from_secs(8)).await;
    assert_eq!(got.len(), 3);
    let ids: Vec<&str> = got
        .iter()
        .map(|r| r.headers["webhook-id"].to_str().unwrap())
        .collect();
    assert!(
        ids.iter().all(|i| *i == ids[0]),
        "the same webhook-id on every retry"
    );
    let stamps: Vec<i64> = got
        .iter()
        .map(|r| {
            r.headers["webhook-timestamp"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    assert!(
        stamps[2] - stamps[0] >= 2,
        "retries follow the schedule: {stamps:?}"
    );
    let secret = flaky_hook["secret"].as_str().unwrap();
    for r in &got {
        verify(secret, r);
    }

    let got = received(&dead, 3, Duration::from_secs(8)).await;
    assert_eq!(got.len(), 3, "a redirect is a failure and is not followed");
    let id = dead_hook["id"].as_str().unwrap();
    let attempts = deliveries_until(&app, id, Duration::from_secs(5), |log| log.len() >= 3).await;
    assert_eq!(attempts.len(), 3);
    assert!(attempts
        .iter()
        .all(|a| a["outcome"] == "failed" && a["status_code"] == 302));
    assert_eq!(attempts[0]["attempt"], 3, "newest first");
    let states = states_until(&app, id, |s| s.iter().all(|(status, _)| status == "failed")).await;
    assert_eq!(
        states,
        vec![("failed".to_string(), 3)],
        "given up after the last attempt of the schedule: nothing left to send"
    );
    assert_eq!(dead.received_requests().await.unwrap().len(), 3);
    let metrics = app.metrics().await;
    assert!(
        metrics.contains(r#"ca_connector_webhook_deliveries_total{result="failed"} 1"#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"ca_connector_webhook_deliveries_total{result="delivered"} 1"#));
    assert!(
        metrics.contains("ca_connector_webhook_outbox_depth")
            && metrics.contains("ca_connector_webhook_oldest_undelivered_seconds")
    );
}

async fn events_reach_a_receiver_that_was_down_in_order(backend: Backend) {
    let sim = sim(0);
    let receiver = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&receiver)
        .await;
    let app = app_for_hooks(&backend, &sim.url(), RETRY_FAST).await;
    let hook = subscribe(
        &app,
        json!({"url": receiver.uri(), "companies": ["*"], "events": ["credentials.updated"]}),
        &["*"],
    )
    .await;
    for v in 1..=5 {
        app.put_credentials("acme", &json!({"application_id": format!("app-{v}")}))
            .await;
        app.put_credentials("beta", &json!({"application_id": format!("app-{v}")}))
            .await;
    }
    // The receiver is down: attempts fail (503) and stay pending for a retry.
    let hook_id = hook["id"].as_str().unwrap();
    let failures = deliveries_until(&app, hook_id, Duration::from_secs(10), |log| {
        log.iter().filter(|a| a["outcome"] == "failed").count() >= 2
    })
    .await;
    assert!(
        failures.len() >= 2
            && failures
                .iter()
                .all(|a| a["outcome"] == "failed" && a["status_code"] == 503),
        "{failures:?}"
    );
    assert!(delivery_states(&app, hook_id)
        .iter()
        .all(|(status, _)| status == "pending"));
    receiver.reset().await;
    Mock::given(method("POST"))
        .respond_with(ok())
        .mount(&receiver)
        .await;
    let secret = hook["secret"].as_str().unwrap();
    let read = || async {
        let mut delivered: HashMap<String, Vec<i64>> = HashMap::new();
        let mut seen = std::collections::HashSet::new();
        for r in receiver.received_requests().await.unwrap() {
            let (id, body) = verify(secret, &r);
            if seen.insert(id) {
                delivered
                    .entry(body["data"]["company"].as_str().unwrap().to_string())
                    .or_default()
                    .push(body["data"]["version"].as_i64().unwrap());
            }
        }
        delivered
    };
    let delivered = poll_until(Duration::from_secs(15), read, |d| {
        d.values().map(Vec::len).sum::<usize>() >= 10
    })
    .await;
    assert_eq!(
        delivered["acme"],
        vec![1, 2, 3, 4, 5],
        "every event, in the order it happened"
    );
    assert_eq!(delivered["beta"], vec![1, 2, 3, 4, 5]);
}

async fn two_instances_never_deliver_an_event_twice(backend: Backend) {
    let sim = sim(0);
    let receiver = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ok().set_delay(Duration::from_millis(100)))
        .mount(&receiver)
        .await;
    let a = app_for_hooks(&backend, &sim.url(), RETRY_FAST).await;
    let b = second_instance(
        &a,
        &[
            "--webhook-allow-private",
            "--webhook-allow-http",
            "--webhook-retry-schedule",
            RETRY_FAST,
        ],
    )
    .await;
    let hook = subscribe(
        &a,
        json!({"url": receiver.uri(), "companies": ["*"], "events": ["credentials.updated"]}),
        &["*"],
    )
    .await;
    for i in 0..30 {
        let app = if i % 2 == 0 { &a } else { &b };
        app.put_credentials(
            &format!("co{}", i % 10),
            &json!({"application_id": format!("app-{i}")}),
        )
        .await;
    }
    let got = received(&receiver, 30, Duration::from_secs(15)).await;
    assert_eq!(got.len(), 30);
    // Every delivery is recorded delivered after one attempt: nothing is left that either
    // instance could send again, and none was sent twice.
    let hook_id = hook["id"].as_str().unwrap();
    let states = states_until(&a, hook_id, |s| {
        s.len() == 30 && s.iter().all(|(status, _)| status == "delivered")
    })
    .await;
    assert!(
        states.len() == 30
            && states
                .iter()
                .all(|(status, n)| status == "delivered" && *n == 1),
        "{states:?}"
    );
    let got_after = receiver.received_requests().await.unwrap();
    assert_eq!(got_after.len(), 30, "no event delivered twice");
    let ids: std::collections::HashSet<String> = got_after
        .iter()
        .map(|r| r.headers["webhook-id"].to_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 30);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscription_rules() {
    let strict = spawn_app_with(&Backend::Sqlite, AppOptions::default()).await;
    let post = |app: &TestApp, bearer: String, body: Value| {
        app.client
            .post(app.url("/api/v1/webhooks"))
            .bearer_auth(bearer)
            .json(&body)
            .send()
    };
    for url in [
        "http://erp.example/hook",
        "https://127.0.0.1/hook",
        "https://10.0.0.8/hook",
        "https://localhost/hook",
        "https://[::1]/x",
    ] {
        let body = assert_problem(
            post(
                &strict,
                admin(&["acme"]),
                json!({"url": url, "companies": ["acme"]}),
            )
            .await
            .unwrap(),
            422,
            "webhook_target_refused",
        )
        .await;
        assert_eq!(body["errors"][0]["field"], "url");
    }
    let ok = post(
        &strict,
        admin(&["acme"]),
        json!({"url": "https://erp.example/hook", "companies": ["acme"]}),
    )
    .await
    .unwrap();
    assert_eq!(ok.status(), 201);
    let created: Value = ok.json().await.unwrap();
    let id = created["id"].as_str().unwrap();

    for (body, field) in [
        (json!({"companies": ["acme"]}), "url"),
        (json!({"url": "https://erp.example/h"}), "companies"),
        (
            json!({"url": "https://erp.example/h", "companies": ["acme"], "events": ["order.created"]}),
            "events",
        ),
        (
            json!({"url": "https://erp.example/h", "companies": ["bad company"]}),
            "companies",
        ),
        (
            json!({"url": "https://erp.example/h", "companies": ["acme"], "colour": "red"}),
            "colour",
        ),
    ] {
        let body = assert_problem(
            post(&strict, admin(&["acme"]), body).await.unwrap(),
            422,
            "validation_failed",
        )
        .await;
        assert_eq!(body["errors"][0]["field"], field, "{body}");
    }
    // A subscription's companies must all be covered by the caller's token, with the scope.
    for (bearer, companies, code) in [
        (admin(&["acme"]), json!(["beta"]), "company_forbidden"),
        (admin(&["acme"]), json!(["*"]), "company_forbidden"),
        (
            token(&["acme"], "connection:read"),
            json!(["acme"]),
            "insufficient_scope",
        ),
    ] {
        let body = json!({"url": "https://erp.example/h", "companies": companies});
        assert_problem(post(&strict, bearer, body).await.unwrap(), 403, code).await;
    }

    // The secret is shown on creation and rotation only.
    let (_, read) = strict
        .get_json(&format!("/api/v1/webhooks/{id}"), &admin(&["acme"]))
        .await;
    assert!(read.get("secret").is_none() && read["url"] == "https://erp.example/hook");
    let (_, listed) = strict.get_json("/api/v1/webhooks", &admin(&["acme"])).await;
    assert_eq!(listed["webhooks"].as_array().unwrap().len(), 1);
    assert!(!listed.to_string().contains("whsec_"));
    let rotated = rotate_secret(&strict, id).await;
    assert!(rotated["secret"].as_str().unwrap().starts_with("whsec_"));
    assert_ne!(rotated["secret"], created["secret"]);

    // Visible only to tokens covering all its companies.
    let (_, hidden) = strict.get_json("/api/v1/webhooks", &admin(&["beta"])).await;
    assert_eq!(hidden["webhooks"], json!([]));
    let res = strict
        .client
        .get(strict.url(&format!("/api/v1/webhooks/{id}")))
        .bearer_auth(admin(&["beta"]))
        .send()
        .await
        .unwrap();
    assert_problem(res, 404, "webhook_not_found").await;
    let res = strict
        .client
        .delete(strict.url(&format!("/api/v1/webhooks/{id}")))
        .bearer_auth(admin(&["acme"]))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    let res = strict
        .client
        .get(strict.url(&format!("/api/v1/webhooks/{id}")))
        .bearer_auth(admin(&["acme"]))
        .send()
        .await
        .unwrap();
    assert_problem(res, 404, "webhook_not_found").await;
}

/// A name that passes at subscription but resolves to a private address is refused at delivery.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn targets_are_checked_again_after_dns() {
    let receiver = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ok())
        .mount(&receiver)
        .await;
    // A name that is not private by its looks, pinned to loopback as a split-horizon DNS would
    // answer it (`--webhook-resolve`): no dependence on this machine's own name or DNS.
    let host = "hooks.erp-customer.example";
    let app = spawn_app_with(
        &Backend::Sqlite,
        AppOptions {
            extra_args: vec![
                "--webhook-allow-http".into(),
                "--webhook-retry-schedule".into(),
                "0".into(),
                "--webhook-resolve".into(),
                format!("{host}=127.0.0.1"),
            ],
            ..Default::default()
        },
    )
    .await;
    let port = url::Url::parse(&receiver.uri()).unwrap().port().unwrap();
    let hook = subscribe(
        &app,
        json!({"url": format!("http://{host}:{port}/hook"), "companies": ["acme"]}),
        &["acme"],
    )
    .await;
    app.put_credentials("acme", &json!({"application_id": "x"}))
        .await;
    let log = deliveries_until(
        &app,
        hook["id"].as_str().unwrap(),
        Duration::from_secs(5),
        |log| !log.is_empty(),
    )
    .await;
    let first = &log[0];
    assert_eq!(first["outcome"], "failed");
    let error = first["error"].as_str().unwrap();
    assert!(error.contains("target refused"), "{first}");
    assert!(
        !error.contains("127.0.0.1"),
        "no internal address shown: {first}"
    );
    // The attempt is recorded as refused before any request could be sent: nothing was.
    assert_eq!(
        receiver.received_requests().await.unwrap().len(),
        0,
        "never sent to a private address"
    );
    // The pin itself resolves: where private targets are allowed, the same name is delivered to.
    let allowed = spawn_app_with(
        &Backend::Sqlite,
        AppOptions {
            extra_args: vec![
                "--webhook-allow-http".into(),
                "--webhook-allow-private".into(),
                "--webhook-resolve".into(),
                format!("{host}=127.0.0.1"),
            ],
            ..Default::default()
        },
    )
    .await;
    subscribe(
        &allowed,
        json!({"url": format!("http://{host}:{port}/hook"), "companies": ["acme"]}),
        &["acme"],
    )
    .await;
    allowed
        .put_credentials("acme", &json!({"application_id": "x"}))
        .await;
    let got = received(&receiver, 1, Duration::from_secs(5)).await;
    assert!(!got.is_empty(), "delivered through the pinned name");
}

/// SIGKILL between a change and its delivery: after a restart the receiver still gets the event,
/// with the same webhook-id as the attempt the killed server made. Both ways a kill can land are
/// made to happen: between two attempts (the restarted server sends at once) and in the middle of
/// an attempt (the killed server's lease must run out first, 10 s + 5 s).
async fn nothing_is_lost_when_the_server_is_killed(backend: Backend) {
    killed_and_restarted(&backend, false).await;
    killed_and_restarted(&backend, true).await;
}

async fn killed_and_restarted(backend: &Backend, mid_attempt: bool) {
    use secrecy::ExposeSecret;
    let dir = tempfile::TempDir::new().unwrap();
    let database_url = backend.fresh_database(dir.path());
    let keys = schema::KeyRing::generate_spec("k1");
    let receiver = MockServer::start().await;
    let failing = if mid_attempt {
        // Holds the attempt open past the kill.
        ResponseTemplate::new(204).set_delay(Duration::from_secs(60))
    } else {
        ResponseTemplate::new(503)
    };
    Mock::given(method("POST"))
        .respond_with(failing)
        .mount(&receiver)
        .await;
    let serve = || {
        let mut cmd = crate::cli::bare(dir.path());
        cmd.args([
            "serve",
            "--database-url",
            &database_url,
            "--webhook-allow-private",
            "--webhook-allow-http",
            "--webhook-retry-schedule",
            "0,1,1,1,1,1,1,1",
        ])
        .env("CA_CONNECTOR_ENCRYPTION_KEYS", keys.expose_secret())
        .env("CA_CONNECTOR_JWT_SECRET", crate::helpers::JWT_SECRET);
        cmd
    };
    let (mut first, port, _log, _) = crate::cli::start(serve());
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let hook: Value = client.post(format!("{base}/api/v1/webhooks")).bearer_auth(admin(&["acme"]))
        .json(&json!({"url": receiver.uri(), "companies": ["acme"], "events": ["credentials.updated"]}))
        .send().await.unwrap().json().await.unwrap();
    let res = client
        .put(format!("{base}/api/v1/companies/acme/credentials"))
        .bearer_auth(admin(&["acme"]))
        .json(&json!({"application_id": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    // The first attempt: a request carrying a webhook-id (the receiver once recorded another
    // request first, without one; what it was is printed if that happens again).
    let read = || async { receiver.received_requests().await.unwrap_or_default() };
    let tried = poll_until(Duration::from_secs(5), read, |got| {
        got.iter().any(|r| r.headers.contains_key("webhook-id"))
    })
    .await;
    let id = tried
        .iter()
        .find_map(|r| r.headers.get("webhook-id"))
        .unwrap_or_else(|| {
            let seen: Vec<_> = tried
                .iter()
                .map(|r| (r.method.to_string(), r.url.to_string(), r.headers.clone()))
                .collect();
            panic!("the first attempt never reached the receiver: {seen:?}")
        })
        .to_str()
        .unwrap()
        .to_string();
    let db = schema::Database::connect(&database_url, 1).unwrap();
    let attempts_recorded = || {
        use diesel::prelude::*;
        use schema::schema::webhook_deliveries::dsl;
        let mut conn = db.get().unwrap();
        dsl::webhook_deliveries
            .select(dsl::attempts)
            .first::<i64>(&mut *conn)
            .unwrap()
    };
    if !mid_attempt {
        // Between attempts: the failed one is recorded before the kill.
        let read = || async { attempts_recorded() };
        assert!(poll_until(Duration::from_secs(5), read, |n| *n >= 1).await >= 1);
    } else {
        assert_eq!(attempts_recorded(), 0, "the attempt is still under way");
    }
    first.kill().unwrap();
    first.wait().unwrap();
    let killed_at = Instant::now();

    receiver.reset().await;
    Mock::given(method("POST"))
        .respond_with(ok())
        .mount(&receiver)
        .await;
    let (mut second, _, _log2, _) = crate::cli::start(serve());
    let got = received(&receiver, 1, Duration::from_secs(25)).await;
    let waited = killed_at.elapsed();
    second.kill().unwrap();
    second.wait().unwrap();
    assert_eq!(got.len(), 1, "delivered after the restart");
    if mid_attempt {
        // The lease (10 s delivery deadline + 5 s) began when the attempt was claimed, a moment
        // before the kill.
        assert!(
            waited >= Duration::from_secs(14),
            "a killed attempt's lease is waited out first: {waited:?}"
        );
    } else {
        // The lease path would take 15 s; a restart and a retry take a second or two.
        assert!(
            waited < Duration::from_secs(12),
            "between attempts no lease is held: {waited:?}"
        );
    }
    let (delivered_id, body) = verify(hook["secret"].as_str().unwrap(), &got[0]);
    assert_eq!(
        delivered_id, id,
        "the same webhook-id: a duplicate is recognisable"
    );
    assert_eq!(body["data"]["company"], "acme");
}

/// Creating, rotating, pinging and deleting a subscription are audit entries: who, when, which
/// subscription and what; never the secret. They outlive the subscription, and only tokens that
/// could manage it see them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_changes_are_audited() {
    let app = app_for_hooks(&Backend::Sqlite, "http://127.0.0.1:9", RETRY_FAST).await;
    let created = subscribe(
        &app,
        json!({"url": "http://127.0.0.1:9/hook", "companies": ["acme"]}),
        &["acme"],
    )
    .await;
    let id = created["id"].as_str().unwrap();
    let rotated = rotate_secret(&app, id).await;
    let call = |method: reqwest::Method, path: String| {
        app.client
            .request(method, app.url(&path))
            .bearer_auth(token_for("ops@erp", &["acme"], "webhooks:manage"))
            .send()
    };
    let ping = call(reqwest::Method::POST, format!("/api/v1/webhooks/{id}/ping"))
        .await
        .unwrap();
    assert_eq!(ping.status(), 202);
    let gone = call(reqwest::Method::DELETE, format!("/api/v1/webhooks/{id}"))
        .await
        .unwrap();
    assert_eq!(gone.status(), 204);

    let res = call(reqwest::Method::GET, "/api/v1/webhook-audit".into())
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let text = res.text().await.unwrap();
    for secret in [&created["secret"], &rotated["secret"]] {
        let secret = secret.as_str().unwrap();
        assert!(!text.contains(secret), "a web-hook secret in the audit");
    }
    let audit: Value = serde_json::from_str(&text).unwrap();
    let seen: Vec<(&str, &str)> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .inspect(|e| assert_eq!(e["webhook_id"], id))
        .map(|e| (e["action"].as_str().unwrap(), e["actor"].as_str().unwrap()))
        .collect();
    assert_eq!(
        seen,
        [
            ("webhook_deleted", "ops@erp"),
            ("webhook_pinged", "ops@erp"),
            ("webhook_secret_rotated", "admin@test"),
            ("webhook_created", "admin@test"),
        ]
    );
    // A token for another company sees none of it.
    let other: Value = app
        .client
        .get(app.url("/api/v1/webhook-audit"))
        .bearer_auth(admin(&["globex"]))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(other["entries"], json!([]));
}

/// A target that answers slowly holds its own delivery only: another subscription's events keep
/// arriving while the slow one's attempt is still open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_target_does_not_hold_up_other_targets() {
    let slow = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ok().set_delay(Duration::from_secs(6)))
        .mount(&slow)
        .await;
    let fast = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ok())
        .mount(&fast)
        .await;
    let app = app_for_hooks(&Backend::Sqlite, "http://127.0.0.1:9", RETRY_FAST).await;
    let hook = |server: &MockServer| json!({"url": format!("{}/hook", server.uri()), "companies": ["acme"]});
    let slow_id = subscribe(&app, hook(&slow), &["acme"]).await["id"].clone();
    let fast_id = subscribe(&app, hook(&fast), &["acme"]).await["id"].clone();
    let ping = |id: &Value| {
        app.client
            .post(app.url(&format!("/api/v1/webhooks/{}/ping", id.as_str().unwrap())))
            .bearer_auth(admin(&["acme"]))
            .send()
    };
    assert_eq!(ping(&slow_id).await.unwrap().status(), 202);
    // The slow target has the request and keeps it open for 6 s.
    assert_eq!(received(&slow, 1, Duration::from_secs(5)).await.len(), 1);
    let started = Instant::now();
    assert_eq!(ping(&fast_id).await.unwrap().status(), 202);
    assert_eq!(received(&fast, 1, Duration::from_secs(5)).await.len(), 1);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the fast target waited {:?} behind the slow one",
        started.elapsed()
    );
}

//! The token path under overlap, against a client that rotates refresh tokens with reuse
//! detection (RFC 9700 §4.14: a spent refresh token used again revokes the whole grant), as a
//! strict ChannelAdvisor would. Every test spans two instances on one database — on SQLite two
//! processes on one file — because that is where the overlaps happen in production.

use std::sync::Arc;
use std::time::Duration;

use connector::sim::{SimConfig, Simulator};
use diesel::RunQueryDsl;
use reqwest::Method;
use serde_json::{json, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::connection::{app_against, test_connection, valid, APP, REFRESH, SECRET};
use crate::helpers::{second_instance, Backend, TestApp};
use crate::on_both_backends;
use crate::tokens::issue;

on_both_backends!(
    a_rotated_refresh_token_survives_a_save_of_another_field,
    tests_and_job_tokens_at_once_share_one_exchange,
    a_lease_overtaken_by_a_slow_upstream_cannot_write,
    a_candidate_test_keeps_the_rotated_refresh_token,
);

/// Access tokens live 3,300 s, so a job asking for `min_ttl=3300` always causes a refresh.
fn rotating_sim(latency_ms: u64) -> Simulator {
    Simulator::start(
        SimConfig {
            latency: Duration::from_millis(latency_ms),
            rotate_refresh_tokens: true,
            token_lifetime: Duration::from_secs(3300),
            ..Default::default()
        },
        "127.0.0.1:0",
    )
    .unwrap()
}

fn reuse_detected(sim: &Simulator) -> u64 {
    sim.stats()
        .reuse_detected
        .load(std::sync::atomic::Ordering::SeqCst)
}

/// The simulator itself: a spent refresh token used again is refused and takes its successor
/// down with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulator_revokes_a_grant_whose_spent_token_is_used_again() {
    let sim = rotating_sim(0);
    let client = reqwest::Client::new();
    let grant = |refresh: String| {
        let client = client.clone();
        let url = format!("{}/oauth2/token", sim.url());
        async move {
            let res = client
                .post(url)
                .basic_auth(APP, Some(SECRET))
                .form(&[("grant_type", "refresh_token"), ("refresh_token", &refresh)])
                .send()
                .await
                .unwrap();
            (res.status().as_u16(), res.json::<Value>().await.unwrap())
        }
    };
    let (status, first) = grant(REFRESH.into()).await;
    assert_eq!(status, 200);
    let next = first["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(
        next, REFRESH,
        "a rotating client answers a new refresh token"
    );
    let (status, reused) = grant(REFRESH.into()).await;
    assert_eq!(
        (status, reused["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    assert_eq!(reuse_detected(&sim), 1);
    let (status, _) = grant(next).await;
    assert_eq!(status, 400, "the reuse revoked the successor too");
}

/// A refresh is in flight when an admin saves only the Profile ID on the other instance;
/// ChannelAdvisor's answer carries a new refresh token. It must be kept: the stored one is spent.
async fn a_rotated_refresh_token_survives_a_save_of_another_field(backend: Backend) {
    let sim = rotating_sim(600);
    let a = Arc::new(app_against(&backend, &sim.url(), &[]).await);
    let b = second_instance(&a, &["--channeladvisor-url", &sim.url()]).await;
    a.put_credentials("acme", &valid()).await;
    let job = {
        let a = a.clone();
        tokio::spawn(async move { issue(&a, "acme", "").await.status().as_u16() })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (saved, _) = b
        .call(
            Method::PATCH,
            "credentials",
            "acme",
            Some(json!({"profile_id": 12345678})),
        )
        .await;
    assert_eq!(saved, 200);
    // The race happened: the refresh had reached ChannelAdvisor and was still waiting for its
    // answer (600 ms) when the save answered.
    assert_eq!(sim.token_calls(), 1, "the refresh was in flight");
    assert!(
        !job.is_finished(),
        "the save answered before the refresh ended"
    );
    assert_eq!(
        job.await.unwrap(),
        200,
        "the job waiting on the refresh is served"
    );
    // The next refreshes, on the other instance, spend the rotated tokens and succeed.
    let calls = sim.token_calls();
    for _ in 0..2 {
        let (status, body) = b
            .call(Method::POST, "access-token?min_ttl=3300", "acme", None)
            .await;
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(sim.token_calls(), calls + 2, "each asked for a new token");
    assert_eq!(reuse_detected(&sim), 0, "no refresh token was used twice");
    // The save made the connection untested, and job refreshes do not test it.
    assert_eq!(b.state("acme").await, "untested");
}

/// Three Test Connection presses and ten job requests at the same moment, over two instances:
/// they share the exchanges, so no refresh token is spent twice and everything connects.
async fn tests_and_job_tokens_at_once_share_one_exchange(backend: Backend) {
    let sim = rotating_sim(400);
    let a = Arc::new(app_against(&backend, &sim.url(), &[]).await);
    let b = Arc::new(second_instance(&a, &["--channeladvisor-url", &sim.url()]).await);
    a.put_credentials("acme", &valid()).await;
    let mut tests = Vec::new();
    let mut jobs = Vec::new();
    for i in 0..3 {
        let (a, b) = (a.clone(), b.clone());
        tests.push(tokio::spawn(async move {
            if i == 1 {
                b.call(Method::POST, "connection/test", "acme", None)
                    .await
                    .1
            } else {
                test_connection(&a, "acme", None).await
            }
        }));
    }
    for i in 0..10 {
        let (a, b) = (a.clone(), b.clone());
        jobs.push(tokio::spawn(async move {
            if i % 2 == 0 {
                b.call(Method::POST, "access-token", "acme", None).await
            } else {
                let res = issue(&a, "acme", "").await;
                (res.status().as_u16(), res.json().await.unwrap())
            }
        }));
    }
    for test in tests {
        let result = test.await.unwrap();
        assert_eq!(result["outcome"], "connected", "{result}");
    }
    for job in jobs {
        let (status, body) = job.await.unwrap();
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(reuse_detected(&sim), 0, "no refresh token was used twice");
    assert_eq!(sim.token_calls(), 1, "one exchange for all of them");
    assert_eq!(b.state("acme").await, "connected");
}

/// Instance A's refresh outlives its lease (a pause, a stalled network); instance B takes the
/// lease and stores a new token; then A's exchange ends in a rejection. A no longer holds the
/// lease, so it writes nothing: the connection is not marked failed and B's token stays.
async fn a_lease_overtaken_by_a_slow_upstream_cannot_write(backend: Backend) {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/oauth2/token"))
        .respond_with(
            ResponseTemplate::new(400)
                .set_delay(Duration::from_millis(1500))
                .set_body_json(json!({"error": "invalid_grant"})),
        )
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/oauth2/token"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"access_token": "token-of-b", "expires_in": 3600})),
        )
        .with_priority(2)
        .mount(&server)
        .await;
    let a = Arc::new(app_against(&backend, &server.uri(), &[]).await);
    let b = second_instance(&a, &["--channeladvisor-url", &server.uri()]).await;
    a.put_credentials("acme", &valid()).await;
    let slow = {
        let a = a.clone();
        tokio::spawn(async move {
            let res = issue(&a, "acme", "").await;
            (res.status().as_u16(), res.json::<Value>().await.unwrap())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !slow.is_finished(),
        "A's refresh is still waiting for its answer"
    );
    expire_leases(&a);
    let (status, body) = b.call(Method::POST, "access-token", "acme", None).await;
    assert_eq!(
        (status, body["access_token"].as_str()),
        (200, Some("token-of-b")),
        "{body}"
    );
    let (status, body) = slow.await.unwrap();
    assert_eq!(
        (status, body["access_token"].as_str()),
        (200, Some("token-of-b")),
        "A's callers get the token of the lease's holder: {body}"
    );
    assert_eq!(
        b.state("acme").await,
        "untested",
        "A's late rejection was not written (saved, never tested)"
    );
    let (status, body) = b.call(Method::POST, "access-token", "acme", None).await;
    assert_eq!(
        (status, body["access_token"].as_str()),
        (200, Some("token-of-b")),
        "{body}"
    );
}

/// Test Connection with a candidate Profile ID spends the stored refresh token: the rotated one
/// it brings back is stored, so the next job refresh (on the other instance) works.
async fn a_candidate_test_keeps_the_rotated_refresh_token(backend: Backend) {
    let sim = rotating_sim(0);
    let a = app_against(&backend, &sim.url(), &[]).await;
    let b = second_instance(&a, &["--channeladvisor-url", &sim.url()]).await;
    a.put_credentials("acme", &valid()).await;
    let result = test_connection(&a, "acme", Some(json!({"profile_id": 12345678}))).await;
    assert_eq!(result["outcome"], "connected", "{result}");
    assert_eq!(result["candidate"], true);
    let (status, body) = b.call(Method::POST, "access-token", "acme", None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(reuse_detected(&sim), 0, "no refresh token was used twice");
    // The candidate's token was not cached: the job's token is a refresh of its own.
    assert_eq!(sim.token_calls(), 2);
}

/// SQLite only: while another process holds the database's write lock, requests that must
/// write wait off the HTTP workers, so a request that needs no database answers at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_sqlite_file_parks_no_http_worker() {
    // Eight companies on one refresh token: a client that does not rotate.
    let sim = crate::connection::sim(0);
    let app = Arc::new(app_against(&Backend::Sqlite, &sim.url(), &[]).await);
    for i in 0..8 {
        app.put_credentials(&format!("co{i}"), &valid()).await;
    }
    let db = app.database();
    let mut writer = db.get().unwrap();
    diesel::sql_query("BEGIN IMMEDIATE")
        .execute(&mut *writer)
        .unwrap();
    // Each needs the refresh lease, a write: they wait for the lock.
    let waiting: Vec<_> = (0..8)
        .map(|i| {
            let app = app.clone();
            tokio::spawn(async move { issue(&app, &format!("co{i}"), "").await.status() })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = std::time::Instant::now();
    let health = app.client.get(app.url("/healthz")).send().await.unwrap();
    let took = started.elapsed();
    assert_eq!(health.status(), 200);
    assert!(
        took < Duration::from_millis(1000),
        "healthz waited {took:?} behind requests parked on the lock"
    );
    tokio::time::sleep(Duration::from_millis(1000)).await;
    diesel::sql_query("COMMIT").execute(&mut *writer).unwrap();
    for w in waiting {
        assert_eq!(w.await.unwrap(), 200);
    }
}

/// Makes every refresh lease look run out, as after a long pause of its holder.
fn expire_leases(app: &TestApp) {
    let db = app.database();
    let mut conn = db.get().unwrap();
    diesel::sql_query("UPDATE credentials SET token_lease_until = '2000-01-01 00:00:00'")
        .execute(&mut *conn)
        .unwrap();
}

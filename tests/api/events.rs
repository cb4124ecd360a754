//! Contract §11: live events as Server-Sent Events, read over real HTTP, across two instances
//! (on SQLite, two processes on one file), resumed with Last-Event-ID, on both backends.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{json, Value};

use crate::connection::{app_against, sim, test_connection, valid};
use crate::helpers::{admin, assert_problem, second_instance, spawn_app, token, Backend, TestApp};
use crate::on_both_backends;

on_both_backends!(
    a_change_through_another_process_reaches_the_stream,
    last_event_id_replays_what_followed_or_resets,
    streams_refuse_what_they_cannot_serve,
    a_failed_test_names_itself_in_the_status_change,
    a_hole_after_the_resume_point_says_reset,
    one_caller_holds_a_bounded_number_of_streams,
    a_stream_carries_tests_and_refresh_failures_not_pings_and_keeps_alive,
);

/// One parsed SSE frame (comments are skipped).
#[derive(Debug, Clone)]
struct Frame {
    id: Option<i64>,
    event: String,
    data: Value,
}

/// An open stream, read frame by frame.
struct Stream {
    bytes: std::pin::Pin<
        Box<dyn futures_util::Stream<Item = reqwest::Result<actix_web::web::Bytes>> + Send>,
    >,
    buffer: String,
    /// When the last block (event or comment) was read.
    last_at: std::time::Instant,
}

impl Stream {
    async fn open(app: &TestApp, query: &str, bearer: &str, last: Option<i64>) -> Stream {
        let mut req = app
            .client
            .get(app.url(&format!("/api/v1/events{query}")))
            .bearer_auth(bearer)
            .header("accept", "text/event-stream");
        if let Some(id) = last {
            req = req.header("last-event-id", id.to_string());
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), 200);
        assert!(res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream"));
        Stream {
            bytes: Box::pin(res.bytes_stream()),
            buffer: String::new(),
            last_at: std::time::Instant::now(),
        }
    }

    /// The next event frame within `wait`; `None` when none came (or the stream ended).
    async fn next(&mut self, wait: Duration) -> Option<Frame> {
        loop {
            match self.block(wait).await? {
                Ok(frame) => return Some(frame),
                Err(_comment) => continue,
            }
        }
    }

    /// The next comment line within `wait`, events before it skipped.
    async fn comment(&mut self, wait: Duration) -> Option<String> {
        loop {
            if let Err(comment) = self.block(wait).await? {
                return Some(comment);
            }
        }
    }

    /// The next block within `wait`: an event frame, or the text of a comment.
    async fn block(&mut self, wait: Duration) -> Option<Result<Frame, String>> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                self.last_at = std::time::Instant::now();
                let (mut id, mut event, mut data) = (None, String::new(), String::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id: ") {
                        id = v.parse().ok();
                    } else if let Some(v) = line.strip_prefix("event: ") {
                        event = v.to_string();
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data = v.to_string();
                    }
                }
                if event.is_empty() {
                    return Some(Err(block.trim().to_string()));
                }
                let data = serde_json::from_str(&data).unwrap_or(Value::Null);
                return Some(Ok(Frame { id, event, data }));
            }
            let chunk = tokio::time::timeout_at(deadline, self.bytes.next())
                .await
                .ok()??;
            self.buffer
                .push_str(&String::from_utf8_lossy(&chunk.unwrap()));
        }
    }

    /// Frames until `wait` passes without one.
    async fn drain(&mut self, wait: Duration) -> Vec<Frame> {
        let mut frames = Vec::new();
        while let Some(f) = self.next(wait).await {
            frames.push(f);
        }
        frames
    }
}

fn credentials(secret: &str) -> Value {
    json!({"application_id": "demo-app", "shared_secret": secret})
}

async fn a_change_through_another_process_reaches_the_stream(backend: Backend) {
    let app = spawn_app(&backend).await;
    let other = second_instance(&app, &["--channeladvisor-url", "http://127.0.0.1:9"]).await;
    let mut acme = Stream::open(&app, "", &admin(&["acme"]), None).await;
    let mut everything = Stream::open(&app, "?companies=acme", &admin(&["*"]), None).await;

    let status = other
        .call(
            reqwest::Method::PUT,
            "credentials",
            "acme",
            Some(credentials("secret-one-0001")),
        )
        .await
        .0;
    assert_eq!(status, 201);
    // The contract's second counts from the change: the other process answered after its commit.
    let answered = std::time::Instant::now();
    let first = acme.next(Duration::from_secs(3)).await.expect("an event");
    assert!(
        answered.elapsed() < Duration::from_secs(1),
        "the other process's change arrived {:?} after it answered",
        answered.elapsed()
    );
    let (status, _) = other
        .call(
            reqwest::Method::PUT,
            "credentials",
            "beta",
            Some(credentials("secret-two-0001")),
        )
        .await;
    assert_eq!(status, 201);
    assert_eq!(first.event, "credentials.updated");
    assert_eq!(first.data["type"], "credentials.updated");
    assert_eq!(first.data["data"]["company"], "acme");
    assert_eq!(
        first.data["data"]["changed"],
        json!(["application_id", "shared_secret"])
    );
    let second = acme
        .next(Duration::from_secs(2))
        .await
        .expect("the status change");
    assert_eq!(second.event, "connection.status_changed");
    assert_eq!(second.data["data"]["state"], "incomplete");
    assert!(second.id > first.id, "ids increase");
    // beta is not covered by the token: nothing of it arrives.
    let rest = acme.drain(Duration::from_millis(700)).await;
    assert!(rest.is_empty(), "{rest:?}");
    // A token for every company, narrowed to acme by the query, sees the same two.
    let narrowed = everything.drain(Duration::from_millis(700)).await;
    let companies: Vec<&Value> = narrowed
        .iter()
        .map(|f| &f.data["data"]["company"])
        .collect();
    assert_eq!(companies, [&json!("acme"), &json!("acme")], "{narrowed:?}");
    // Changes one after another, each made just after the last one arrived: an instance that
    // looked for other processes' commits less often than once a second misses the bound here
    // whatever its timing (it looked just before each change was made).
    for profile in 1..=3 {
        let (status, _) = other
            .call(
                reqwest::Method::PATCH,
                "credentials",
                "acme",
                Some(json!({ "profile_id": profile })),
            )
            .await;
        assert_eq!(status, 200);
        let answered = std::time::Instant::now();
        let got = acme.next(Duration::from_secs(3)).await.expect("an event");
        assert_eq!(got.data["data"]["changed"], json!(["profile_id"]));
        assert!(
            answered.elapsed() < Duration::from_secs(1),
            "change {profile} arrived {:?} after it answered",
            answered.elapsed()
        );
    }
    // And a change made here reaches it too, with nobody subscribed to web-hooks.
    app.patch_credentials("acme", &json!({"profile_id": 7}))
        .await;
    let local = acme
        .next(Duration::from_secs(2))
        .await
        .expect("a local change");
    assert_eq!(local.data["data"]["changed"], json!(["profile_id"]));
}

async fn last_event_id_replays_what_followed_or_resets(backend: Backend) {
    let app = spawn_app(&backend).await;
    let bearer = admin(&["acme"]);
    let mut live = Stream::open(&app, "", &bearer, None).await;
    for i in 0..3 {
        app.put_credentials("acme", &credentials(&format!("secret-{i}-abcdef")))
            .await;
    }
    let seen = live.drain(Duration::from_millis(800)).await;
    let updates: Vec<&Frame> = seen
        .iter()
        .filter(|f| f.event == "credentials.updated")
        .collect();
    assert_eq!(updates.len(), 3, "{seen:?}");
    let first = updates[0].id.unwrap();

    // Reconnect after the first: everything that followed, in order, as sent live.
    let mut resumed = Stream::open(&app, "", &bearer, Some(first)).await;
    let replayed = resumed.drain(Duration::from_millis(500)).await;
    let expected: Vec<i64> = seen
        .iter()
        .filter_map(|f| f.id)
        .filter(|id| *id > first)
        .collect();
    assert_eq!(
        replayed.iter().filter_map(|f| f.id).collect::<Vec<_>>(),
        expected
    );
    // The same with the query parameter, for clients that cannot set the header.
    let mut by_query = Stream::open(&app, &format!("?last_event_id={first}"), &bearer, None).await;
    assert_eq!(
        by_query.drain(Duration::from_millis(500)).await.len(),
        expected.len()
    );

    // Swept events: resuming from one of them says reset first.
    {
        use diesel::RunQueryDsl;
        let db = app.database();
        let mut conn = db.get().unwrap();
        let swept = diesel::sql_query(format!(
            "DELETE FROM outbox_events WHERE seq <= {}",
            first + 1
        ))
        .execute(&mut *conn)
        .unwrap();
        assert!(swept >= 1);
    }
    let mut stale = Stream::open(&app, "", &bearer, Some(first)).await;
    let reset = stale.next(Duration::from_secs(2)).await.unwrap();
    assert_eq!(reset.event, "reset");
    assert!(stale.drain(Duration::from_millis(300)).await.is_empty());
}

async fn streams_refuse_what_they_cannot_serve(backend: Backend) {
    let app = spawn_app(&backend).await;
    let url = app.url("/api/v1/events");
    let sse = |req: reqwest::RequestBuilder| req.header("accept", "text/event-stream");
    let res = sse(app.client.get(&url)).send().await.unwrap();
    assert_problem(res, 401, "invalid_token").await;
    let res = app
        .client
        .get(&url)
        .bearer_auth(admin(&["acme"]))
        .send()
        .await
        .unwrap();
    assert_problem(res, 406, "not_acceptable").await;
    let res = sse(app.client.get(format!("{url}?companies=beta")))
        .bearer_auth(admin(&["acme"]))
        .send()
        .await
        .unwrap();
    assert_problem(res, 403, "company_forbidden").await;
    let res = sse(app.client.get(&url))
        .bearer_auth(token(&["acme"], "credentials:read"))
        .send()
        .await
        .unwrap();
    assert_problem(res, 403, "insufficient_scope").await;
    let res = sse(app.client.get(&url))
        .bearer_auth(admin(&["acme"]))
        .header("last-event-id", "yesterday")
        .send()
        .await
        .unwrap();
    assert_problem(res, 400, "invalid_query").await;

    // The stream ends when the token expires.
    let short = crate::helpers::token_expiring_in(&["acme"], "connection:read", 2);
    let mut stream = Stream::open(&app, "", &short, None).await;
    let started = std::time::Instant::now();
    assert!(stream.next(Duration::from_secs(6)).await.is_none());
    let ended = started.elapsed();
    assert!(
        ended < Duration::from_secs(5),
        "the stream outlived its token: {ended:?}"
    );
}

/// Contract §7 on the stream (§11): a Test Connection that fails through the shared token exchange
/// records one `connection.tested` and one `connection.status_changed` carrying that test's id;
/// `access_token.refresh_failed` is for refreshes a job or refresh ahead asked for.
async fn a_failed_test_names_itself_in_the_status_change(backend: Backend) {
    let sim = sim(0);
    let app = app_against(&backend, &sim.url(), &[]).await;
    let valid = valid();
    app.put_credentials("acme", &valid).await;
    assert_eq!(
        test_connection(&app, "acme", None).await["outcome"],
        "connected"
    );
    let mut stream = Stream::open(&app, "", &admin(&["acme"]), None).await;
    let res = app
        .patch_credentials("acme", &json!({"shared_secret": "a-wrong-shared-secret"}))
        .await;
    assert_eq!(res.status(), 200);
    let failed = test_connection(&app, "acme", None).await;
    assert_eq!(failed["outcome"], "failed", "{failed}");
    let frames = stream.drain(Duration::from_millis(800)).await;
    let kinds: Vec<&str> = frames.iter().map(|f| f.event.as_str()).collect();
    assert!(!kinds.contains(&"access_token.refresh_failed"), "{kinds:?}");
    let tested: Vec<&Frame> = frames
        .iter()
        .filter(|f| f.event == "connection.tested")
        .collect();
    assert_eq!(tested.len(), 1, "{kinds:?}");
    assert_eq!(tested[0].data["data"]["test_id"], failed["id"]);
    let to_failed: Vec<&Frame> = frames
        .iter()
        .filter(|f| f.event == "connection.status_changed" && f.data["data"]["state"] == "failed")
        .collect();
    assert_eq!(to_failed.len(), 1, "{frames:?}");
    assert_eq!(
        to_failed[0].data["data"]["test_id"], failed["id"],
        "{frames:?}"
    );

    // A job's refresh that fails the same way is a refresh failure, with no test to name.
    let res = app
        .patch_credentials("acme", &json!({"shared_secret": "another-wrong-secret"}))
        .await;
    assert_eq!(res.status(), 200);
    let res = app
        .client
        .post(app.url("/api/v1/companies/acme/access-token"))
        .bearer_auth(token(&["acme"], "token:issue"))
        .send()
        .await
        .unwrap();
    assert!(res.status().is_client_error() || res.status().is_server_error());
    let frames = stream.drain(Duration::from_millis(800)).await;
    let refresh_failed = frames
        .iter()
        .filter(|f| f.event == "access_token.refresh_failed")
        .count();
    assert_eq!(refresh_failed, 1, "{frames:?}");
}

/// Retention keeps old events still owed to a web-hook, so the log can have a hole after the
/// resume point even when older events are kept: that says `reset`, never skips silently.
async fn a_hole_after_the_resume_point_says_reset(backend: Backend) {
    let app = spawn_app(&backend).await;
    let bearer = admin(&["acme"]);
    let mut live = Stream::open(&app, "", &bearer, None).await;
    for i in 0..4 {
        app.put_credentials("acme", &credentials(&format!("secret-{i}-abcdef")))
            .await;
    }
    let ids: Vec<i64> = live
        .drain(Duration::from_millis(800))
        .await
        .iter()
        .filter_map(|f| f.id)
        .collect();
    assert!(ids.len() >= 4, "{ids:?}");
    let first = ids[0];
    {
        use diesel::RunQueryDsl;
        let db = app.database();
        let mut conn = db.get().unwrap();
        // The resume point is kept, the two after it are gone.
        let swept = diesel::sql_query(format!(
            "DELETE FROM outbox_events WHERE seq > {first} AND seq <= {}",
            first + 2
        ))
        .execute(&mut *conn)
        .unwrap();
        assert_eq!(swept, 2);
    }
    let mut resumed = Stream::open(&app, "", &bearer, Some(first)).await;
    let frames = resumed.drain(Duration::from_millis(500)).await;
    assert_eq!(
        frames.first().map(|f| f.event.as_str()),
        Some("reset"),
        "{frames:?}"
    );
    assert_eq!(
        frames.len(),
        1,
        "nothing older than the reset follows it: {frames:?}"
    );
    // And it goes on live.
    app.patch_credentials("acme", &json!({"profile_id": 9}))
        .await;
    let next = resumed
        .next(Duration::from_secs(2))
        .await
        .expect("a live event");
    assert_eq!(next.data["data"]["changed"], json!(["profile_id"]));
}

/// A caller (a token's subject) holds at most 32 streams on one instance: a 33rd ends the oldest
/// (a screen that reconnects is never locked out by streams it closed), and other callers'
/// streams are not touched.
async fn one_caller_holds_a_bounded_number_of_streams(backend: Backend) {
    let app = spawn_app(&backend).await;
    let bearer = crate::helpers::token_for("screen@acme", &["acme"], "connection:read");
    let mut others = Stream::open(&app, "", &admin(&["acme"]), None).await;
    let mut open = Vec::new();
    for _ in 0..33 {
        open.push(Stream::open(&app, "", &bearer, None).await);
    }
    // The first stream ends: it sends nothing more and closes.
    let mut oldest = open.remove(0);
    assert!(oldest.next(Duration::from_secs(2)).await.is_none());
    app.put_credentials("acme", &credentials("secret-9-abcdef"))
        .await;
    // Every other stream carries on.
    for stream in open.iter_mut().chain(std::iter::once(&mut others)) {
        let got = stream.next(Duration::from_secs(2)).await.expect("an event");
        assert_eq!(got.event, "credentials.updated");
    }
    assert!(oldest.next(Duration::from_millis(300)).await.is_none());
}

/// Contract §11: every event of §7 but `webhook.ping` reaches a stream, and a stream with nothing
/// to say gets a comment 15 s after the last thing it was sent, so a proxy does not close it.
async fn a_stream_carries_tests_and_refresh_failures_not_pings_and_keeps_alive(backend: Backend) {
    use wiremock::{matchers::method, Mock, MockServer, ResponseTemplate};
    let sim = sim(0);
    let app = crate::webhooks::app_for_hooks(&backend, &sim.url(), "0,1").await;
    app.put_credentials("acme", &valid()).await;
    let receiver = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&receiver)
        .await;
    let hook = crate::webhooks::subscribe(
        &app,
        json!({"url": receiver.uri(), "companies": ["acme"]}),
        &["acme"],
    )
    .await;
    let mut stream = Stream::open(&app, "", &admin(&["acme"]), None).await;

    let ping = app
        .client
        .post(app.url(&format!(
            "/api/v1/webhooks/{}/ping",
            hook["id"].as_str().unwrap()
        )))
        .bearer_auth(admin(&["acme"]))
        .send()
        .await
        .unwrap();
    assert_eq!(ping.status(), 202);
    let pinged = crate::webhooks::received(&receiver, 1, Duration::from_secs(5)).await;
    assert_eq!(pinged.len(), 1, "the ping was sent (to the web-hook)");
    assert_eq!(
        test_connection(&app, "acme", None).await["outcome"],
        "connected"
    );
    let revoked = json!({"application_id": crate::connection::APP, "shared_secret": crate::connection::SECRET, "refresh_token": "revoked-token-0000"});
    app.put_credentials("acme", &revoked).await;
    let job = crate::tokens::issue(&app, "acme", "").await;
    assert_eq!(job.status(), 409);

    let frames = stream.drain(Duration::from_millis(1500)).await;
    let types: Vec<&str> = frames.iter().map(|f| f.event.as_str()).collect();
    for wanted in ["connection.tested", "access_token.refresh_failed"] {
        assert!(types.contains(&wanted), "{wanted} in {types:?}");
    }
    assert!(!types.contains(&"webhook.ping"), "{types:?}");

    // Quiet from here: the next thing sent is a comment, 15 s after the last event.
    let quiet_since = stream.last_at;
    let comment = stream
        .comment(Duration::from_secs(17))
        .await
        .expect("a keep-alive comment");
    let gap = stream.last_at - quiet_since;
    assert!(comment.starts_with(':'), "{comment}");
    assert!(
        gap >= Duration::from_millis(14_500) && gap <= Duration::from_millis(16_500),
        "the comment came {gap:?} after the last event"
    );
}

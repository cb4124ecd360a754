//! Hot reads (a company's token, its connection status) are served from memory for a moment.
//! These tests put a second instance (a `serve` process of its own) beside the test app on one
//! database: it does not see the test app's commits, so only the time window and the settling of
//! saves and tests keep it from answering with what was true before a change.

use serde_json::json;

use crate::connection::{app_against, sim, test_connection, valid};
use crate::helpers::{second_instance, Backend};
use crate::on_both_backends;

on_both_backends!(nothing_old_is_served_from_memory_after_a_change_answered);

async fn nothing_old_is_served_from_memory_after_a_change_answered(backend: Backend) {
    let sim = sim(0);
    let a = app_against(&backend, &sim.url(), &[]).await;
    let b = second_instance(&a, &["--channeladvisor-url", &sim.url()]).await;
    a.put_credentials("acme", &valid()).await;
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

/// Issue 27: replaying live events is bounded. A 72 h log of a busy fleet (20,000 events, ~14 MB),
/// and 1,000 streams resuming from its start that never read: the server grows by less than
/// 32 MiB (each stream holds one page of the log and its connection's write buffer, never the
/// log). Before, every stream loaded the whole log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_streams_resuming_from_the_start_stay_bounded() {
    use diesel::RunQueryDsl;
    let app = crate::helpers::spawn_app(&Backend::Sqlite).await;
    let events = 20_000;
    {
        let db = app.database();
        let mut conn = db.get().unwrap();
        let padding = "x".repeat(560);
        for start in (1..=events).step_by(500) {
            let rows: Vec<String> = (start..start + 500)
                .map(|seq| {
                    format!(
                        "('e-{seq}', 'connection.tested', 'acme', '{{\"type\":\"connection.tested\",\"data\":{{\"company\":\"acme\",\"note\":\"{padding}\"}}}}', '2026-12-07 00:00:00', {seq})"
                    )
                })
                .collect();
            diesel::sql_query(format!(
                "INSERT INTO outbox_events (id, event_type, company, body, created_at, seq) VALUES {}",
                rows.join(",")
            ))
            .execute(&mut *conn)
            .unwrap();
        }
    }
    let other = second_instance(&app, &["--channeladvisor-url", "http://127.0.0.1:9"]).await;
    let client = reqwest::Client::new();
    let open = |i: usize, resume: Option<i64>| {
        let mut req = client
            .get(other.url("/api/v1/events"))
            .bearer_auth(crate::helpers::token_for(
                &format!("reader-{i}"),
                &["*"],
                "connection:read",
            ))
            .header("accept", "text/event-stream");
        if let Some(id) = resume {
            req = req.header("last-event-id", id.to_string());
        }
        async move {
            let res = req.send().await.unwrap();
            assert_eq!(res.status(), 200);
            res
        }
    };
    // One stream read to its end first: what any first stream allocates is not counted.
    let mut first = open(usize::MAX, Some(0)).await;
    let mut read = 0;
    while read < events * 600 {
        match tokio::time::timeout(std::time::Duration::from_secs(5), first.chunk()).await {
            Ok(Ok(Some(bytes))) => read += bytes.len(),
            _ => break,
        }
    }
    assert!(
        read >= events * 600,
        "the replay reaches the end of the log: {read} bytes"
    );
    drop(first);
    // Until the server has filled what each stream may hold (its growth stops).
    let settled = || async {
        let mut last = other.process.as_ref().unwrap().rss_kib();
        for _ in 0..20 {
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            let now = other.process.as_ref().unwrap().rss_kib();
            if now.abs_diff(last) < 512 {
                break;
            }
            last = now;
        }
        last
    };
    // The baseline in the same run: 1,000 live streams with nothing to replay.
    let start = other.process.as_ref().unwrap().rss_kib();
    let mut held = Vec::new();
    for chunk in (0..1000).collect::<Vec<_>>().chunks(50) {
        held.extend(futures_util::future::join_all(chunk.iter().map(|i| open(*i, None))).await);
    }
    let idle = settled().await;
    let before = idle;
    for chunk in (1000..2000).collect::<Vec<_>>().chunks(50) {
        held.extend(futures_util::future::join_all(chunk.iter().map(|i| open(*i, Some(0)))).await);
    }
    let after = settled().await;
    let mib = |kib: u64| kib as f64 / 1024.0;
    let (baseline, grown) = (
        mib(idle.saturating_sub(start)),
        mib(after.saturating_sub(before)),
    );
    eprintln!("1,000 live streams: +{baseline:.1} MiB; 1,000 more resuming from 0 over {events} events, never reading: +{grown:.1} MiB ({:.2}x the live streams)", grown / baseline.max(0.1));
    assert!(grown < 32.0, "grew {grown:.1} MiB for 1,000 streams");
    // Contract §11: a thousand idle streams cost under 16 MiB. That is the release build's figure
    // (benches/events.rs: +12.5 to +13.6 MiB); this debug build's larger, unoptimised futures
    // take about 3.5 KiB more a stream (+16.9 to +17.0 MiB measured), so the bound here is the
    // promise plus that stated allowance, 20 MiB: a regression of a few KiB a stream fails it.
    assert!(baseline < 20.0, "1,000 idle streams took {baseline:.1} MiB");
    drop(held);
}

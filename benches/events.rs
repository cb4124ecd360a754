//! Live events (figures in docs/performance.md). Run: `cargo bench --bench events`, with
//! `TEST_DATABASE_URL=postgres://…` to measure PostgreSQL as well.
//!
//! The release `ca-connector serve` runs as its own process. 1,000 streams are opened; its
//! resident memory is read before and after (idle streams). Then 20 changes are made through the
//! API, one at a time, and for every stream the delay from the event's own timestamp (taken inside
//! the transaction that writes it, just before its commit) to the frame's arrival is recorded.

#![allow(clippy::unwrap_used, clippy::expect_used)] // measuring code: a panic is a failed run

use std::io::BufRead;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use secrecy::ExposeSecret;

#[path = "support/mod.rs"]
#[allow(dead_code)] // this benchmark runs the service as a process, not in-process
mod support;

const STREAMS: usize = 1000;
const CHANGES: usize = 20;

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

fn serve(database_url: Option<&str>, dir: &std::path::Path) -> (std::process::Child, String) {
    let keys = schema::KeyRing::generate_spec("bench");
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_ca-connector"));
    cmd.args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--log-format",
        "json",
        "--log",
        "warn,ca_connector=info",
    ])
    .arg("--data-dir")
    .arg(dir)
    .env("CA_CONNECTOR_JWT_SECRET", support::JWT)
    .env("CA_CONNECTOR_ENCRYPTION_KEYS", keys.expose_secret())
    .stderr(std::process::Stdio::piped());
    if let Some(url) = database_url {
        cmd.env("CA_CONNECTOR_DATABASE_URL", url);
    }
    let mut child = cmd.spawn().unwrap();
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let port = loop {
        let line = lines.next().expect("serve exited").unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        if v["fields"]["message"] == "serving" {
            break v["fields"]["port"].as_u64().unwrap();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    (child, format!("http://127.0.0.1:{port}"))
}

fn fresh_postgres(admin: &str) -> String {
    use diesel::{Connection, RunQueryDsl};
    let name = format!("bench_{}", uuid::Uuid::new_v4().simple());
    schema::pool::init_tls();
    let mut conn = diesel::PgConnection::establish(admin).unwrap();
    diesel::sql_query(format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .unwrap();
    let mut url = url::Url::parse(admin).unwrap();
    url.set_path(&format!("/{name}"));
    url.to_string()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

async fn measure(label: &str, database_url: Option<String>) {
    let dir = tempfile::TempDir::new().unwrap();
    let (mut child, base) = serve(database_url.as_deref(), dir.path());
    let bearer = support::bearer("connection:read credentials:write");
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    // Warm: one save, so the first measured change is not the first write.
    http.put(format!("{base}/api/v1/companies/acme/credentials"))
        .bearer_auth(&bearer)
        .json(&serde_json::json!({"application_id": "warm-up"}))
        .send()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle = rss_kib(child.id());

    let delays = Arc::new(Mutex::new(Vec::new()));
    let mut readers = Vec::new();
    for _ in 0..STREAMS {
        let res = reqwest::Client::new()
            .get(format!("{base}/api/v1/events"))
            .bearer_auth(&bearer)
            .header("accept", "text/event-stream")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let delays = delays.clone();
        readers.push(tokio::spawn(async move {
            let mut bytes = res.bytes_stream();
            let mut buffer = String::new();
            while let Some(Ok(chunk)) = bytes.next().await {
                let arrived = chrono::Utc::now();
                buffer.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(end) = buffer.find("\n\n") {
                    let block: String = buffer.drain(..end + 2).collect();
                    let Some(data) = block.lines().find_map(|l| l.strip_prefix("data: ")) else {
                        continue;
                    };
                    let v: serde_json::Value = serde_json::from_str(data).unwrap_or_default();
                    if v["type"] != "credentials.updated" {
                        continue;
                    }
                    let at = chrono::DateTime::parse_from_rfc3339(v["timestamp"].as_str().unwrap())
                        .unwrap();
                    let ms = (arrived - at.with_timezone(&chrono::Utc))
                        .num_microseconds()
                        .unwrap() as f64
                        / 1000.0;
                    delays.lock().unwrap().push(ms);
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let open = rss_kib(child.id());

    for i in 0..CHANGES {
        let res = http
            .patch(format!("{base}/api/v1/companies/acme/credentials"))
            .bearer_auth(&bearer)
            .header("content-type", "application/merge-patch+json")
            .body(format!("{{\"profile_id\": {}}}", i + 1))
            .send()
            .await
            .unwrap();
        assert!(res.status().is_success());
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut all = delays.lock().unwrap().clone();
    all.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "{label}: RSS idle {:.1} MiB, with {STREAMS} idle streams {:.1} MiB (+{:.1} MiB, target < 16); \
         {} deliveries of {CHANGES} events: median {:.1} ms, p99 {:.1} ms, max {:.1} ms after the event's timestamp (target p99 < 100 ms)",
        idle as f64 / 1024.0,
        open as f64 / 1024.0,
        (open as f64 - idle as f64) / 1024.0,
        all.len(),
        percentile(&all, 0.5),
        percentile(&all, 0.99),
        all.last().copied().unwrap_or(f64::NAN)
    );
    assert_eq!(all.len(), STREAMS * CHANGES, "every stream got every event");
    for r in readers {
        r.abort();
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    measure("SQLite", None).await;
    match std::env::var("TEST_DATABASE_URL") {
        Ok(admin) if !admin.is_empty() => measure("PostgreSQL", Some(fresh_postgres(&admin))).await,
        _ => println!("PostgreSQL: skipped (set TEST_DATABASE_URL)"),
    }
}

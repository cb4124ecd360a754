//! Test Connection benchmarks (figures in docs/performance.md). Run: `cargo bench --bench test_connection`.
//!
//! 1. Overhead: the median time `POST …/connection/test` takes minus the median time of the two
//!    upstream round trips themselves (the same client calling the simulator directly), measured
//!    interleaved in one run against a simulator with no added latency.
//! 2. Fan-out: 1,000 companies (one Application ID) tested at once with upstream concurrency 4 and
//!    a simulator adding L ms per call; ideal wall time = 1,000 × (2 × L) ÷ 4. Resident memory is
//!    sampled before, during and after two rounds.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test and measuring code: a panic is a failed run

use std::sync::Arc;
use std::time::{Duration, Instant};

use connector::sim::{SimConfig, Simulator};
use connector::{ApplicationId, ChannelAdvisorClient, RefreshToken, SharedSecret};
use serde_json::json;

#[path = "support/mod.rs"]
mod support;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

async fn start_app(upstream: &str, concurrency: usize, dir: &std::path::Path) -> String {
    let concurrency = concurrency.to_string();
    support::start_app(
        dir,
        &[
            "--channeladvisor-url",
            upstream,
            "--upstream-concurrency",
            &concurrency,
        ],
    )
    .await
}

fn token() -> String {
    support::bearer("credentials:write connection:test")
}

async fn seed(http: &reqwest::Client, base: &str, bearer: &str, n: usize) {
    for i in 0..n {
        let res = http
            .put(format!("{base}/api/v1/companies/c{i:04}/credentials"))
            .bearer_auth(bearer)
            .json(&json!({"application_id": "demo-app", "shared_secret": "demo-shared-secret-0001", "refresh_token": "demo-refresh-token-0001"}))
            .send()
            .await
            .unwrap();
        assert!(res.status().is_success());
    }
}

async fn test_once(http: &reqwest::Client, base: &str, bearer: &str, company: &str) -> Duration {
    let started = Instant::now();
    let res = http
        .post(format!("{base}/api/v1/companies/{company}/connection/test"))
        .bearer_auth(bearer)
        .send()
        .await
        .unwrap();
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["outcome"], "connected", "{body}");
    started.elapsed()
}

/// The connector's own client aimed straight at the simulator, with its demo credentials: the
/// upstream round trips as they are, without the service in between.
fn direct_client(
    sim_url: &str,
) -> (
    ChannelAdvisorClient,
    ApplicationId,
    SharedSecret,
    RefreshToken,
) {
    let client = ChannelAdvisorClient::new(
        url::Url::parse(sim_url).unwrap(),
        Duration::from_secs(15),
        4,
    )
    .unwrap();
    let app = ApplicationId::parse("demo-app").unwrap().unwrap();
    let secret = SharedSecret::parse("demo-shared-secret-0001")
        .unwrap()
        .unwrap();
    let refresh = RefreshToken::parse("demo-refresh-token-0001")
        .unwrap()
        .unwrap();
    (client, app, secret, refresh)
}

async fn overhead() {
    let sim = Simulator::start(SimConfig::default(), "127.0.0.1:0").unwrap();
    let dir = tempfile::TempDir::new().unwrap();
    let base = start_app(&sim.url(), 4, dir.path()).await;
    let http = reqwest::Client::new();
    let bearer = token();
    seed(&http, &base, &bearer, 1).await;
    let (direct, app, secret, refresh) = direct_client(&sim.url());
    let (mut api, mut upstream) = (Vec::new(), Vec::new());
    for i in 0..2200 {
        let started = Instant::now();
        let grant = direct.refresh_grant(&app, &secret, &refresh).await.unwrap();
        direct.profiles(&grant.access_token).await.unwrap();
        let up = started.elapsed();
        let through = test_once(&http, &base, &bearer, "c0000").await;
        if i >= 200 {
            // the first 200 warm up connections and caches
            upstream.push(up.as_secs_f64() * 1000.0);
            api.push(through.as_secs_f64() * 1000.0);
        }
    }
    let (m_api, m_up) = (median(api), median(upstream));
    println!("overhead: median Test Connection {m_api:.3} ms, median two upstream round trips {m_up:.3} ms, added {:.3} ms (target < 2 ms), n=2000", m_api - m_up);
}

/// Starts the release `ca-connector serve` as its own process, so its memory is measured alone.
fn spawn_service(upstream: &str, dir: &std::path::Path) -> (std::process::Child, String) {
    use std::io::BufRead;
    let keys = schema::KeyRing::generate_spec("bench");
    use secrecy::ExposeSecret;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ca-connector"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--log-format",
            "json",
            "--upstream-concurrency",
            "4",
            "--channeladvisor-url",
            upstream,
        ])
        .arg("--data-dir")
        .arg(dir)
        .env("CA_CONNECTOR_JWT_SECRET", support::JWT)
        .env("CA_CONNECTOR_ENCRYPTION_KEYS", keys.expose_secret())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let port = loop {
        let line = lines.next().expect("serve exited").unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        if v["fields"]["message"] == "serving" {
            break v["fields"]["port"].as_u64().unwrap();
        }
    };
    // Keep draining the log so the service never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (child, format!("http://127.0.0.1:{port}"))
}

fn rss_of(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

async fn fan_out(latency_ms: u64, rounds: usize) {
    let sim = Simulator::start(
        SimConfig {
            latency: Duration::from_millis(latency_ms),
            ..Default::default()
        },
        "127.0.0.1:0",
    )
    .unwrap();
    // The upstream round trip as a client sees it (the simulator's sleep plus HTTP on loopback).
    let (direct, app, secret, refresh) = direct_client(&sim.url());
    let mut trips = Vec::new();
    for _ in 0..100 {
        let started = Instant::now();
        direct.refresh_grant(&app, &secret, &refresh).await.unwrap();
        trips.push(started.elapsed().as_secs_f64());
    }
    let rtt = median(trips);
    let dir = tempfile::TempDir::new().unwrap();
    let (mut service, base) = spawn_service(&sim.url(), dir.path());
    let pid = service.id();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(1100)
        // Below the service's 5 s keep-alive, so no request goes out on a connection it is closing.
        .pool_idle_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(600))
        .build()
        .unwrap();
    let bearer = Arc::new(token());
    seed(&http, &base, &bearer, 1000).await;
    let ideal_configured = 1000.0 * (2.0 * latency_ms as f64 / 1000.0) / 4.0;
    let ideal_measured = 1000.0 * (2.0 * rtt) / 4.0;
    println!(
        "fan-out: upstream round trip measured {:.2} ms (simulator sleeps {latency_ms} ms)",
        rtt * 1000.0
    );
    for round in 1..=rounds {
        let before = rss_of(pid);
        let peak = Arc::new(std::sync::atomic::AtomicU64::new(before));
        let sampler = {
            let peak = peak.clone();
            tokio::spawn(async move {
                loop {
                    peak.fetch_max(rss_of(pid), std::sync::atomic::Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            })
        };
        let started = Instant::now();
        let tasks: Vec<_> = (0..1000)
            .map(|i| {
                let (http, base, bearer) = (http.clone(), base.clone(), bearer.clone());
                tokio::spawn(
                    async move { test_once(&http, &base, &bearer, &format!("c{i:04}")).await },
                )
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let wall = started.elapsed().as_secs_f64();
        sampler.abort();
        println!(
            "fan-out round {round}: 1000 companies at once, concurrency 4: wall {wall:.2} s; ideal {ideal_measured:.2} s by measured round trip ({:+.1}%), {ideal_configured:.2} s by configured latency ({:+.1}%); service RSS before {:.1} MiB, peak {:.1} MiB, after {:.1} MiB",
            (wall / ideal_measured - 1.0) * 100.0,
            (wall / ideal_configured - 1.0) * 100.0,
            before as f64 / 1024.0,
            peak.load(std::sync::atomic::Ordering::Relaxed) as f64 / 1024.0,
            rss_of(pid) as f64 / 1024.0
        );
    }
    println!(
        "upstream calls {}, max in flight per application {}",
        sim.token_calls() + sim.profile_calls(),
        sim.stats()
            .max_in_flight_per_app
            .load(std::sync::atomic::Ordering::SeqCst)
    );
    let _ = service.kill();
    let _ = service.wait();
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    overhead().await;
    fan_out(25, 10).await;
}

//! Web-hook delivery benchmark (figures in docs/performance.md): events per second from commit to
//! delivered against a local receiver, and the latency from the event's commit (its `timestamp`,
//! taken inside the writing transaction) to its arrival, p50/p99, with no retries due.
//! Run: `cargo bench --bench webhooks`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test and measuring code: a panic is a failed run

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

#[path = "support/mod.rs"]
mod support;

const EVENTS: usize = 4096;

type Arrivals = Arc<Mutex<Vec<(DateTime<Utc>, f64)>>>;

async fn receive(
    req: HttpRequest,
    body: web::Bytes,
    arrivals: web::Data<Arrivals>,
) -> HttpResponse {
    let now = Utc::now();
    let event: Value = serde_json::from_slice(&body).unwrap_or_default();
    if let Some(ts) = event["timestamp"]
        .as_str()
        .and_then(|t| t.parse::<DateTime<Utc>>().ok())
    {
        let latency = (now - ts).num_microseconds().unwrap_or(0) as f64 / 1000.0;
        let _ = req.headers().get("webhook-signature").expect("signed");
        arrivals.lock().unwrap().push((now, latency));
    }
    HttpResponse::NoContent().finish()
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let arrivals: Arrivals = Arc::default();
    let data = web::Data::new(arrivals.clone());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let receiver_port = listener.local_addr().unwrap().port();
    let receiver = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .route("/", web::post().to(receive))
    })
    .workers(1)
    .listen(listener)
    .unwrap()
    .disable_signals()
    .run();
    tokio::spawn(receiver);

    let dir = tempfile::TempDir::new().unwrap();
    let base = support::start_app(
        dir.path(),
        &[
            "--webhook-allow-private",
            "--webhook-allow-http",
            "--log",
            "warn",
        ],
    )
    .await;
    let bearer = support::bearer("credentials:write webhooks:manage");
    let http = reqwest::Client::new();
    let res = http
        .post(format!("{base}/api/v1/webhooks"))
        .bearer_auth(&bearer)
        .json(&json!({"url": format!("http://127.0.0.1:{receiver_port}/"), "companies": ["*"], "events": ["credentials.updated"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);

    phase(
        // A save answers 100 ms after its commit (the in-memory window, docs/access-tokens.md),
        // so a writer saves at most ~8 times a second: 24 writers pausing 20 ms offer ~200/s.
        "steady ~200 events/s (24 writers)",
        &http,
        &base,
        &bearer,
        &arrivals,
        24,
        84,
        Some(Duration::from_millis(20)),
    )
    .await;
    phase(
        "burst (128 writers, no pause)",
        &http,
        &base,
        &bearer,
        &arrivals,
        128,
        EVENTS / 128,
        None,
    )
    .await;
}

/// `writers` tasks each save `per_writer` new values (one event each), pausing `pace` between saves.
#[allow(clippy::too_many_arguments)]
async fn phase(
    name: &str,
    http: &reqwest::Client,
    base: &str,
    bearer: &str,
    arrivals: &Arrivals,
    writers: usize,
    per_writer: usize,
    pace: Option<Duration>,
) {
    arrivals.lock().unwrap().clear();
    let started = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let (http, base, bearer) = (http.clone(), base.to_string(), bearer.to_string());
            tokio::spawn(async move {
                for i in 0..per_writer {
                    let company = format!("c{w}-{}", i % 25);
                    let res = http
                        .put(format!("{base}/api/v1/companies/{company}/credentials"))
                        .bearer_auth(&bearer)
                        .json(&json!({"application_id": format!("app-{}-{i}", Utc::now().timestamp_micros())}))
                        .send()
                        .await
                        .unwrap();
                    assert!(res.status().is_success());
                    if let Some(p) = pace {
                        tokio::time::sleep(p).await;
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let committed = started.elapsed().as_secs_f64();
    let total = writers * per_writer;
    while arrivals.lock().unwrap().len() < total && started.elapsed() < Duration::from_secs(120) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let delivered = started.elapsed().as_secs_f64();
    let mut latencies: Vec<f64> = arrivals.lock().unwrap().iter().map(|(_, l)| *l).collect();
    latencies.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let pct = |p: f64| latencies[((latencies.len() as f64 * p).ceil() as usize).saturating_sub(1)];
    println!(
        "web-hooks {name}: {} events committed in {committed:.2} s, all delivered after {delivered:.2} s ({:.0} events/s delivered); commit-to-delivery p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        latencies.len(),
        latencies.len() as f64 / delivered,
        pct(0.5),
        pct(0.99),
        pct(1.0)
    );
}

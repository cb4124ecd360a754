//! The settings screen's page budget (figures in docs/performance.md). Run:
//! `cargo bench --bench settings_page` (needs Debian's chromium and chromium-driver).
//!
//! Each round opens `/admin/#token=…` in a new headless Chromium with an empty profile (a first
//! load, nothing cached; the browser has shown `about:blank` first, as a running browser has) against the release service with one company's credentials stored, and
//! reads the browser's own Performance API: bytes transferred by the page and everything it
//! loaded, requests to any other origin, and the time from navigation start to the page's
//! `ca-usable` mark (the form filled from the API).

#![allow(clippy::unwrap_used, clippy::expect_used)] // measuring code: a panic is a failed run

use std::time::Duration;

#[path = "../tests/api/browser_driver.rs"]
mod browser_driver;
#[path = "support/mod.rs"]
mod support;

const ROUNDS: usize = 10;

const MEASURE: &str = r#"
const usable = performance.getEntriesByName('ca-usable')[0];
if (!usable) return null;
const nav = performance.getEntriesByType('navigation')[0];
const resources = performance.getEntriesByType('resource');
return {
  usable_ms: usable.startTime,
  bytes: nav.transferSize + resources.reduce((n, r) => n + r.transferSize, 0),
  requests: 1 + resources.length,
  other_hosts: resources.filter((r) => new URL(r.name).origin !== location.origin).length,
  dom_ready_ms: nav.domContentLoadedEventEnd,
  timeline: resources.map((r) => `${new URL(r.name).pathname} ${r.startTime.toFixed(0)}-${r.responseEnd.toFixed(0)}`),
};
"#;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let dir = tempfile::TempDir::new().unwrap();
    let base = support::start_app(dir.path(), &[]).await;
    let bearer =
        support::bearer("credentials:read credentials:write connection:read connection:test");
    let res = reqwest::Client::new()
        .put(format!("{base}/api/v1/companies/acme/credentials"))
        .bearer_auth(&bearer)
        .json(&serde_json::json!({"application_id": "demo-app", "shared_secret": "demo-shared-secret-0001", "refresh_token": "demo-refresh-token-0001"}))
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success());
    let (mut usable, mut bytes, mut requests, mut other) = (Vec::new(), Vec::new(), 0.0, 0.0);
    for _ in 0..ROUNDS {
        let browser = browser_driver::Browser::start().await.expect("a browser");
        // A running browser, as an admin's is: the page's first load, not the browser's start.
        browser.client.goto("about:blank").await.unwrap();
        browser
            .client
            .goto(&format!("{base}/admin/#token={bearer}"))
            .await
            .unwrap();
        let figures = loop {
            let v = browser.client.execute(MEASURE, vec![]).await.unwrap();
            if !v.is_null() {
                break v;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        usable.push(figures["usable_ms"].as_f64().unwrap());
        if std::env::var("TIMELINE").is_ok() {
            println!(
                "dom ready {} ms; {}",
                figures["dom_ready_ms"], figures["timeline"]
            );
        }
        bytes.push(figures["bytes"].as_f64().unwrap());
        requests = figures["requests"].as_f64().unwrap();
        other += figures["other_hosts"].as_f64().unwrap();
        browser.client.clone().close().await.unwrap();
    }
    println!(
        "settings page, first load ({ROUNDS} fresh browsers): {:.1} KB transferred (target < 100 KB), {requests} requests before usable, {other} to other hosts (target 0), usable after median {:.0} ms, max {:.0} ms (target < 300 ms)",
        median(bytes) / 1000.0,
        median(usable.clone()),
        usable.iter().cloned().fold(0.0, f64::max)
    );
}

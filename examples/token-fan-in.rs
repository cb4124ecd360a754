//! Refresh fan-in: N requests at once for access tokens over C companies with no cached token.
//! Prints p50/p99/max latency and the simulator's token-call count.
//! Usage: token-fan-in BASE_URL JWT COMPANIES REQUESTS SIM_URL

use std::time::Instant;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, base, jwt, companies, requests, sim] = args.as_slice() else {
        return Err("usage: token-fan-in BASE_URL JWT COMPANIES REQUESTS SIM_URL".into());
    };
    let (companies, requests): (usize, usize) = (companies.parse()?, requests.parse()?);
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(requests)
        .build()?;
    let before: serde_json::Value = http
        .get(format!("{sim}/_sim/stats"))
        .send()
        .await?
        .json()
        .await?;
    let started = Instant::now();
    let calls: Vec<_> = (0..requests)
        .map(|i| {
            let (http, url, jwt) = (
                http.clone(),
                format!("{base}/api/v1/companies/c{:06}/access-token", i % companies),
                jwt.clone(),
            );
            tokio::spawn(async move {
                let t = Instant::now();
                let res = http.post(url).bearer_auth(jwt).send().await;
                let ok = matches!(&res, Ok(r) if r.status() == 200);
                (t.elapsed().as_secs_f64() * 1000.0, ok)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    let mut failures = 0;
    for c in calls {
        let (ms, ok) = c.await?;
        latencies.push(ms);
        failures += usize::from(!ok);
    }
    let wall = started.elapsed().as_secs_f64();
    latencies.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let pct = |p: f64| latencies[((latencies.len() as f64 * p).ceil() as usize).saturating_sub(1)];
    let after: serde_json::Value = http
        .get(format!("{sim}/_sim/stats"))
        .send()
        .await?
        .json()
        .await?;
    let upstream =
        after["token_calls"].as_u64().unwrap_or(0) - before["token_calls"].as_u64().unwrap_or(0);
    println!(
        "fan-in: {requests} requests over {companies} companies in {wall:.3} s; failures {failures}; upstream token calls {upstream}; latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        pct(0.50),
        pct(0.99),
        pct(1.0)
    );
    Ok(())
}

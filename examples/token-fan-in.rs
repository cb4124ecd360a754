//! Refresh fan-in: N requests at once for access tokens over C companies with no cached token,
//! measured three ways in one run (each on companies no earlier run touched, or stated so):
//! - `kept-alive`: the N connections are opened first (as a job runner's pooled HTTP client
//!   holds them), then the N token requests go out together — the service's own fan-in;
//! - `new connections`: every request also opens its TCP connection, N at once;
//! - `new connections, all cached`: the same storm again on the companies just refreshed — the
//!   floor that connection set-up alone costs on this machine, with no refresh at all.
//!
//! Prints p50/p99/max latency and the simulator's token-call count for each.
//! Usage: token-fan-in BASE_URL JWT COMPANIES REQUESTS SIM_URL

use std::time::Instant;

struct Run {
    latencies: Vec<f64>,
    failures: usize,
    wall: f64,
}

/// Fires `requests` token requests at once over companies `first..first + companies`.
async fn fire(
    http: &reqwest::Client,
    base: &str,
    jwt: &str,
    first: usize,
    companies: usize,
    requests: usize,
) -> Result<Run, Box<dyn std::error::Error>> {
    let started = Instant::now();
    let calls: Vec<_> = (0..requests)
        .map(|i| {
            let (http, url, jwt) = (
                http.clone(),
                format!(
                    "{base}/api/v1/companies/c{:06}/access-token",
                    first + i % companies
                ),
                jwt.to_string(),
            );
            tokio::spawn(async move {
                let t = Instant::now();
                let res = http.post(url).bearer_auth(jwt).send().await;
                let ok = matches!(&res, Ok(r) if r.status() == 200);
                (t.elapsed().as_secs_f64() * 1000.0, ok)
            })
        })
        .collect();
    let mut run = Run {
        latencies: Vec::new(),
        failures: 0,
        wall: 0.0,
    };
    for c in calls {
        let (ms, ok) = c.await?;
        run.latencies.push(ms);
        run.failures += usize::from(!ok);
    }
    run.wall = started.elapsed().as_secs_f64();
    run.latencies.sort_by(|a, b| a.partial_cmp(b).unwrap());
    Ok(run)
}

/// Opens `n` connections to the service and leaves them idle in the client's pool.
async fn warm(http: &reqwest::Client, base: &str, n: usize) -> Result<(), reqwest::Error> {
    let calls: Vec<_> = (0..n)
        .map(|_| {
            let (http, url) = (http.clone(), format!("{base}/healthz"));
            tokio::spawn(async move { http.get(url).send().await?.bytes().await })
        })
        .collect();
    for c in calls {
        c.await.expect("warm-up task")?;
    }
    Ok(())
}

async fn token_calls(http: &reqwest::Client, sim: &str) -> Result<u64, reqwest::Error> {
    let stats: serde_json::Value = http
        .get(format!("{sim}/_sim/stats"))
        .send()
        .await?
        .json()
        .await?;
    Ok(stats["token_calls"].as_u64().unwrap_or(0))
}

fn client(requests: usize) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .pool_max_idle_per_host(requests)
        .build()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, base, jwt, companies, requests, sim] = args.as_slice() else {
        return Err("usage: token-fan-in BASE_URL JWT COMPANIES REQUESTS SIM_URL".into());
    };
    let (companies, requests): (usize, usize) = (companies.parse()?, requests.parse()?);
    let stats = client(1)?;
    let runs = [
        ("kept-alive", companies, true),
        ("new connections", 2 * companies, false),
        ("new connections, all cached", 2 * companies, false),
    ];
    for (name, first, keep_alive) in runs {
        let http = client(requests)?;
        if keep_alive {
            warm(&http, base, requests).await?;
        }
        let before = token_calls(&stats, sim).await?;
        let run = fire(&http, base, jwt, first, companies, requests).await?;
        let upstream = token_calls(&stats, sim).await? - before;
        let pct = |p: f64| {
            run.latencies[((run.latencies.len() as f64 * p).ceil() as usize).saturating_sub(1)]
        };
        println!(
            "fan-in ({name}): {requests} requests over {companies} companies in {:.3} s; failures {}; upstream token calls {upstream}; latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            run.wall,
            run.failures,
            pct(0.50),
            pct(0.99),
            pct(1.0)
        );
    }
    Ok(())
}

//! Refresh fan-in: N token requests at once over C companies, in three runs:
//! - `no token cached`: on connections opened beforehand, as a job runner's HTTP client keeps
//!   them — the service's own fan-in (the measure);
//! - `every token cached`: the same burst again on the same companies — what the burst costs on
//!   this machine without any refresh, the floor under the first figure;
//! - `no token cached, new connections`: on other companies, each request opening its own TCP
//!   connection in the burst (a connection storm: a SYN the listen queue drops costs 1 s).
//!
//! Prints p50/p99/max latency, the simulator's token-call count and this generator's own CPU time
//! for each, and the latency of the upstream token calls made in the run, read off the service's
//! `/metrics` histogram.
//! Usage: token-fan-in BASE_URL JWT COMPANIES REQUESTS SIM_URL [FIRST_COMPANY [first-only|kept-alive]]
//! (`first-only`: just the first run, for repeated bursts; `kept-alive`: the first two, where no
//! further companies exist for the third.)

#![allow(clippy::unwrap_used, clippy::expect_used)] // test and measuring code: a panic is a failed run

use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const USAGE: &str =
    "usage: token-fan-in BASE_URL JWT COMPANIES REQUESTS SIM_URL [FIRST_COMPANY [first-only|kept-alive]]";

struct Run {
    latencies: Vec<f64>,
    failures: usize,
    wall: f64,
    /// This generator's own CPU time over the run, in ms: its share of the cores the service and
    /// the simulator run on too.
    own_cpu: f64,
}

/// The load generator speaks HTTP/1.1 over plain sockets, as wrk does: a full HTTP client per
/// request cost as much CPU as the service itself on this two-core machine, and that CPU came
/// out of the service's share.
async fn exchange(stream: &mut TcpStream, request: &[u8]) -> std::io::Result<u16> {
    stream.write_all(request).await?;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        if buf.len() >= end + 4 + length {
            let status = head.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
            return Ok(status);
        }
    }
}

fn token_request(host: &str, jwt: &str, company: usize) -> Vec<u8> {
    format!(
        "POST /api/v1/companies/c{company:06}/access-token HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {jwt}\r\nContent-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

/// Fires `requests` token requests at once over companies `first..first + companies`, on
/// connections opened beforehand (`kept_alive`) or by each request.
async fn fire(
    host: &str,
    jwt: &str,
    first: usize,
    companies: usize,
    requests: usize,
    kept_alive: bool,
) -> Result<Run, Box<dyn std::error::Error>> {
    let mut open = Vec::with_capacity(requests);
    if kept_alive {
        for _ in 0..requests {
            let mut stream = TcpStream::connect(host).await?;
            // One exchange first, so the service has accepted and set the connection up.
            let health = format!("GET /healthz HTTP/1.1\r\nHost: {host}\r\n\r\n");
            exchange(&mut stream, health.as_bytes()).await?;
            open.push(Some(stream));
        }
    } else {
        open.resize_with(requests, || None);
    }
    let cpu_before = thread_cpu_ms();
    let started = Instant::now();
    let calls: Vec<_> = open
        .into_iter()
        .enumerate()
        .map(|(i, stream)| {
            let request = token_request(host, jwt, first + i % companies);
            let host = host.to_string();
            tokio::spawn(async move {
                let t = Instant::now();
                let status = async {
                    let mut stream = match stream {
                        Some(s) => s,
                        None => TcpStream::connect(&host).await?,
                    };
                    exchange(&mut stream, &request).await
                }
                .await;
                (
                    t.elapsed().as_secs_f64() * 1000.0,
                    matches!(status, Ok(200)),
                )
            })
        })
        .collect();
    let mut run = Run {
        latencies: Vec::new(),
        failures: 0,
        wall: 0.0,
        own_cpu: 0.0,
    };
    for c in calls {
        let (ms, ok) = c.await?;
        run.latencies.push(ms);
        run.failures += usize::from(!ok);
    }
    run.wall = started.elapsed().as_secs_f64();
    run.own_cpu = thread_cpu_ms() - cpu_before;
    run.latencies.sort_by(|a, b| a.partial_cmp(b).unwrap());
    Ok(run)
}

/// CPU time of the calling thread so far, in ms (Linux; 0 elsewhere). The generator runs on one
/// thread, so this is all of its CPU.
fn thread_cpu_ms() -> f64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |ns| ns / 1e6)
}

/// The cumulative buckets of the service's `token_refresh_seconds` histogram (upper bound in
/// seconds, count); none when it could not be read.
async fn refresh_buckets(http: &reqwest::Client, base: &str) -> Option<Vec<(f64, f64)>> {
    let answer = http.get(format!("{base}/metrics")).send().await.ok()?;
    let text = answer.error_for_status().ok()?.text().await.ok()?;
    let buckets: Vec<(f64, f64)> = text
        .lines()
        .filter_map(|l| l.strip_prefix("ca_connector_token_refresh_seconds_bucket{le=\""))
        .filter_map(|l| {
            let (le, count) = l.split_once("\"} ")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, count.trim().parse().ok()?))
        })
        .collect();
    (!buckets.is_empty()).then_some(buckets)
}

/// The q-quantile of the upstream calls made between two readings of the histogram, in ms,
/// interpolated within its bucket as Prometheus' `histogram_quantile` does.
fn upstream_quantile(before: &[(f64, f64)], after: &[(f64, f64)], q: f64) -> Option<f64> {
    let counts: Vec<(f64, f64)> = after
        .iter()
        .map(|&(le, n)| {
            (
                le,
                n - before.iter().find(|b| b.0 == le).map_or(0.0, |b| b.1),
            )
        })
        .collect();
    let total = counts.last()?.1;
    if total == 0.0 {
        return None;
    }
    let rank = q * total;
    let mut lower = (0.0, 0.0);
    for &(le, n) in &counts {
        if n >= rank {
            if le.is_infinite() {
                return Some(lower.0 * 1000.0);
            }
            let share = (rank - lower.1) / (n - lower.1);
            return Some((lower.0 + (le - lower.0) * share) * 1000.0);
        }
        lower = (le, n);
    }
    None
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

// One thread, as for the service's sake: a load generator on two threads (like `wrk -t2`) took
// more of the two cores from the service than it gained, and the fan-in p99 rose by ~15 ms.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (base, jwt, companies, requests, sim, offset, how_many) = match args.as_slice() {
        [_, b, j, c, r, s] => (b, j, c, r, s, c.as_str(), 3),
        [_, b, j, c, r, s, o] => (b, j, c, r, s, o.as_str(), 3),
        [_, b, j, c, r, s, o, f] if f == "first-only" => (b, j, c, r, s, o.as_str(), 1),
        [_, b, j, c, r, s, o, f] if f == "kept-alive" => (b, j, c, r, s, o.as_str(), 2),
        _ => return Err(USAGE.into()),
    };
    let (companies, requests): (usize, usize) = (companies.parse()?, requests.parse()?);
    // Later runs against the same service start past the companies earlier runs refreshed.
    let offset: usize = offset.parse()?;
    let stats = reqwest::Client::new();
    let host = base
        .strip_prefix("http://")
        .ok_or("BASE_URL must be http://host:port")?
        .trim_end_matches('/');
    let runs = [
        ("no token cached", offset, true),
        ("every token cached", offset, true),
        (
            "no token cached, new connections",
            offset + companies,
            false,
        ),
    ];
    let runs = &runs[..how_many];
    for &(name, first, kept_alive) in runs {
        let before = token_calls(&stats, sim).await?;
        let buckets_before = refresh_buckets(&stats, base).await;
        let run = fire(host, jwt, first, companies, requests, kept_alive).await?;
        let upstream = token_calls(&stats, sim).await? - before;
        let buckets_after = refresh_buckets(&stats, base).await;
        let pct = |p: f64| {
            run.latencies[((run.latencies.len() as f64 * p).ceil() as usize).saturating_sub(1)]
        };
        println!(
            "fan-in ({name}): {requests} requests over {companies} companies in {:.3} s; failures {}; upstream token calls {upstream}; latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; load generator's own CPU {:.1} ms",
            run.wall,
            run.failures,
            pct(0.50),
            pct(0.99),
            pct(1.0),
            run.own_cpu
        );
        let quantile = |q| upstream_quantile(buckets_before.as_ref()?, buckets_after.as_ref()?, q);
        if let (Some(p50), Some(p99)) = (quantile(0.50), quantile(0.99)) {
            println!(
                "  its upstream token calls as the service measured them: p50 {p50:.1} ms, p99 {p99:.1} ms"
            );
        }
    }
    Ok(())
}

//! The store steps of a token request that misses the memory, timed one at a time on a seeded
//! database with nothing else running: the cached-token read every lookup starts with, and the
//! refresh lease a lookup with no usable token takes (on SQLite both on the HTTP worker).
//! Usage: store-steps DATABASE_URL KEY_SPEC [COMPANIES]   (companies seeded by `seed-companies`)

#![allow(clippy::unwrap_used, clippy::expect_used)] // test and measuring code: a panic is a failed run

use std::time::{Duration, Instant};

use schema::tokens::BeginRequest;
use schema::{CompanyId, Database, KeyRing};
use secrecy::SecretString;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (url, spec, n) = match args.as_slice() {
        [_, url, spec] => (url, spec, 2000),
        [_, url, spec, n] => (url, spec, n.parse()?),
        _ => return Err("usage: store-steps DATABASE_URL KEY_SPEC [COMPANIES]".into()),
    };
    let keys = KeyRing::parse(&SecretString::from(spec.clone()))?;
    let db = Database::connect(url, 1)?;
    let mut conn = db.get()?;
    let (mut read, mut lease) = (Duration::ZERO, Duration::ZERO);
    // Each company once, as in a burst: the lease is taken on a company with no token cached.
    for i in 0..n {
        let company = CompanyId::parse(&format!("c{i:06}"))?;
        let started = Instant::now();
        schema::tokens::cached(&mut conn, &keys, &company)?;
        let leasing = Instant::now();
        schema::tokens::begin_refresh(
            &mut conn,
            &keys,
            &BeginRequest {
                company,
                need: chrono::Duration::seconds(300),
                owner: "store-steps".into(),
                lease: chrono::Duration::seconds(20),
                waiting_since: chrono::Utc::now(),
                remember_permanent: chrono::Duration::seconds(60),
            },
        )?;
        read += leasing - started;
        lease += leasing.elapsed();
    }
    let per = |d: Duration| d.as_secs_f64() * 1e6 / n as f64;
    println!(
        "store steps over {n} companies: cached-token read {:.1} µs, refresh lease {:.1} µs",
        per(read),
        per(lease)
    );
    Ok(())
}

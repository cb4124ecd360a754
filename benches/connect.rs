//! Connect to ChannelAdvisor: the callback's own time (figures in docs/performance.md).
//! Run: `cargo bench --bench connect`.
//!
//! Each round starts a Connect, has the simulator's Grant Access form issue a code, and times the
//! browser's `GET /oauth/callback` (code exchange, the refresh token stored, Test Connection: three
//! upstream calls). Interleaved in the same run, the same upstream calls are made directly with
//! the connector's client (a code of their own, its exchange, a refresh and the probe). The
//! callback's own time = its time − those upstream round trips − the 100 ms cross-instance settle
//! window it waits out by design before answering (`src/tokens/read_cache.rs`, settled by the store: `schema::visibility::SETTLE`).

#![allow(clippy::unwrap_used, clippy::expect_used)] // measuring code: a panic is a failed run

use std::collections::HashMap;
use std::time::{Duration, Instant};

use connector::connect::{AuthorizationCode, RedirectUri};
use connector::sim::{SimConfig, Simulator};
use connector::{ApplicationId, ChannelAdvisorClient, RefreshToken, SharedSecret};
use secrecy::SecretString;
use serde_json::{json, Value};

#[path = "support/mod.rs"]
mod support;

const ROUNDS: usize = 300;
const WARM_UP: usize = 30;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Submits the simulator's Grant Access form for an authorize URL; the redirect's query.
async fn grant(http: &reqwest::Client, authorize: &url::Url) -> HashMap<String, String> {
    let mut form: Vec<(String, String)> = authorize.query_pairs().into_owned().collect();
    form.push(("profile".into(), "12345678".into()));
    form.push(("decision".into(), "grant".into()));
    let mut action = authorize.clone();
    action.set_query(None);
    let res = http.post(action).form(&form).send().await.unwrap();
    let back = url::Url::parse(res.headers()["location"].to_str().unwrap()).unwrap();
    back.query_pairs().into_owned().collect()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let sim = Simulator::start(SimConfig::default(), "127.0.0.1:0").unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (listen, public) = (
        format!("127.0.0.1:{port}"),
        format!("http://127.0.0.1:{port}"),
    );
    sim.register_redirect_uri("demo-app", &format!("{public}/oauth/callback"));
    let dir = tempfile::TempDir::new().unwrap();
    let base = support::start_app(
        dir.path(),
        &[
            "--listen",
            &listen,
            "--public-url",
            &public,
            "--channeladvisor-url",
            &sim.url(),
        ],
    )
    .await;
    let http = no_redirects();
    let bearer = support::bearer("credentials:write");
    let res = http
        .put(format!("{base}/api/v1/companies/acme/credentials"))
        .bearer_auth(&bearer)
        .json(&json!({"application_id": "demo-app", "shared_secret": "demo-shared-secret-0001"}))
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success());

    let direct = ChannelAdvisorClient::new(
        url::Url::parse(&sim.url()).unwrap(),
        Duration::from_secs(15),
        4,
    )
    .unwrap();
    let app = ApplicationId::parse("demo-app").unwrap().unwrap();
    let secret = SharedSecret::parse("demo-shared-secret-0001")
        .unwrap()
        .unwrap();
    let redirect_uri = RedirectUri::parse(&format!("{public}/oauth/callback")).unwrap();
    let (mut callbacks, mut upstream) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let started: Value = http
            .post(format!("{base}/api/v1/companies/acme/connect"))
            .bearer_auth(&bearer)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let authorize = url::Url::parse(started["authorize_url"].as_str().unwrap()).unwrap();
        let back = grant(&http, &authorize).await;

        // The same three upstream calls, straight from the client, with a code of their own.
        let own = grant(&http, &authorize).await;
        let t = Instant::now();
        let code = AuthorizationCode::new(SecretString::from(own["code"].clone()));
        let granted = direct
            .code_grant(&app, &secret, &code, &redirect_uri)
            .await
            .unwrap();
        let refresh = RefreshToken::from_secret(granted.refresh_token);
        let token = direct.refresh_grant(&app, &secret, &refresh).await.unwrap();
        direct.profiles(&token.access_token).await.unwrap();
        let up = t.elapsed();

        let t = Instant::now();
        let mut callback = url::Url::parse(&format!("{base}/oauth/callback")).unwrap();
        callback
            .query_pairs_mut()
            .append_pair("code", &back["code"])
            .append_pair("state", &back["state"]);
        let res = http.get(callback).send().await.unwrap();
        let through = t.elapsed();
        let page = res.text().await.unwrap();
        assert!(page.contains("Connected to ChannelAdvisor"), "{page}");
        if round >= WARM_UP {
            callbacks.push(through.as_secs_f64() * 1000.0);
            upstream.push(up.as_secs_f64() * 1000.0);
        }
    }
    let settle = schema::visibility::SETTLE.as_secs_f64() * 1000.0;
    let (m_cb, m_up) = (median(callbacks), median(upstream));
    println!(
        "callback: median {m_cb:.3} ms; its three upstream calls made directly {m_up:.3} ms; settle window {settle:.0} ms; own time {:.3} ms (target < 5 ms), n={}",
        m_cb - m_up - settle,
        ROUNDS - WARM_UP
    );
}

//! The simulator refuses what ChannelAdvisor refuses, so a test passing against it means a client
//! that ChannelAdvisor would accept.

use std::time::Duration;

use serde_json::Value;

use crate::connection::{sim, APP, REFRESH, SECRET};

fn token_request(base: &str, app: &str, secret: &str) -> reqwest::RequestBuilder {
    reqwest::Client::new()
        .post(format!("{base}/oauth2/token"))
        .basic_auth(app, Some(secret))
}

async fn oauth_error(res: reqwest::Response) -> (u16, String) {
    let status = res.status().as_u16();
    let body: Value = res.json().await.unwrap_or_default();
    (
        status,
        body["error"].as_str().unwrap_or_default().to_string(),
    )
}

#[tokio::test]
async fn the_token_endpoint_takes_only_a_form() {
    let sim = sim(0);
    let json = token_request(&sim.url(), APP, SECRET)
        .json(&serde_json::json!({"grant_type": "refresh_token", "refresh_token": REFRESH}))
        .send()
        .await
        .unwrap();
    assert_eq!(oauth_error(json).await, (400, "invalid_request".into()));
    let form = token_request(&sim.url(), APP, SECRET)
        .form(&[("grant_type", "refresh_token"), ("refresh_token", REFRESH)])
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), 200);
}

#[tokio::test]
async fn a_refresh_token_belongs_to_its_application() {
    let sim = connector::sim::Simulator::start(
        connector::sim::SimConfig {
            any_app: true,
            ..Default::default()
        },
        "127.0.0.1:0",
    )
    .unwrap();
    let grant = |app: &'static str| {
        token_request(&sim.url(), app, &format!("{app}-secret"))
            .form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", "bench-refresh-1"),
            ])
            .send()
    };
    assert_eq!(grant("app-one").await.unwrap().status(), 200);
    let other = grant("app-two").await.unwrap();
    assert_eq!(oauth_error(other).await, (400, "invalid_grant".into()));
    assert_eq!(grant("app-one").await.unwrap().status(), 200);
}

#[tokio::test]
async fn the_grant_access_page_checks_the_request_and_the_registered_redirect() {
    let sim = sim(0);
    let registered = "http://127.0.0.1:8080/oauth/callback";
    let page = |pairs: &[(&str, &str)]| {
        let mut url = url::Url::parse(&format!("{}/oauth2/authorize", sim.url())).unwrap();
        url.query_pairs_mut().extend_pairs(pairs);
        reqwest::get(url)
    };
    let good = [
        ("client_id", APP),
        ("response_type", "code"),
        ("access_type", "offline"),
        ("scope", "orders inventory"),
        ("redirect_uri", registered),
        ("state", "s"),
    ];
    assert_eq!(page(&good).await.unwrap().status(), 200);
    let with = |key: &str, value: &'static str| {
        good.iter()
            .map(|(k, v)| if *k == key { (*k, value) } else { (*k, *v) })
            .collect::<Vec<_>>()
    };
    for (key, value, why) in [
        (
            "redirect_uri",
            "http://127.0.0.1:9999/oauth/callback",
            "not registered",
        ),
        (
            "redirect_uri",
            "https://evil.example/oauth/callback",
            "not registered",
        ),
        ("response_type", "token", "response_type"),
        ("access_type", "online", "access_type"),
        ("scope", "orders admin", "scope"),
        ("scope", "", "scope"),
    ] {
        let res = page(&with(key, value)).await.unwrap();
        assert_eq!(res.status(), 400, "{key}={value}");
        assert!(res.text().await.unwrap().contains(why), "{key}={value}");
    }
}

/// Five calls of one integration in flight at most: the sixth is 429 with `Retry-After`, while
/// another integration's call goes through.
#[tokio::test]
async fn an_integration_has_five_calls_in_flight_at_most() {
    let sim = sim(500);
    let token = |refresh: &'static str| {
        token_request(&sim.url(), APP, SECRET)
            .form(&[("grant_type", "refresh_token"), ("refresh_token", refresh)])
            .send()
    };
    let body: Value = token(REFRESH).await.unwrap().json().await.unwrap();
    let access = body["access_token"].as_str().unwrap().to_string();
    let probe = || {
        reqwest::Client::new()
            .get(format!("{}/v1/Profiles", sim.url()))
            .bearer_auth(&access)
            .timeout(Duration::from_secs(5))
            .send()
    };
    let answers = futures_util::future::join_all((0..6).map(|_| probe())).await;
    let mut statuses: Vec<u16> = answers
        .iter()
        .map(|r| r.as_ref().unwrap().status().as_u16())
        .collect();
    statuses.sort();
    assert_eq!(statuses, [200, 200, 200, 200, 200, 429]);
    let refused = answers
        .iter()
        .find(|r| r.as_ref().unwrap().status() == 429)
        .unwrap()
        .as_ref()
        .unwrap();
    assert_eq!(refused.headers()["retry-after"], "1");
    // Another account's refresh token is another integration.
    let other = token("two-profiles-token-0001").await.unwrap();
    assert_eq!(other.status(), 200);
}

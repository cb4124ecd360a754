//! Contract §10: Connect to ChannelAdvisor, driven over real HTTP through the simulator's Grant
//! Access page and the service's callback, on both backends.

use std::collections::HashMap;

use connector::sim::{SimConfig, Simulator};
use serde_json::{json, Value};

use crate::connection::{app_against, APP, SECRET};
use crate::helpers::{
    admin, assert_problem, captured_logs, free_port, second_instance, Backend, TestApp,
};
use crate::on_both_backends;

on_both_backends!(
    connect_stores_the_granted_token_and_connects,
    denied_forged_and_replayed_callbacks_store_nothing,
    an_expired_attempt_stores_nothing,
    a_code_without_state_is_pasted,
    a_failed_exchange_stores_nothing,
    connect_needs_settings_and_stored_values,
);

pub const COMPANY: &str = "acme";
pub const ERP: &str = "https://erp.example";

/// A client that shows redirects instead of following them, as a test of each hop needs.
fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The service with Connect configured: its public URL names its own port.
pub async fn connect_app(backend: &Backend, sim: &Simulator) -> TestApp {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let public = format!("http://127.0.0.1:{port}");
    // Registered on the application, as an admin does in the Developer Console.
    sim.register_redirect_uri(APP, &format!("{public}/oauth/callback"));
    app_against(
        backend,
        &sim.url(),
        &[
            "--listen",
            &listen,
            "--public-url",
            &public,
            "--connect-return-origins",
            ERP,
        ],
    )
    .await
}

/// Saves the Application ID and Shared Secret only: what an admin has before Connect.
pub async fn save_application(app: &TestApp) -> i64 {
    let res = app
        .put_credentials(
            COMPANY,
            &json!({"application_id": APP, "shared_secret": SECRET}),
        )
        .await;
    assert!(res.status().is_success());
    let body: Value = res.json().await.unwrap();
    body["version"].as_i64().unwrap()
}

pub async fn start(app: &TestApp, body: Option<Value>) -> reqwest::Response {
    let mut req = app
        .client
        .post(app.url(&format!("/api/v1/companies/{COMPANY}/connect")))
        .bearer_auth(admin(&[COMPANY]));
    if let Some(b) = body {
        req = req.json(&b);
    }
    req.send().await.unwrap()
}

pub async fn authorize_url(app: &TestApp, return_to: Option<&str>) -> url::Url {
    let res = start(app, return_to.map(|r| json!({"return_to": r}))).await;
    assert_eq!(res.status(), 201);
    let body: Value = res.json().await.unwrap();
    url::Url::parse(body["authorize_url"].as_str().unwrap()).unwrap()
}

pub fn query(url: &url::Url) -> HashMap<String, String> {
    url.query_pairs().into_owned().collect()
}

/// The hidden and checkbox inputs of the Grant Access page's form, as a browser submits them.
fn form_inputs(html: &str) -> Vec<(String, String)> {
    html.split("<input")
        .skip(1)
        .filter_map(|tag| {
            let attr = |name: &str| {
                let start = tag.find(&format!("{name}=\""))? + name.len() + 2;
                let len = tag[start..].find('"')?;
                Some(html_escape::decode_html_entities(&tag[start..start + len]).into_owned())
            };
            Some((attr("name")?, attr("value")?))
        })
        .collect()
}

/// The admin's browser on ChannelAdvisor: opens the Grant Access page and presses a button.
/// Returns where ChannelAdvisor sends the browser back to.
pub async fn grant_page(authorize: &url::Url, decision: &str) -> url::Url {
    let browser = browser();
    let page = browser.get(authorize.clone()).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(
        html.contains("Grant Access") && html.contains("12345678"),
        "{html}"
    );
    let mut form = form_inputs(&html);
    form.push(("decision".into(), decision.into()));
    let mut action = authorize.clone();
    action.set_query(None);
    let back = browser.post(action).form(&form).send().await.unwrap();
    assert_eq!(back.status(), 302);
    let location = back.headers()["location"].to_str().unwrap();
    url::Url::parse(location).unwrap()
}

/// The browser arriving at the callback (on `app`, whichever instance the redirect names).
pub async fn callback(app: &TestApp, back: &url::Url, html: bool) -> reqwest::Response {
    let target = format!("{}{}?{}", app.base, back.path(), back.query().unwrap_or(""));
    let mut req = browser().get(target);
    if html {
        req = req.header("accept", "text/html,application/xhtml+xml");
    }
    req.send().await.unwrap()
}

pub async fn credentials(app: &TestApp) -> Value {
    app.get_json(
        &format!("/api/v1/companies/{COMPANY}/credentials"),
        &admin(&[COMPANY]),
    )
    .await
    .1
}

pub async fn audit_actions(app: &TestApp) -> Vec<(String, Option<String>)> {
    let (_, body) = app
        .get_json(
            &format!("/api/v1/companies/{COMPANY}/audit"),
            &admin(&[COMPANY]),
        )
        .await;
    body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_string(),
                e["via"].as_str().map(String::from),
            )
        })
        .collect()
}

async fn connect_stores_the_granted_token_and_connects(backend: Backend) {
    let sim = crate::connection::sim(0);
    let app = connect_app(&backend, &sim).await;
    // The callback may land on any instance sharing the database.
    let other = second_instance(&app, &["--channeladvisor-url", &sim.url()]).await;
    let version = save_application(&app).await;

    let authorize = authorize_url(&app, Some("https://erp.example/settings?company=acme")).await;
    assert_eq!(authorize.path(), "/oauth2/authorize");
    assert!(authorize.as_str().starts_with(&sim.url()));
    let q = query(&authorize);
    assert_eq!(q["client_id"], APP);
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["access_type"], "offline");
    assert_eq!(q["scope"], "orders inventory");
    assert_eq!(q["redirect_uri"], format!("{}/oauth/callback", app.base));
    assert!(q["state"].len() >= 22, "at least 128 random bits");

    let back = grant_page(&authorize, "grant").await;
    let code = query(&back)["code"].clone();
    assert_eq!(query(&back)["state"], q["state"]);
    let before = sim.token_calls();
    let res = callback(&other, &back, true).await;
    assert_eq!(res.status(), 303);
    let location = url::Url::parse(res.headers()["location"].to_str().unwrap()).unwrap();
    assert_eq!(location.origin().ascii_serialization(), ERP);
    assert_eq!(location.path(), "/settings");
    let answer = query(&location);
    assert_eq!(answer["ca_connect"], "connected", "{location}");
    assert_eq!(answer["company"], COMPANY);
    assert!(!answer.contains_key("code"));
    assert_eq!(
        sim.token_calls() - before,
        2,
        "the exchange and the test's refresh"
    );

    let stored = credentials(&app).await;
    assert_eq!(stored["version"], version + 1);
    assert_eq!(stored["refresh_token"]["set"], true);
    assert_eq!(stored["complete"], true);
    assert_eq!(stored["updated_by"], "admin@test");
    let (_, status) = app
        .get_json(
            &format!("/api/v1/companies/{COMPANY}/connection"),
            &admin(&[COMPANY]),
        )
        .await;
    assert_eq!(status["state"], "connected");
    assert_eq!(status["last_test"]["triggered_by"], "admin@test");
    let via = Some("authorization_code".to_string());
    let actions = audit_actions(&app).await;
    assert_eq!(
        actions[1..],
        [
            ("connect_started".to_string(), via.clone()),
            ("updated".to_string(), via.clone()),
            ("connect_connected".to_string(), via.clone()),
        ]
    );

    // A job gets a token from the granted refresh token.
    let job = app
        .client
        .post(app.url(&format!("/api/v1/companies/{COMPANY}/access-token")))
        .bearer_auth(admin(&[COMPANY]))
        .send()
        .await
        .unwrap();
    assert_eq!(job.status(), 200);

    // The same callback again: refused, nothing sent upstream, nothing stored.
    let calls = sim.token_calls();
    let replay = callback(&app, &back, false).await;
    assert_problem(replay, 400, "invalid_state").await;
    assert_eq!(sim.token_calls(), calls);
    assert_eq!(credentials(&app).await["version"], version + 1);

    let logs = captured_logs();
    assert!(!logs.contains(&code), "the code is never logged");
    assert!(!logs.contains(&q["state"]), "the state is never logged");
}

async fn denied_forged_and_replayed_callbacks_store_nothing(backend: Backend) {
    let sim = crate::connection::sim(0);
    let app = connect_app(&backend, &sim).await;
    let version = save_application(&app).await;

    let authorize = authorize_url(&app, Some("https://erp.example/settings")).await;
    let back = grant_page(&authorize, "deny").await;
    assert_eq!(query(&back)["error"], "access_denied");
    let res = callback(&app, &back, true).await;
    assert_eq!(res.status(), 303);
    let location = url::Url::parse(res.headers()["location"].to_str().unwrap()).unwrap();
    assert_eq!(query(&location)["ca_connect"], "denied");
    // The denied attempt is used up.
    assert_problem(callback(&app, &back, false).await, 400, "invalid_state").await;

    // A forged state: problem+json for an API client, a page for a browser.
    let forged = url::Url::parse("http://x/oauth/callback?code=abc&state=forged-state").unwrap();
    assert_problem(callback(&app, &forged, false).await, 400, "invalid_state").await;
    let page = callback(&app, &forged, true).await;
    assert_eq!(page.status(), 400);
    assert!(page.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert!(page.text().await.unwrap().contains("not valid"));
    // No state and no code.
    let bare = url::Url::parse("http://x/oauth/callback").unwrap();
    assert_problem(callback(&app, &bare, false).await, 400, "invalid_state").await;

    assert_eq!(
        sim.token_calls(),
        0,
        "nothing was sent to the token endpoint"
    );
    let stored = credentials(&app).await;
    assert_eq!(stored["version"], version);
    assert_eq!(stored["refresh_token"]["set"], false);
    let actions: Vec<String> = audit_actions(&app).await.into_iter().map(|a| a.0).collect();
    assert_eq!(actions[1..], ["connect_started", "connect_denied"]);
}

async fn an_expired_attempt_stores_nothing(backend: Backend) {
    use diesel::RunQueryDsl;
    let sim = crate::connection::sim(0);
    let app = connect_app(&backend, &sim).await;
    let version = save_application(&app).await;
    let authorize = authorize_url(&app, None).await;
    let back = grant_page(&authorize, "grant").await;
    // Eleven minutes later, as far as the attempt is concerned.
    let db = app.database();
    let mut conn = db.get().unwrap();
    let moved = diesel::sql_query("UPDATE connect_attempts SET expires_at = '2000-01-01 00:00:00'")
        .execute(&mut *conn)
        .unwrap();
    assert_eq!(moved, 1);
    let page = callback(&app, &back, true).await;
    assert_eq!(page.status(), 400);
    assert!(page.text().await.unwrap().contains("expired"));
    assert_eq!(sim.token_calls(), 0);
    assert_eq!(credentials(&app).await["version"], version);
    let actions: Vec<String> = audit_actions(&app).await.into_iter().map(|a| a.0).collect();
    assert_eq!(actions[1..], ["connect_started", "connect_expired"]);
}

async fn a_code_without_state_is_pasted(backend: Backend) {
    let sim = Simulator::start(
        SimConfig {
            omit_state: true,
            ..Default::default()
        },
        "127.0.0.1:0",
    )
    .unwrap();
    let app = connect_app(&backend, &sim).await;
    save_application(&app).await;
    let paste = |code: &str| {
        app.client
            .post(app.url(&format!("/api/v1/companies/{COMPANY}/connect/code")))
            .bearer_auth(admin(&[COMPANY]))
            .json(&json!({"code": code}))
            .send()
    };
    // No open attempt yet.
    assert_problem(paste("sim-code-x").await.unwrap(), 409, "invalid_state").await;

    let authorize = authorize_url(&app, Some("https://erp.example/settings")).await;
    let back = grant_page(&authorize, "grant").await;
    let q = query(&back);
    assert!(!q.contains_key("state"));
    let page = callback(&app, &back, true).await;
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(
        html.contains(&q["code"]),
        "the page shows the code to paste"
    );
    // Any text can arrive as a code (a phished link): the page says to paste only a code the
    // admin obtained themselves, just now, from ChannelAdvisor's page.
    assert!(
        html.contains("only if you pressed Connect to ChannelAdvisor yourself, just now"),
        "{html}"
    );
    assert!(
        html.contains("someone else's ChannelAdvisor account"),
        "{html}"
    );
    assert_eq!(
        sim.token_calls(),
        0,
        "a stateless callback exchanges nothing"
    );

    let res = paste(&q["code"]).await.unwrap();
    assert_eq!(res.status(), 200);
    let result: Value = res.json().await.unwrap();
    assert_eq!(result["outcome"], "connected", "{result}");
    assert_eq!(credentials(&app).await["refresh_token"]["set"], true);
    // The attempt is finished: the same code pasted again finds none open.
    assert_problem(paste(&q["code"]).await.unwrap(), 409, "invalid_state").await;
    // Another caller cannot finish an attempt this caller started.
    authorize_url(&app, None).await;
    let stranger = app
        .client
        .post(app.url(&format!("/api/v1/companies/{COMPANY}/connect/code")))
        .bearer_auth(crate::helpers::token_for(
            "someone@else",
            &[COMPANY],
            crate::helpers::ALL_SCOPES,
        ))
        .json(&json!({"code": "whatever"}))
        .send()
        .await
        .unwrap();
    assert_problem(stranger, 409, "invalid_state").await;
}

async fn a_failed_exchange_stores_nothing(backend: Backend) {
    let sim = crate::connection::sim(0);
    let app = connect_app(&backend, &sim).await;
    let version = save_application(&app).await;
    let authorize = authorize_url(&app, Some("https://erp.example/settings")).await;
    let back = grant_page(&authorize, "grant").await;
    // Someone spends the code first (a code works once).
    let spent = reqwest::Client::new()
        .post(format!("{}/oauth2/token", sim.url()))
        .basic_auth(APP, Some(SECRET))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &query(&back)["code"]),
            ("redirect_uri", &query(&authorize)["redirect_uri"]),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(spent.status(), 200);
    let res = callback(&app, &back, true).await;
    assert_eq!(res.status(), 303);
    let location = url::Url::parse(res.headers()["location"].to_str().unwrap()).unwrap();
    let answer = query(&location);
    assert_eq!(answer["ca_connect"], "failed");
    assert_eq!(answer["code"], "invalid_refresh_token");
    let stored = credentials(&app).await;
    assert_eq!(stored["version"], version);
    assert_eq!(stored["refresh_token"]["set"], false);
    let actions: Vec<String> = audit_actions(&app).await.into_iter().map(|a| a.0).collect();
    assert_eq!(actions[1..], ["connect_started", "connect_failed"]);
    // With no return_to, the browser gets a page that says what happened.
    let authorize = authorize_url(&app, None).await;
    let back = grant_page(&authorize, "grant").await;
    let mut wrong = back.clone();
    let pairs: Vec<(String, String)> = query(&back)
        .into_iter()
        .map(|(k, v)| {
            if k == "code" {
                (k, "sim-code-forged".into())
            } else {
                (k, v)
            }
        })
        .collect();
    wrong.query_pairs_mut().clear().extend_pairs(pairs);
    let page = callback(&app, &wrong, true).await;
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(
        html.contains("Nothing was saved") && html.contains("authorization code"),
        "{html}"
    );
    assert_eq!(credentials(&app).await["version"], version);
}

async fn connect_needs_settings_and_stored_values(backend: Backend) {
    let sim = crate::connection::sim(0);
    // No public URL: Connect is not configured.
    let plain = app_against(&backend, &sim.url(), &[]).await;
    save_application(&plain).await;
    assert_problem(start(&plain, None).await, 409, "connect_not_configured").await;

    let app = connect_app(&backend, &sim).await;
    let missing = assert_problem(start(&app, None).await, 409, "connection_not_ready").await;
    assert_eq!(
        missing["missing"],
        json!(["application_id", "shared_secret"])
    );
    save_application(&app).await;
    let outside = start(
        &app,
        Some(json!({"return_to": "https://evil.example/steal"})),
    )
    .await;
    let body = assert_problem(outside, 422, "validation_failed").await;
    assert_eq!(body["errors"][0]["field"], "return_to");
    let detail = body["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(detail.contains("--connect-return-origins"), "{body}");
    // The documented limit: a return_to is stored and sent back in Location, so it is bounded.
    let long = format!("{ERP}/settings?x={}", "a".repeat(2048));
    let too_long = start(&app, Some(json!({ "return_to": long }))).await;
    let body = assert_problem(too_long, 422, "validation_failed").await;
    assert_eq!(body["errors"][0]["field"], "return_to");
    let at_limit = format!("{ERP}/s?x={}", "a".repeat(2048 - ERP.len() - 5));
    assert_eq!(
        start(&app, Some(json!({ "return_to": at_limit })))
            .await
            .status(),
        201
    );
    let unknown = start(&app, Some(json!({"return": "x"}))).await;
    assert_problem(unknown, 422, "validation_failed").await;
    // A caller without credentials:write may not start one.
    let read_only = app
        .client
        .post(app.url(&format!("/api/v1/companies/{COMPANY}/connect")))
        .bearer_auth(crate::helpers::token(&[COMPANY], "credentials:read"))
        .send()
        .await
        .unwrap();
    assert_problem(read_only, 403, "insufficient_scope").await;
    assert_eq!(sim.token_calls(), 0);
}

//! Contract §10's promises that the flow tests in `connect.rs` do not reach: the 201 answer, the
//! `state` kept only as a hash, what a finished Connect announces and drops, an Application ID
//! changed while Connect is open, and a configured `--oauth-redirect-uri` end to end.

use diesel::RunQueryDsl;
use serde_json::{json, Value};

use crate::connect::{
    audit_actions, authorize_url, callback, connect_app, credentials, grant_page, query,
    save_application, start, COMPANY, ERP,
};
use crate::connection::{app_against, valid, APP};
use crate::helpers::{admin, assert_problem, free_port, Backend, TestApp};
use crate::on_both_backends;

on_both_backends!(
    the_answer_names_its_redirect_and_expiry_and_keeps_only_a_hash,
    a_finished_connect_announces_itself_and_drops_cached_tokens,
    a_changed_application_id_while_connect_is_open_is_refused,
    a_configured_redirect_uri_is_used_end_to_end,
);

#[derive(diesel::QueryableByName)]
struct Attempt {
    #[diesel(sql_type = diesel::sql_types::Text)]
    state_hash: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    company: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    caller: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    application_id: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    redirect_uri: String,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    return_to: Option<String>,
}

/// Every open or finished Connect attempt, as stored.
fn attempts(app: &TestApp) -> Vec<Attempt> {
    let db = app.database();
    let mut conn = db.get().unwrap();
    diesel::sql_query(
        "SELECT state_hash, company, caller, application_id, redirect_uri, return_to FROM connect_attempts",
    )
    .load(&mut *conn)
    .unwrap()
}

async fn the_answer_names_its_redirect_and_expiry_and_keeps_only_a_hash(backend: Backend) {
    let sim = crate::connection::sim(0);
    let app = connect_app(&backend, &sim).await;
    save_application(&app).await;
    let asked = chrono::Utc::now();
    let res = start(&app, Some(json!({"return_to": format!("{ERP}/settings")}))).await;
    assert_eq!(res.status(), 201);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["redirect_uri"], format!("{}/oauth/callback", app.base));
    let expires: chrono::DateTime<chrono::Utc> =
        body["expires_at"].as_str().unwrap().parse().unwrap();
    let valid_for = (expires - asked).num_seconds();
    assert!(
        (595..=605).contains(&valid_for),
        "valid 10 minutes: {valid_for} s"
    );
    let authorize = url::Url::parse(body["authorize_url"].as_str().unwrap()).unwrap();
    let state = query(&authorize)["state"].clone();

    let stored = attempts(&app);
    assert_eq!(stored.len(), 1);
    let attempt = &stored[0];
    assert_eq!(
        (attempt.company.as_str(), attempt.caller.as_str()),
        (COMPANY, "admin@test"),
        "bound to the company and the caller"
    );
    assert_eq!(attempt.application_id, APP, "bound to the Application ID");
    let kept = [
        attempt.state_hash.as_str(),
        &attempt.redirect_uri,
        attempt.return_to.as_deref().unwrap_or(""),
    ];
    assert!(
        kept.iter().all(|v| !v.contains(&state)),
        "the state itself is never stored: {kept:?}"
    );
    assert!(
        attempt.state_hash.len() >= 43,
        "a hash of 256 bits: {}",
        attempt.state_hash
    );
}

async fn a_finished_connect_announces_itself_and_drops_cached_tokens(backend: Backend) {
    let sim = crate::connection::sim(0);
    let app = connect_app(&backend, &sim).await;
    // A company already connected, its job holding a cached token: the admin reconnects.
    app.put_credentials(COMPANY, &valid()).await;
    let before = app.token(COMPANY).await;
    let events_before = outbox(&app).len();

    // No return_to: the browser is shown a page that says what happened.
    let authorize = authorize_url(&app, None).await;
    let back = grant_page(&authorize, "grant").await;
    let page = callback(&app, &back, true).await;
    assert_eq!(page.status(), 200);
    assert!(page.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let html = page.text().await.unwrap();
    assert!(
        html.contains("Connected to ChannelAdvisor") && html.contains("Test Connection passed"),
        "{html}"
    );

    let after = app.token(COMPANY).await;
    assert_ne!(
        after, before,
        "the token cached for the replaced refresh token is not handed out"
    );
    let announced: Vec<(String, Value)> = outbox(&app).into_iter().skip(events_before).collect();
    let types: Vec<&str> = announced.iter().map(|(t, _)| t.as_str()).collect();
    assert!(
        types.contains(&"credentials.updated") && types.contains(&"connection.status_changed"),
        "{types:?}"
    );
    let updated = &announced
        .iter()
        .find(|(t, _)| t == "credentials.updated")
        .unwrap()
        .1;
    assert_eq!(
        updated["data"]["changed"],
        json!(["refresh_token"]),
        "{updated}"
    );
    let actions = audit_actions(&app).await;
    assert!(
        actions.contains(&("updated".into(), Some("authorization_code".into()))),
        "{actions:?}"
    );
}

/// Each event written, oldest first: (type, body).
fn outbox(app: &TestApp) -> Vec<(String, Value)> {
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Text)]
        event_type: String,
        #[diesel(sql_type = diesel::sql_types::Text)]
        body: String,
    }
    let db = app.database();
    let mut conn = db.get().unwrap();
    let rows: Vec<Row> =
        diesel::sql_query("SELECT event_type, body FROM outbox_events ORDER BY seq, created_at")
            .load(&mut *conn)
            .unwrap();
    rows.into_iter()
        .map(|r| (r.event_type, serde_json::from_str(&r.body).unwrap()))
        .collect()
}

async fn a_changed_application_id_while_connect_is_open_is_refused(backend: Backend) {
    let sim = crate::connection::sim(0);
    let app = connect_app(&backend, &sim).await;
    save_application(&app).await;
    let authorize = authorize_url(&app, Some(&format!("{ERP}/settings"))).await;
    let back = grant_page(&authorize, "grant").await;
    // Someone saves another Application ID while the admin is on ChannelAdvisor's page.
    let res = app
        .patch_credentials(COMPANY, &json!({"application_id": "another-app"}))
        .await;
    assert_eq!(res.status(), 200);
    let version = credentials(&app).await["version"].clone();

    let refused = callback(&app, &back, false).await;
    let body = assert_problem(refused, 409, "invalid_state").await;
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("Application ID or Shared Secret changed"),
        "{body}"
    );
    assert_eq!(sim.token_calls(), 0, "the code was not exchanged");
    let stored = credentials(&app).await;
    assert_eq!(stored["version"], version, "nothing stored");
    assert_eq!(stored["refresh_token"]["set"], false);
    let actions: Vec<String> = audit_actions(&app).await.into_iter().map(|a| a.0).collect();
    assert_eq!(actions.last().unwrap(), "connect_failed", "{actions:?}");
}

/// `--oauth-redirect-uri` without `--public-url`: the Redirect URI registered in the Developer
/// Console (here a host name the public URL would not give) is the one ChannelAdvisor is sent,
/// and a grant comes back through it.
async fn a_configured_redirect_uri_is_used_end_to_end(backend: Backend) {
    let sim = crate::connection::sim(0);
    let port = free_port();
    let redirect = format!("http://localhost:{port}/oauth/callback");
    sim.register_redirect_uri(APP, &redirect);
    let listen = format!("127.0.0.1:{port}");
    let app = app_against(
        &backend,
        &sim.url(),
        &["--listen", &listen, "--oauth-redirect-uri", &redirect],
    )
    .await;
    save_application(&app).await;
    let res = start(&app, None).await;
    assert_eq!(res.status(), 201);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["redirect_uri"], redirect);
    let authorize = url::Url::parse(body["authorize_url"].as_str().unwrap()).unwrap();
    assert_eq!(query(&authorize)["redirect_uri"], redirect);

    let back = grant_page(&authorize, "grant").await;
    assert_eq!(back.as_str().split('?').next().unwrap(), redirect);
    let page = callback(&app, &back, true).await;
    assert_eq!(page.status(), 200);
    assert!(page
        .text()
        .await
        .unwrap()
        .contains("Connected to ChannelAdvisor"));
    let (_, status) = app
        .get_json(
            &format!("/api/v1/companies/{COMPANY}/connection"),
            &admin(&[COMPANY]),
        )
        .await;
    assert_eq!(status["state"], "connected", "{status}");
}

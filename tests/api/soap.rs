//! Contracts §3, §4, §8: SOAP Credentials saved, shown masked, tested and used for job tokens
//! against the simulator's `soap` grant, on both backends.

use std::sync::Arc;

use connector::sim::SoapAccount;
use serde_json::{json, Value};

use crate::connection::{app_against, test_connection, APP, REFRESH, SECRET};
use crate::helpers::{admin, assert_problem, Backend, TestApp};
use crate::on_both_backends;

on_both_backends!(
    soap_credentials_connect_and_serve_a_burst_with_one_grant,
    refused_soap_values_name_the_soap_fields,
    switching_methods_keeps_the_other_values,
    scheduled_health_checks_test_soap_connections,
);

const COMPANY: &str = "acme";

fn soap_body() -> Value {
    let demo = SoapAccount::demo();
    json!({
        "auth_method": "soap",
        "application_id": APP,
        "shared_secret": SECRET,
        "developer_key": demo.developer_key,
        "password": demo.password,
        "account_id": demo.account_id.to_uppercase(),
    })
}

async fn job_token(app: &TestApp) -> reqwest::Response {
    app.client
        .post(app.url(&format!("/api/v1/companies/{COMPANY}/access-token")))
        .bearer_auth(admin(&[COMPANY]))
        .send()
        .await
        .unwrap()
}

async fn soap_credentials_connect_and_serve_a_burst_with_one_grant(backend: Backend) {
    let sim = crate::connection::sim(100);
    let app = app_against(&backend, &sim.url(), &[]).await;

    // Without the password the SOAP method is incomplete, and says what it needs.
    let mut partial = soap_body();
    partial["password"] = Value::Null;
    let res = app.put_credentials(COMPANY, &partial).await;
    assert_eq!(res.status(), 201);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["auth_method"], "soap");
    assert_eq!(body["complete"], false);
    assert_eq!(body["missing"], json!(["password"]));

    let res = app.put_credentials(COMPANY, &soap_body()).await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["complete"], true, "{body}");
    assert_eq!(body["developer_key"], json!({"set": true, "last4": "0001"}));
    assert_eq!(body["password"], json!({"set": true, "last4": "0001"}));
    assert_eq!(
        body["account_id"],
        SoapAccount::demo().account_id,
        "kept in canonical form"
    );
    assert_eq!(body["refresh_token"]["set"], false);

    let result = test_connection(&app, COMPANY, None).await;
    assert_eq!(result["outcome"], "connected", "{result}");
    assert_eq!(result["profiles"][0]["id"], 12345678);
    assert_eq!(sim.token_calls(), 1);

    // A burst of jobs after the cached token is gone: one SOAP grant for all of them.
    app.patch_credentials(COMPANY, &json!({"profile_id": 12345678}))
        .await;
    let before = sim.token_calls();
    let app = Arc::new(app);
    let burst: Vec<_> = (0..20)
        .map(|_| {
            let app = app.clone();
            tokio::spawn(async move {
                let res = job_token(&app).await;
                assert_eq!(res.status(), 200);
                let body: Value = res.json().await.unwrap();
                body["access_token"].as_str().unwrap().to_string()
            })
        })
        .collect();
    let mut tokens = Vec::new();
    for job in burst {
        tokens.push(job.await.unwrap());
    }
    assert_eq!(sim.token_calls() - before, 1, "one grant for the burst");
    assert!(tokens.iter().all(|t| t == &tokens[0]));
}

async fn refused_soap_values_name_the_soap_fields(backend: Backend) {
    let sim = crate::connection::sim(0);
    let app = app_against(&backend, &sim.url(), &[]).await;
    let mut wrong = soap_body();
    wrong["password"] = json!("not-the-password-0001");
    app.put_credentials(COMPANY, &wrong).await;
    let result = test_connection(&app, COMPANY, None).await;
    assert_eq!(result["outcome"], "failed");
    assert_eq!(result["error"]["code"], "invalid_soap_credentials");
    assert_eq!(
        result["error"]["fields"],
        json!(["developer_key", "password", "account_id"])
    );
    // A job is refused the same way, permanently.
    let body = assert_problem(job_token(&app).await, 409, "invalid_soap_credentials").await;
    assert_eq!(
        body["fields"],
        json!(["developer_key", "password", "account_id"])
    );
    // A wrong Shared Secret is still the client's fault, whatever the method.
    let mut client = soap_body();
    client["shared_secret"] = json!("wrong-shared-secret-0001");
    let candidate = test_connection(&app, COMPANY, Some(client)).await;
    assert_eq!(candidate["error"]["code"], "invalid_client");
    // Faults classify as for a refresh token: a 503 upstream is upstream_unavailable.
    let mut down = soap_body();
    down["developer_key"] = json!("sim-fault-html500");
    let candidate = test_connection(&app, COMPANY, Some(down)).await;
    assert_eq!(candidate["error"]["code"], "upstream_unavailable");
}

async fn switching_methods_keeps_the_other_values(backend: Backend) {
    let sim = crate::connection::sim(0);
    let app = app_against(&backend, &sim.url(), &[]).await;
    let mut both = soap_body();
    both["refresh_token"] = json!(REFRESH);
    app.put_credentials(COMPANY, &both).await;
    let res = app
        .patch_credentials(COMPANY, &json!({"auth_method": "refresh_token"}))
        .await;
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["auth_method"], "refresh_token");
    assert_eq!(body["complete"], true);
    assert_eq!(body["developer_key"]["set"], true, "kept unless cleared");
    let result = test_connection(&app, COMPANY, None).await;
    assert_eq!(result["outcome"], "connected");
    // `null` is the default method; clearing the refresh token leaves it incomplete.
    let res = app
        .patch_credentials(
            COMPANY,
            &json!({"auth_method": null, "refresh_token": null}),
        )
        .await;
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["auth_method"], "refresh_token");
    assert_eq!(body["missing"], json!(["refresh_token"]));
    let body = assert_problem(job_token(&app).await, 409, "connection_not_ready").await;
    assert_eq!(body["missing"], json!(["refresh_token"]));
    // Back to SOAP: complete again with the values kept all along.
    let res = app
        .patch_credentials(COMPANY, &json!({"auth_method": "soap"}))
        .await;
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["complete"], true, "{body}");
    assert_eq!(job_token(&app).await.status(), 200);
    let (_, audit) = app
        .get_json(
            &format!("/api/v1/companies/{COMPANY}/audit"),
            &admin(&[COMPANY]),
        )
        .await;
    assert_eq!(audit["entries"][0]["fields"], json!(["auth_method"]));
}

async fn scheduled_health_checks_test_soap_connections(backend: Backend) {
    let sim = crate::connection::sim(0);
    let app = app_against(&backend, &sim.url(), &["--health-check-interval-secs", "1"]).await;
    app.put_credentials(COMPANY, &soap_body()).await;
    let mut partial = soap_body();
    partial["account_id"] = Value::Null;
    app.put_credentials("partial", &partial).await;
    let history = |company: &'static str| {
        let app = &app;
        async move {
            app.get_json(
                &format!("/api/v1/companies/{company}/connection/history"),
                &admin(&[company]),
            )
            .await
            .1["tests"]
                .as_array()
                .unwrap()
                .clone()
        }
    };
    // The first scheduled check comes within one interval (1 s) of the connection becoming
    // complete; 1.5 s more for the scheduler's tick and a busy machine.
    let within = std::time::Duration::from_millis(2500);
    let runs =
        crate::helpers::poll_until(within, || history(COMPANY), |runs| !runs.is_empty()).await;
    assert_eq!(runs[0]["triggered_by"], "scheduler", "{runs:?}");
    assert_eq!(runs[0]["outcome"], "connected", "{runs:?}");
    assert!(
        history("partial").await.is_empty(),
        "an incomplete SOAP connection is not checked"
    );
}

//! Operational endpoints, contract §9 errors, request ids, metrics and OpenAPI.

use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::{admin, assert_problem, captured_logs, spawn_app, Backend};
use crate::on_both_backends;

on_both_backends!(
    health_and_readiness,
    every_error_is_problem_json,
    request_id_on_responses_and_logs,
    metrics_count_requests_by_route_and_status,
    openapi_describes_every_endpoint,
);

async fn health_and_readiness(backend: Backend) {
    let app = spawn_app(&backend).await;
    let res = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let res = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["status"], "ready");
}

async fn every_error_is_problem_json(backend: Backend) {
    let app = spawn_app(&backend).await;
    let c = &app.client;
    let token = admin(&["acme"]);
    let creds = app.url("/api/v1/companies/acme/credentials");

    assert_problem(
        c.get(app.url("/nope")).send().await.unwrap(),
        404,
        "not_found",
    )
    .await;
    assert_problem(
        c.get(app.url("/api/v1/nope"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap(),
        404,
        "not_found",
    )
    .await;
    let res = c.post(app.url("/healthz")).send().await.unwrap();
    assert_eq!(res.headers()["allow"], "GET");
    assert_problem(res, 405, "method_not_allowed").await;
    assert_problem(
        c.post(&creds)
            .bearer_auth(&token)
            .json(&json!({}))
            .send()
            .await
            .unwrap(),
        405,
        "method_not_allowed",
    )
    .await;

    let malformed = c
        .put(&creds)
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body("{\"application_id\": ")
        .send()
        .await
        .unwrap();
    assert_problem(malformed, 400, "malformed_body").await;
    let form = c
        .put(&creds)
        .bearer_auth(&token)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("a=b")
        .send()
        .await
        .unwrap();
    assert_problem(form, 415, "unsupported_media_type").await;
    let no_type = c
        .put(&creds)
        .bearer_auth(&token)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_problem(no_type, 415, "unsupported_media_type").await;
    let big = format!("{{\"application_id\": \"{}\"}}", "a".repeat(70 * 1024));
    let too_large = c
        .put(&creds)
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_problem(too_large, 413, "body_too_large").await;
    let not_object = c
        .put(&creds)
        .bearer_auth(&token)
        .json(&json!([1, 2]))
        .send()
        .await
        .unwrap();
    let body = assert_problem(not_object, 422, "validation_failed").await;
    assert_eq!(body["errors"][0]["field"], "body");

    for bad in ["-acme", "a%20b", "%C3%A4", &"x".repeat(65)] {
        let res = c
            .get(app.url(&format!("/api/v1/companies/{bad}/credentials")))
            .bearer_auth(admin(&["*"]))
            .send()
            .await
            .unwrap();
        assert_problem(res, 400, "invalid_company").await;
    }
    for bad in ["0", "-1", "abc"] {
        let res = c
            .get(app.url(&format!("/api/v1/companies/acme/audit?limit={bad}")))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        let body = assert_problem(res, 400, "invalid_query").await;
        assert_eq!(body["errors"][0]["field"], "limit");
    }
}

async fn request_id_on_responses_and_logs(backend: Backend) {
    let app = spawn_app(&backend).await;
    let res = app.client.get(app.url("/healthz")).send().await.unwrap();
    let generated = res.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(generated.len(), 36, "a uuid: {generated}");

    let mine = format!("erp-{}", uuid::Uuid::new_v4().simple());
    let res = app
        .client
        .put(app.url("/api/v1/companies/acme/credentials"))
        .bearer_auth(admin(&["acme"]))
        .header("x-request-id", &mine)
        .json(&json!({"application_id": "app-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    assert_eq!(res.headers()["x-request-id"], mine.as_str());
    // The access line is written as the response leaves; under load it may trail the answer.
    let read = || async {
        let lines: Vec<String> = captured_logs()
            .lines()
            .filter(|l| l.contains(&mine))
            .map(String::from)
            .collect();
        lines
    };
    let lines = crate::helpers::poll_until(Duration::from_secs(3), read, |lines| {
        lines.len() >= 2 && lines.iter().any(|l| l.contains("request finished"))
    })
    .await;
    assert!(
        lines.len() >= 2,
        "the request's log lines carry its id: {lines:?}"
    );
    assert!(
        lines.iter().any(|l| l.contains("credentials saved")),
        "{lines:?}"
    );
    for line in &lines {
        let v: Value = serde_json::from_str(line).expect("JSON log lines");
        assert!(v["timestamp"].is_string() && v["level"].is_string());
    }
    // The access line itself, required: a success is logged at debug (quiet at the default
    // `info`), with who and what.
    let finished: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["fields"]["message"] == "request finished")
        .collect();
    assert_eq!(finished.len(), 1, "one access line: {lines:?}");
    let v = &finished[0];
    assert_eq!(v["level"], "DEBUG", "{v}");
    assert_eq!(v["fields"]["sub"], "admin@test", "{v}");
    assert_eq!(v["fields"]["method"], "PUT", "{v}");
    assert_eq!(v["fields"]["status"], 201, "{v}");
}

async fn metrics_count_requests_by_route_and_status(backend: Backend) {
    let app = spawn_app(&backend).await;
    for _ in 0..3 {
        app.client.get(app.url("/healthz")).send().await.unwrap();
    }
    app.client
        .get(app.url("/api/v1/companies/acme/credentials"))
        .send()
        .await
        .unwrap();
    let res = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = res.text().await.unwrap();
    assert!(
        text.contains(
            r#"ca_connector_http_requests_total{method="GET",route="/healthz",status="200"} 3"#
        ),
        "{text}"
    );
    assert!(text.contains(r#"ca_connector_http_requests_total{method="GET",route="/api/v1/companies/{company}/credentials",status="401"} 1"#), "{text}");
    assert!(text.contains(r#"ca_connector_http_request_duration_seconds_bucket{method="GET",route="/healthz",status="200",le="0.005"}"#), "{text}");

    // Made-up methods and paths, unauthenticated, cannot grow the label sets.
    let lines_before = app.metrics().await.lines().count();
    for i in 0..50 {
        let method = reqwest::Method::from_bytes(format!("MADEUP{i}").as_bytes()).unwrap();
        app.client
            .request(method, app.url(&format!("/no/such/path/{i}")))
            .send()
            .await
            .unwrap();
    }
    let text = app.metrics().await;
    assert!(
        text.lines().count() <= lines_before + 20,
        "{} lines after 50 made-up requests, {lines_before} before",
        text.lines().count()
    );
    assert!(!text.contains("MADEUP"), "{text}");
    assert!(
        text.contains(
            r#"ca_connector_http_requests_total{method="other",route="unmatched",status="404"} 50"#
        ),
        "{text}"
    );
}

async fn openapi_describes_every_endpoint(backend: Backend) {
    let app = spawn_app(&backend).await;
    let doc: Value = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    // The router's own table, not a hand list: a route added without OpenAPI fails here.
    assert!(ca_connector::http::routes::ROUTES.len() >= 20);
    for (method, path) in ca_connector::http::routes::ROUTES {
        assert!(
            doc["paths"][path][method].is_object(),
            "{method} {path} missing from OpenAPI"
        );
    }
    // And the document describes nothing the router does not serve.
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            assert!(
                ca_connector::http::routes::ROUTES.contains(&(method.as_str(), path.as_str())),
                "OpenAPI describes {method} {path}, which no route serves"
            );
        }
    }
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    // Every error answer is documented as problem+json, and every {company} carries the rule.
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            for (status, answer) in op["responses"].as_object().unwrap() {
                if status.as_str() >= "400" {
                    assert!(
                        answer["content"]["application/problem+json"].is_object(),
                        "{method} {path} {status} is not problem+json"
                    );
                }
            }
            for param in op["parameters"].as_array().into_iter().flatten() {
                if param["name"] == "company" {
                    assert_eq!(param["schema"]["maxLength"], 64, "{method} {path}");
                    assert!(param["schema"]["pattern"].is_string(), "{method} {path}");
                }
            }
        }
    }
    // The answers the code sends, with the types it uses: last_test may be null, a Test
    // Connection answer is the result type, and the body structs are the ones that parse.
    let schemas = &doc["components"]["schemas"];
    let last_test =
        serde_json::to_string(&schemas["ConnectionStatus"]["properties"]["last_test"]).unwrap();
    assert!(last_test.contains("null"), "{last_test}");
    let tested =
        &doc["paths"]["/api/v1/companies/{company}/connection/test"]["post"]["responses"]["200"];
    assert!(tested.to_string().contains("TestResult"), "{tested}");
    for field in ["checks", "profiles", "error", "outcome"] {
        assert!(
            schemas["TestResult"]["properties"][field].is_object(),
            "{field}"
        );
    }
    let input = &schemas["CredentialsInput"];
    assert_eq!(input["additionalProperties"], false);
    assert!(input["properties"]["application_id"]["pattern"].is_string());
    assert_eq!(schemas["WebhookInput"]["additionalProperties"], false);
}

/// Readiness follows the database: 503 while PostgreSQL is unreachable, 200 again once it is
/// back, without a restart. (An embedded SQLite file cannot become unreachable.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_an_unreachable_database() {
    let Some(backend) = Backend::postgres("readiness_follows_an_unreachable_database") else {
        return;
    };
    let dir = tempfile::TempDir::new().unwrap();
    let direct = url::Url::parse(&backend.fresh_database(dir.path())).unwrap();
    let target = format!(
        "{}:{}",
        direct.host_str().unwrap(),
        direct.port().unwrap_or(5432)
    );
    let proxy = crate::helpers::proxy::Proxy::start(&target).await;
    let mut via_proxy = direct.clone();
    via_proxy.set_port(Some(proxy.port())).unwrap();
    let app = crate::helpers::spawn_app_with(
        &backend,
        crate::helpers::AppOptions {
            database_url: Some(via_proxy.to_string()),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        app.client
            .get(app.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    proxy.set_up(false);
    let res = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_problem(res, 503, "not_ready").await;
    // An API call meanwhile: 503 database_unavailable, with nothing of the cause in it.
    let res = app
        .client
        .get(app.url("/api/v1/companies/acme/credentials"))
        .bearer_auth(crate::helpers::admin(&["acme"]))
        .send()
        .await
        .unwrap();
    let (status, headers) = (res.status(), res.headers().clone());
    assert_eq!(
        headers.get("retry-after").map(|v| v.to_str().unwrap()),
        Some("5"),
        "{status} {:?}",
        res.text().await
    );
    let body = assert_problem(res, 503, "database_unavailable").await;
    let text = body.to_string();
    for internal in ["127.0.0.1", "connection", "postgres", "timed out"] {
        assert!(
            !text.to_lowercase().contains(internal),
            "{internal} in {text}"
        );
    }
    let res = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(res.status(), 200, "alive while the database is away");

    proxy.set_up(true);
    let read = || async {
        let res = app.client.get(app.url("/readyz")).send().await.unwrap();
        res.status().as_u16()
    };
    let status = crate::helpers::poll_until(Duration::from_secs(5), read, |s| *s == 200).await;
    assert_eq!(status, 200, "ready again without a restart");
}

/// Request headers over 32 KiB in all: 431 `headers_too_large`, as problem+json.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_headers_are_refused() {
    let app = spawn_app(&Backend::Sqlite).await;
    let get = |size: usize| {
        app.client
            .get(app.url("/healthz"))
            .header("x-padding", "a".repeat(size))
            .send()
    };
    assert_eq!(get(30 * 1024).await.unwrap().status(), 200);
    let body = assert_problem(get(100 * 1024).await.unwrap(), 431, "headers_too_large").await;
    assert!(body["detail"].as_str().unwrap().contains("32768"), "{body}");
}

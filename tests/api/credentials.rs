//! Contract §3 credentials and audit, on both backends.

use serde_json::{json, Value};

use crate::helpers::{admin, assert_problem, spawn_app, token, token_for, Backend, TestApp};
use crate::on_both_backends;

on_both_backends!(
    put_creates_then_replaces_with_masked_view,
    patch_merges_and_clears,
    get_and_delete,
    if_match_guards_writes,
    validation_names_every_bad_field,
    companies_list_shows_states,
    audit_records_who_changed_what,
    tenant_isolation_and_scopes_on_every_endpoint,
    concurrent_writers_keep_last_version_and_audit,
    list_limits_default_and_clamp,
);

const SECRET: &str = "w7Gd9KfLq2ZxW9Qa";
const REFRESH: &str = "rt-8f1c0e9a7b6d5c4e3f2a1IyaI";

fn full() -> Value {
    json!({"application_id": "ryr0app123", "shared_secret": SECRET, "refresh_token": REFRESH, "profile_id": 12345678})
}

async fn put_creates_then_replaces_with_masked_view(backend: Backend) {
    let app = spawn_app(&backend).await;
    let res = app
        .put_credentials("acme", &json!({"application_id": "  ryr0app123\n", "shared_secret": format!("\t{SECRET} "), "refresh_token": ""}))
        .await;
    assert_eq!(res.status(), 201);
    assert_eq!(res.headers()["etag"], "\"1\"");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["company"], "acme");
    assert_eq!(body["application_id"], "ryr0app123");
    assert_eq!(body["shared_secret"], json!({"set": true, "last4": "W9Qa"}));
    assert_eq!(body["refresh_token"], json!({"set": false, "last4": null}));
    assert_eq!(body["complete"], false);
    assert_eq!(body["missing"], json!(["refresh_token"]));
    assert_eq!(body["version"], 1);
    assert_eq!(body["updated_by"], "admin@test");
    assert!(body["updated_at"].as_str().unwrap().ends_with('Z'));

    let res = app.put_credentials("acme", &full()).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["etag"], "\"2\"");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["complete"], true);
    assert_eq!(body["missing"], json!([]));
    assert_eq!(body["refresh_token"], json!({"set": true, "last4": "IyaI"}));
    assert_eq!(body["profile_id"], 12345678);

    // PUT replaces: absent fields are cleared.
    let body: Value = app
        .put_credentials(
            "acme",
            &json!({"application_id": "ryr0app123", "shared_secret": "short"}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["refresh_token"]["set"], false);
    assert_eq!(body["profile_id"], Value::Null);
    assert_eq!(
        body["shared_secret"],
        json!({"set": true, "last4": null}),
        "no last4 under 12 characters"
    );
    assert_eq!(body["missing"], json!(["refresh_token"]));
    assert_eq!(body["version"], 3);

    // Saving the same values again changes nothing.
    let body: Value = app
        .put_credentials(
            "acme",
            &json!({"application_id": "ryr0app123", "shared_secret": "short"}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["version"], 3);
}

async fn patch_merges_and_clears(backend: Backend) {
    let app = spawn_app(&backend).await;
    let res = app
        .patch_credentials("acme", &json!({"application_id": "app-1"}))
        .await;
    assert_eq!(res.status(), 201, "a merge patch on nothing creates");
    let body: Value = app
        .patch_credentials(
            "acme",
            &json!({"shared_secret": SECRET, "refresh_token": REFRESH}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["application_id"], "app-1", "absent = unchanged");
    assert_eq!(body["complete"], true);
    assert_eq!(body["version"], 2);
    let body: Value = app
        .patch_credentials("acme", &json!({"refresh_token": null, "profile_id": 42}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["refresh_token"]["set"], false, "null = cleared");
    assert_eq!(body["shared_secret"]["last4"], "W9Qa", "kept");
    assert_eq!(body["profile_id"], 42);
    let body: Value = app
        .patch_credentials("acme", &json!({"application_id": "  "}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["application_id"], Value::Null, "empty string = null");
    assert_eq!(body["missing"], json!(["application_id", "refresh_token"]));
    // application/json is accepted for PATCH too.
    let res = app
        .client
        .patch(app.url("/api/v1/companies/acme/credentials"))
        .bearer_auth(admin(&["acme"]))
        .json(&json!({"profile_id": "77"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap()["profile_id"], 77);
}

async fn get_and_delete(backend: Backend) {
    let app = spawn_app(&backend).await;
    let t = admin(&["acme"]);
    let path = "/api/v1/companies/acme/credentials";
    assert_problem(
        app.client
            .get(app.url(path))
            .bearer_auth(&t)
            .send()
            .await
            .unwrap(),
        404,
        "credentials_not_found",
    )
    .await;
    assert_problem(
        app.client
            .delete(app.url(path))
            .bearer_auth(&t)
            .send()
            .await
            .unwrap(),
        404,
        "credentials_not_found",
    )
    .await;
    app.put_credentials("acme", &full()).await;
    let res = app
        .client
        .get(app.url(path))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["etag"], "\"1\"");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["shared_secret"], json!({"set": true, "last4": "W9Qa"}));
    let res = app
        .client
        .delete(app.url(path))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    assert_problem(
        app.client
            .get(app.url(path))
            .bearer_auth(&t)
            .send()
            .await
            .unwrap(),
        404,
        "credentials_not_found",
    )
    .await;
}

async fn if_match_guards_writes(backend: Backend) {
    let app = spawn_app(&backend).await;
    let t = admin(&["acme"]);
    let path = app.url("/api/v1/companies/acme/credentials");
    let res = app
        .client
        .put(&path)
        .bearer_auth(&t)
        .header("if-match", "\"1\"")
        .json(&full())
        .send()
        .await
        .unwrap();
    assert_problem(res, 412, "version_conflict").await;
    app.put_credentials("acme", &full()).await;
    let res = app
        .client
        .patch(&path)
        .bearer_auth(&t)
        .header("if-match", "\"1\"")
        .json(&json!({"profile_id": 5}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["etag"], "\"2\"");
    let res = app
        .client
        .patch(&path)
        .bearer_auth(&t)
        .header("if-match", "\"1\"")
        .json(&json!({"profile_id": 6}))
        .send()
        .await
        .unwrap();
    let body = assert_problem(res, 412, "version_conflict").await;
    assert_eq!(body["current_version"], 2);
    let res = app
        .client
        .delete(&path)
        .bearer_auth(&t)
        .header("if-match", "\"7\"")
        .send()
        .await
        .unwrap();
    assert_problem(res, 412, "version_conflict").await;
    let res = app
        .client
        .delete(&path)
        .bearer_auth(&t)
        .header("if-match", "W/\"2\"")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
}

async fn validation_names_every_bad_field(backend: Backend) {
    let app = spawn_app(&backend).await;
    let bad = json!({
        "application_id": "has space",
        "shared_secret": "x".repeat(257),
        "refresh_token": "line\nbreak",
        "profile_id": 0,
        "passwd": "nope",
        "auth_method": "oauth",
        "account_id": "not-a-guid",
        "developer_key": "has inner space",
    });
    let body = assert_problem(
        app.put_credentials("acme", &bad).await,
        422,
        "validation_failed",
    )
    .await;
    let fields: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    for f in [
        "application_id",
        "shared_secret",
        "refresh_token",
        "profile_id",
        "passwd",
        "auth_method",
        "account_id",
        "developer_key",
    ] {
        assert!(fields.contains(&f), "{f} named in {body}");
    }
    for e in body["errors"].as_array().unwrap() {
        assert!(!e["message"].as_str().unwrap().is_empty());
    }
    for (field, value) in [
        ("application_id", json!("a".repeat(129))),
        ("refresh_token", json!("r".repeat(2049))),
        ("shared_secret", json!(12)),
        ("profile_id", json!(-4)),
        ("profile_id", json!(1.5)),
        ("profile_id", json!("abc")),
        ("application_id", json!("tab\there")),
    ] {
        let body = assert_problem(
            app.put_credentials("acme", &json!({ field: value })).await,
            422,
            "validation_failed",
        )
        .await;
        assert_eq!(body["errors"][0]["field"], field, "{body}");
    }
    // Limits are inclusive.
    let ok = json!({"application_id": "a".repeat(128), "shared_secret": "s".repeat(256), "refresh_token": "r".repeat(2048)});
    assert_eq!(app.put_credentials("acme", &ok).await.status(), 201);
    // Nothing was stored by the refused writes before it.
    let audit: Value = app
        .get_json("/api/v1/companies/acme/audit", &admin(&["acme"]))
        .await
        .1;
    assert_eq!(audit["entries"].as_array().unwrap().len(), 1);
}

async fn companies_list_shows_states(backend: Backend) {
    let app = spawn_app(&backend).await;
    app.put_credentials("acme", &full()).await;
    app.put_credentials("beta", &json!({"application_id": "x"}))
        .await;
    app.put_credentials("gamma", &full()).await;
    let (status, body) = app
        .get_json("/api/v1/companies", &token(&["*"], "connection:read"))
        .await;
    assert_eq!(status, 200);
    let states: Vec<(String, String)> = body["companies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["company"].as_str().unwrap().into(),
                c["state"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        states,
        vec![
            ("acme".into(), "untested".into()),
            ("beta".into(), "incomplete".into()),
            ("gamma".into(), "untested".into())
        ]
    );

    let (_, body) = app
        .get_json(
            "/api/v1/companies",
            &token(&["beta", "zeta"], "connection:read"),
        )
        .await;
    // `since` is the time beta became incomplete: the one its own status shows.
    let beta = app
        .get_json(
            "/api/v1/companies/beta/connection",
            &token(&["beta"], "connection:read"),
        )
        .await
        .1;
    assert!(
        beta["since"].as_str().is_some_and(|s| s.ends_with('Z')),
        "{beta}"
    );
    assert_eq!(
        body,
        json!({"companies": [
            {"company": "beta", "state": "incomplete", "since": beta["since"]},
            {"company": "zeta", "state": "not_configured", "since": null}
        ],
        "next": null,
        "counts": {"not_configured": 1, "incomplete": 1, "untested": 0, "connected": 0, "failed": 0}})
    );
    let res = app
        .client
        .get(app.url("/api/v1/companies"))
        .bearer_auth(token(&["*"], "credentials:read"))
        .send()
        .await
        .unwrap();
    assert_problem(res, 403, "insufficient_scope").await;
}

async fn audit_records_who_changed_what(backend: Backend) {
    let app = spawn_app(&backend).await;
    let path = app.url("/api/v1/companies/acme/credentials");
    let alice = token_for(
        "alice@acme",
        &["acme"],
        "credentials:write credentials:read",
    );
    let bob = token_for("bob@acme", &["acme"], "credentials:write credentials:read");
    app.client
        .put(&path)
        .bearer_auth(&alice)
        .json(&full())
        .send()
        .await
        .unwrap();
    app.client
        .patch(&path)
        .bearer_auth(&bob)
        .json(&json!({"refresh_token": "rt-new-value-0000000000"}))
        .send()
        .await
        .unwrap();
    app.client
        .delete(&path)
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    let (status, body) = app.get_json("/api/v1/companies/acme/audit", &bob).await;
    assert_eq!(status, 200);
    let entries = body["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 3);
    assert_eq!(
        (entries[0]["action"].as_str(), entries[0]["actor"].as_str()),
        (Some("deleted"), Some("alice@acme"))
    );
    assert_eq!(entries[1]["action"], "updated");
    assert_eq!(entries[1]["actor"], "bob@acme");
    assert_eq!(entries[1]["fields"], json!(["refresh_token"]));
    assert_eq!(entries[2]["action"], "created");
    assert_eq!(
        entries[2]["fields"],
        json!([
            "application_id",
            "shared_secret",
            "refresh_token",
            "profile_id"
        ])
    );
    let text = body.to_string();
    assert!(
        !text.contains(SECRET) && !text.contains("rt-new-value"),
        "never values"
    );
    let (_, limited) = app
        .get_json("/api/v1/companies/acme/audit?limit=1", &bob)
        .await;
    assert_eq!(limited["entries"].as_array().unwrap().len(), 1);
}

/// The list limits with enough entries to cross them: audit defaults to 50, history to 20, and
/// both clamp at 200.
async fn list_limits_default_and_clamp(backend: Backend) {
    let app = spawn_app(&backend).await;
    let bearer = admin(&["acme"]);
    // Eight at a time; each test lays different values over the stored ones, so no two share
    // a run (identical concurrent tests would share one history entry).
    for chunk in (1..=205).collect::<Vec<i32>>().chunks(8) {
        let app = &app;
        let writes = chunk.iter().map(|i| async move {
            app.patch_credentials("acme", &json!({"application_id": format!("app-{i}")}))
                .await
        });
        for res in futures_util::future::join_all(writes).await {
            assert!(res.status().is_success());
        }
        let tests = chunk.iter().map(|i| {
            app.client
                .post(app.url("/api/v1/companies/acme/connection/test"))
                .bearer_auth(&bearer)
                .json(&json!({"application_id": format!("candidate-{i}")}))
                .send()
        });
        for res in futures_util::future::join_all(tests).await {
            // Incomplete values: recorded in history, nothing sent upstream.
            assert_eq!(res.unwrap().status(), 200);
        }
    }
    let count = |body: &Value, key: &str| body[key].as_array().unwrap().len();
    for (path, key, default) in [
        ("/api/v1/companies/acme/audit", "entries", 50),
        ("/api/v1/companies/acme/connection/history", "tests", 20),
    ] {
        let (_, body) = app.get_json(path, &bearer).await;
        assert_eq!(count(&body, key), default, "{path} default");
        let (_, body) = app.get_json(&format!("{path}?limit=100000"), &bearer).await;
        assert_eq!(count(&body, key), 200, "{path} clamped");
        let (_, body) = app.get_json(&format!("{path}?limit=200"), &bearer).await;
        assert_eq!(count(&body, key), 200, "{path} at the maximum");
        let (_, body) = app.get_json(&format!("{path}?limit=7"), &bearer).await;
        assert_eq!(count(&body, key), 7, "{path} below");
    }
}

/// Every credentials endpoint: another company's token, a missing scope, no token.
async fn tenant_isolation_and_scopes_on_every_endpoint(backend: Backend) {
    let app = spawn_app(&backend).await;
    app.put_credentials("acme", &full()).await;
    let endpoints: [(&str, &str, &str); 5] = [
        (
            "PUT",
            "/api/v1/companies/acme/credentials",
            "credentials:write",
        ),
        (
            "PATCH",
            "/api/v1/companies/acme/credentials",
            "credentials:write",
        ),
        (
            "GET",
            "/api/v1/companies/acme/credentials",
            "credentials:read",
        ),
        (
            "DELETE",
            "/api/v1/companies/acme/credentials",
            "credentials:write",
        ),
        ("GET", "/api/v1/companies/acme/audit", "credentials:read"),
    ];
    let every_other_scope = |needed: &str| {
        crate::helpers::ALL_SCOPES
            .split(' ')
            .filter(|s| *s != needed)
            .collect::<Vec<_>>()
            .join(" ")
    };
    for (method, path, scope) in endpoints {
        let send = |bearer: Option<String>| {
            let mut req = app.client.request(method.parse().unwrap(), app.url(path));
            if method == "PUT" || method == "PATCH" {
                req = req.json(&json!({"profile_id": 99}));
            }
            if let Some(b) = bearer {
                req = req.bearer_auth(b);
            }
            req.send()
        };
        assert_problem(
            send(Some(token(&["beta"], crate::helpers::ALL_SCOPES)))
                .await
                .unwrap(),
            403,
            "company_forbidden",
        )
        .await;
        assert_problem(
            send(Some(token(&["acme"], &every_other_scope(scope))))
                .await
                .unwrap(),
            403,
            "insufficient_scope",
        )
        .await;
        assert_problem(send(None).await.unwrap(), 401, "invalid_token").await;
    }
    // Nothing above changed acme's credentials.
    let (_, body) = app
        .get_json("/api/v1/companies/acme/credentials", &admin(&["acme"]))
        .await;
    assert_eq!(body["version"], 1);
    assert_eq!(body["profile_id"], 12345678);
}

/// 50 writers at once on one company: every write lands as its own version, the stored values
/// are those of the write that got the last version, and the audit trail has each version once.
async fn concurrent_writers_keep_last_version_and_audit(backend: Backend) {
    let app = std::sync::Arc::new(spawn_app(&backend).await);
    let mut handles = Vec::new();
    for i in 0..50 {
        let app = app.clone();
        handles.push(tokio::spawn(async move {
            let body = json!({"application_id": format!("app-{i}"), "shared_secret": format!("secret-value-{i:04}"), "refresh_token": REFRESH});
            let res = app.put_credentials("acme", &body).await;
            let status = res.status().as_u16();
            let v: Value = res.json().await.unwrap();
            (i, status, v["version"].as_i64().unwrap_or(-1))
        }));
    }
    let mut results = Vec::new();
    for h in handles {
        results.push(h.await.unwrap());
    }
    assert!(
        results.iter().all(|(_, s, _)| *s == 200 || *s == 201),
        "{results:?}"
    );
    assert_eq!(
        results.iter().filter(|(_, s, _)| *s == 201).count(),
        1,
        "exactly one creation"
    );
    let mut versions: Vec<i64> = results.iter().map(|(_, _, v)| *v).collect();
    versions.sort();
    assert_eq!(versions, (1..=50).collect::<Vec<_>>());
    let last = results.iter().find(|(_, _, v)| *v == 50).unwrap().0;

    let (_, body) = app
        .get_json("/api/v1/companies/acme/credentials", &admin(&["acme"]))
        .await;
    assert_eq!(body["version"], 50);
    assert_eq!(body["application_id"], format!("app-{last}"));
    assert_eq!(body["shared_secret"]["last4"], format!("{last:04}"));
    let (_, audit) = app
        .get_json("/api/v1/companies/acme/audit?limit=200", &admin(&["acme"]))
        .await;
    let mut audited: Vec<i64> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["version"].as_i64().unwrap())
        .collect();
    assert_eq!(audited.len(), 50);
    assert_eq!(audited[0], 50, "newest first");
    audited.sort();
    assert_eq!(audited, (1..=50).collect::<Vec<_>>());
    let _: &TestApp = &app;
}

//! Contract §2: every rejection of a bearer token, and the public-key algorithms.

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

use crate::helpers::{
    assert_problem, spawn_app, spawn_app_with, token, AppOptions, Backend, JWT_SECRET,
};

fn sign(alg: Algorithm, key: &EncodingKey, claims: &Value) -> String {
    encode(&Header::new(alg), claims, key).unwrap()
}

fn claims(overrides: Value) -> Value {
    let now = chrono::Utc::now().timestamp();
    let mut c = json!({
        "sub": "admin@acme", "exp": now + 600, "aud": "ca-connector",
        "companies": ["acme"], "scope": "connection:read credentials:read"
    });
    for (k, v) in overrides.as_object().unwrap() {
        if v.is_null() {
            c.as_object_mut().unwrap().remove(k);
        } else {
            c[k] = v.clone();
        }
    }
    c
}

async fn status_of(app: &crate::helpers::TestApp, bearer: Option<&str>) -> reqwest::Response {
    let mut req = app
        .client
        .get(app.url("/api/v1/companies/acme/credentials"));
    if let Some(t) = bearer {
        req = req.header("authorization", t);
    }
    req.send().await.unwrap()
}

async fn assert_unauthorized(res: reqwest::Response, why: &str) {
    assert_refused(res, why, &[]).await;
}

/// A 401 whose `detail` and `WWW-Authenticate` `error_description` both say every one of `cure`,
/// and never the configured key.
async fn assert_refused(res: reqwest::Response, why: &str, cure: &[&str]) {
    assert_eq!(res.status(), 401, "{why}");
    let challenge = res.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        challenge.starts_with("Bearer error=\"invalid_token\""),
        "{why}: {challenge}"
    );
    let body = assert_problem(res, 401, "invalid_token").await;
    let detail = body["detail"].as_str().unwrap();
    for words in cure {
        assert!(detail.contains(words), "{why}: '{words}' in {detail}");
        assert!(
            challenge.contains(&words.replace('"', "'")),
            "{why}: '{words}' in {challenge}"
        );
    }
    assert!(!detail.contains(JWT_SECRET) && !challenge.contains(JWT_SECRET));
}

fn rfc3339(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hs256_token_rejections() {
    let app = spawn_app(&Backend::Sqlite).await;
    let hs = EncodingKey::from_secret(JWT_SECRET.as_bytes());
    let now = chrono::Utc::now().timestamp();

    assert_unauthorized(status_of(&app, None).await, "no header").await;
    assert_unauthorized(status_of(&app, Some("Basic YTpi")).await, "not bearer").await;
    assert_refused(
        status_of(&app, Some("Bearer not.a.jwt")).await,
        "garbage",
        &["not a valid JWT"],
    )
    .await;
    let cases: Vec<(&str, String, Vec<String>)> = vec![
        (
            "wrong secret",
            sign(
                Algorithm::HS256,
                &EncodingKey::from_secret(b"another-secret-another-secret-xx"),
                &claims(json!({})),
            ),
            vec![
                "signature does not match the key".into(),
                "--jwt-secret".into(),
            ],
        ),
        (
            "other algorithm",
            sign(Algorithm::HS512, &hs, &claims(json!({}))),
            vec!["accepts HS256 only".into()],
        ),
        (
            "expired past leeway",
            sign(Algorithm::HS256, &hs, &claims(json!({"exp": now - 120}))),
            vec![format!("expired at {}", rfc3339(now - 120))],
        ),
        (
            "not yet valid",
            sign(Algorithm::HS256, &hs, &claims(json!({"nbf": now + 300}))),
            vec![
                format!("not valid before {}", rfc3339(now + 300)),
                "clock".into(),
            ],
        ),
        (
            "wrong audience",
            sign(
                Algorithm::HS256,
                &hs,
                &claims(json!({"aud": "someone-else"})),
            ),
            vec!["is not 'ca-connector'".into(), "--jwt-audience".into()],
        ),
        (
            "no audience",
            sign(Algorithm::HS256, &hs, &claims(json!({"aud": null}))),
            vec!["lacks the required 'aud' claim".into()],
        ),
        (
            "no exp",
            sign(Algorithm::HS256, &hs, &claims(json!({"exp": null}))),
            vec!["lacks the required 'exp' claim".into()],
        ),
        (
            "no sub",
            sign(Algorithm::HS256, &hs, &claims(json!({"sub": null}))),
            vec!["lacks the required 'sub' claim".into()],
        ),
        (
            "no companies",
            sign(Algorithm::HS256, &hs, &claims(json!({"companies": null}))),
            vec!["lacks the required 'companies' claim".into()],
        ),
        (
            // It is echoed in events and audit records: a huge one would make each event huge.
            "a subject longer than 256 characters",
            sign(
                Algorithm::HS256,
                &hs,
                &claims(json!({"sub": "s".repeat(257)})),
            ),
            vec!["longer than 256 characters".into()],
        ),
    ];
    for (why, jwt, cure) in cases {
        let cure: Vec<&str> = cure.iter().map(String::as_str).collect();
        assert_refused(
            status_of(&app, Some(&format!("Bearer {jwt}"))).await,
            why,
            &cure,
        )
        .await;
    }

    // Inside the 60 s leeway an expired token still works; nbf in the past is fine.
    for ok in [
        claims(json!({"exp": now - 30})),
        claims(json!({"nbf": now - 5})),
        claims(json!({"aud": ["x", "ca-connector"]})),
        claims(json!({"sub": "s".repeat(256)})),
    ] {
        let res = status_of(
            &app,
            Some(&format!("Bearer {}", sign(Algorithm::HS256, &hs, &ok))),
        )
        .await;
        assert_eq!(
            res.status(),
            404,
            "accepted token reaches the handler (no credentials yet)"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scopes_companies_and_company_ids() {
    let app = spawn_app(&Backend::Sqlite).await;
    let path = "/api/v1/companies/acme/credentials";
    let res = app
        .client
        .get(app.url(path))
        .bearer_auth(token(&["acme"], "connection:read"))
        .send()
        .await
        .unwrap();
    let res_www = res.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(res_www.contains("insufficient_scope"));
    let body = assert_problem(res, 403, "insufficient_scope").await;
    assert!(body["detail"]
        .as_str()
        .unwrap()
        .contains("credentials:read"));

    let res = app
        .client
        .get(app.url(path))
        .bearer_auth(token(&["beta"], "credentials:read"))
        .send()
        .await
        .unwrap();
    assert_problem(res, 403, "company_forbidden").await;
    let res = app
        .client
        .get(app.url("/api/v1/companies/Acme/credentials"))
        .bearer_auth(token(&["acme"], "credentials:read"))
        .send()
        .await
        .unwrap();
    assert_problem(res, 403, "company_forbidden").await;
    let res = app
        .client
        .get(app.url("/api/v1/companies/a!b/credentials"))
        .bearer_auth(token(&["*"], "credentials:read"))
        .send()
        .await
        .unwrap();
    assert_problem(res, 400, "invalid_company").await;
    let res = app
        .client
        .get(app.url(path))
        .bearer_auth(token(&["*"], "credentials:read"))
        .send()
        .await
        .unwrap();
    assert_problem(res, 404, "credentials_not_found").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issuer_is_required_when_configured() {
    let app = spawn_app_with(
        &Backend::Sqlite,
        AppOptions {
            extra_args: vec!["--jwt-issuer".into(), "https://erp.example".into()],
            ..Default::default()
        },
    )
    .await;
    let hs = EncodingKey::from_secret(JWT_SECRET.as_bytes());
    for (why, c, cure) in [
        (
            "no iss",
            claims(json!({})),
            "lacks the required 'iss' claim",
        ),
        (
            "wrong iss",
            claims(json!({"iss": "https://evil.example"})),
            "is not 'https://erp.example', which this service requires (--jwt-issuer)",
        ),
    ] {
        assert_refused(
            status_of(
                &app,
                Some(&format!("Bearer {}", sign(Algorithm::HS256, &hs, &c))),
            )
            .await,
            why,
            &[cure],
        )
        .await;
    }
    let good = sign(
        Algorithm::HS256,
        &hs,
        &claims(json!({"iss": "https://erp.example"})),
    );
    assert_eq!(
        status_of(&app, Some(&format!("Bearer {good}")))
            .await
            .status(),
        404
    );
}

async fn public_key_app(public_pem: &str) -> crate::helpers::TestApp {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(public_pem);
    spawn_app_with(
        &Backend::Sqlite,
        AppOptions {
            extra_args: vec!["--jwt-public-key".into(), dir.display().to_string()],
            ..Default::default()
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rs256_and_es256_with_a_public_key() {
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let rsa = EncodingKey::from_rsa_pem(&std::fs::read(fixtures.join("rsa-private.pem")).unwrap())
        .unwrap();
    let ec =
        EncodingKey::from_ec_pem(&std::fs::read(fixtures.join("ec-private.pem")).unwrap()).unwrap();
    let hs = EncodingKey::from_secret(JWT_SECRET.as_bytes());

    let app = public_key_app("rsa-public.pem").await;
    let ok = sign(Algorithm::RS256, &rsa, &claims(json!({})));
    assert_eq!(
        status_of(&app, Some(&format!("Bearer {ok}")))
            .await
            .status(),
        404
    );
    for (why, jwt) in [
        (
            "HS256 when RS256 is configured",
            sign(Algorithm::HS256, &hs, &claims(json!({}))),
        ),
        (
            "ES256 when RS256 is configured",
            sign(Algorithm::ES256, &ec, &claims(json!({}))),
        ),
    ] {
        assert_unauthorized(status_of(&app, Some(&format!("Bearer {jwt}"))).await, why).await;
    }

    let app = public_key_app("ec-public.pem").await;
    let ok = sign(Algorithm::ES256, &ec, &claims(json!({})));
    assert_eq!(
        status_of(&app, Some(&format!("Bearer {ok}")))
            .await
            .status(),
        404
    );
    let rs = sign(Algorithm::RS256, &rsa, &claims(json!({})));
    assert_unauthorized(
        status_of(&app, Some(&format!("Bearer {rs}"))).await,
        "RS256 when ES256 is configured",
    )
    .await;
}

/// A verified token is remembered to spare re-checking its signature, but never past its expiry:
/// the same token that was accepted is refused once `exp` plus the 60 s leeway has passed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remembered_token_still_expires() {
    let app = spawn_app(&Backend::Sqlite).await;
    let hs = EncodingKey::from_secret(JWT_SECRET.as_bytes());
    let now = chrono::Utc::now().timestamp();
    let bearer = format!(
        "Bearer {}",
        sign(Algorithm::HS256, &hs, &claims(json!({"exp": now - 55})))
    );
    assert_eq!(
        status_of(&app, Some(&bearer)).await.status(),
        404,
        "within the leeway: accepted (no credentials yet)"
    );
    assert_eq!(status_of(&app, Some(&bearer)).await.status(), 404);
    // Accepted for 5 s after it was signed; refused once they have passed.
    let signed =
        std::time::Duration::from_secs((now + 5 - chrono::Utc::now().timestamp()).max(0) as u64);
    tokio::time::sleep(signed + std::time::Duration::from_secs(2)).await;
    assert_unauthorized(status_of(&app, Some(&bearer)).await, "expired since").await;
}

//! Contract §5: secrets sealed at rest, never in a response, a log line or a metric; a ciphertext
//! moved to another row does not open; a database sealed with an unknown key id does not start.

use diesel::prelude::*;
use serde_json::{json, Value};

use crate::helpers::{
    admin, assert_problem, captured_logs, config_for, spawn_app, Backend, TestApp,
};
use crate::on_both_backends;

on_both_backends!(
    secrets_never_leave_sealed,
    copied_ciphertext_does_not_open,
    unknown_key_id_stops_the_start
);

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

/// Everything the database holds, as text: SQLite's file bytes (WAL included) or PostgreSQL rows.
fn database_text(app: &TestApp) -> String {
    match &app.backend {
        Backend::Sqlite => {
            let mut all = Vec::new();
            for name in ["test.db", "test.db-wal"] {
                if let Ok(bytes) = std::fs::read(app.data_dir.path().join(name)) {
                    all.extend(bytes);
                }
            }
            String::from_utf8_lossy(&all).into_owned()
        }
        Backend::Postgres(_) => {
            #[derive(QueryableByName)]
            struct Row {
                #[diesel(sql_type = diesel::sql_types::Text)]
                j: String,
            }
            schema::pool::init_tls();
            let mut conn = PgConnection::establish(&app.database_url).unwrap();
            let tables: Vec<Row> = diesel::sql_query("SELECT table_name::text AS j FROM information_schema.tables WHERE table_schema = 'public'")
                .load(&mut conn)
                .unwrap();
            let mut text = String::new();
            for t in tables {
                let rows: Vec<Row> =
                    diesel::sql_query(format!("SELECT row_to_json(x)::text AS j FROM {} x", t.j))
                        .load(&mut conn)
                        .unwrap();
                for r in rows {
                    text.push_str(&r.j);
                }
            }
            text
        }
    }
}

async fn secrets_never_leave_sealed(backend: Backend) {
    let app = spawn_app(&backend).await;
    let secret = format!("ss-{}", uuid::Uuid::new_v4().simple());
    let refresh = format!("rt-{}", uuid::Uuid::new_v4().simple());
    let developer_key = format!("dk-{}", uuid::Uuid::new_v4().simple());
    let password = format!("pw-{}", uuid::Uuid::new_v4().simple());
    let t = admin(&["acme"]);
    let mut seen = String::new();
    let record = |res: reqwest::Response| {
        let headers = format!("{:?}", res.headers());
        async move { format!("{headers}{}", res.text().await.unwrap()) }
    };
    seen += &record(
        app.put_credentials(
            "acme",
            &json!({"application_id": "app", "shared_secret": secret, "refresh_token": refresh,
                    "auth_method": "soap", "developer_key": developer_key, "password": password,
                    "account_id": "0a1b2c3d-4e5f-6789-abcd-ef0123456789"}),
        )
        .await,
    )
    .await;
    seen += &record(
        app.patch_credentials("acme", &json!({"password": format!("{password} bad")}))
            .await,
    )
    .await;
    seen += &record(
        app.patch_credentials("acme", &json!({"profile_id": 5}))
            .await,
    )
    .await;
    seen += &record(
        app.patch_credentials("acme", &json!({"shared_secret": format!("{secret} bad")}))
            .await,
    )
    .await;
    for path in [
        "/api/v1/companies/acme/credentials",
        "/api/v1/companies/acme/audit",
        "/api/v1/companies",
        "/metrics",
        "/openapi.json",
    ] {
        seen += &record(
            app.client
                .get(app.url(path))
                .bearer_auth(&t)
                .send()
                .await
                .unwrap(),
        )
        .await;
    }
    assert!(seen.contains("last4"), "the responses were read");
    let db = database_text(&app);
    assert!(db.contains("acme"), "the database was read");
    let logs = captured_logs();
    for value in [&secret, &refresh, &developer_key, &password] {
        assert!(
            !seen.contains(value.as_str()),
            "a response carries a secret"
        );
        assert!(
            !db.contains(value.as_str()) && !db.contains(&hex(value)),
            "the database holds a secret in the clear"
        );
        assert!(
            !logs.contains(value.as_str()),
            "a log line carries a secret"
        );
    }
}

async fn copied_ciphertext_does_not_open(backend: Backend) {
    use schema::schema::credentials::dsl::*;
    let app = spawn_app(&backend).await;
    app.put_credentials("acme", &json!({"application_id": "a", "shared_secret": "acme-secret-123456", "refresh_token": "acme-token-123456"})).await;
    app.put_credentials("beta", &json!({"application_id": "b", "shared_secret": "beta-secret-123456", "refresh_token": "beta-token-123456"})).await;
    let db = app.database();
    let mut conn = db.get().unwrap();
    let (s, r, k): (Option<Vec<u8>>, Option<Vec<u8>>, Option<String>) = credentials
        .find("acme")
        .select((shared_secret, refresh_token, key_id))
        .first(&mut *conn)
        .unwrap();
    diesel::update(credentials.find("beta"))
        .set((shared_secret.eq(s), refresh_token.eq(r), key_id.eq(k)))
        .execute(&mut *conn)
        .unwrap();

    let beta = admin(&["beta"]);
    let res = app
        .client
        .get(app.url("/api/v1/companies/beta/credentials"))
        .bearer_auth(&beta)
        .send()
        .await
        .unwrap();
    let body = assert_problem(res, 409, "credentials_unreadable").await;
    assert!(!body.to_string().contains("acme-secret"));
    let res = app
        .patch_credentials("beta", &json!({"profile_id": 1}))
        .await;
    assert_problem(res, 409, "credentials_unreadable").await;
    // Entering the secrets again repairs the row.
    let res = app.put_credentials("beta", &json!({"application_id": "b", "shared_secret": "beta-secret-654321", "refresh_token": "beta-token-654321"})).await;
    assert_eq!(res.status(), 200);
    let (_, body): (u16, Value) = app
        .get_json("/api/v1/companies/beta/credentials", &beta)
        .await;
    assert_eq!(body["shared_secret"]["last4"], "4321");
}

async fn unknown_key_id_stops_the_start(backend: Backend) {
    let app = spawn_app(&backend).await;
    app.put_credentials("acme", &json!({"shared_secret": "some-secret-value"}))
        .await;
    let other_keys = schema::KeyRing::generate_spec("other");
    let config = config_for(app.data_dir.path(), &app.database_url, &other_keys, &[]);
    let err = match ca_connector::Application::build(config).await {
        Ok(_) => panic!("started with a key ring that lacks the database's key"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("'test1'"), "names the missing key id: {err}");
    assert!(!err.contains(other_keys_b64(&other_keys)), "{err}");
}

fn other_keys_b64(spec: &secrecy::SecretString) -> &str {
    use secrecy::ExposeSecret;
    spec.expose_secret().split(':').nth(1).unwrap()
}

//! `ca-connector rotate-keys` on 10,000 companies: interrupted, resumed, with the server writing
//! at the same time, and every value read back under the new key alone.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use schema::credentials;
use schema::{CompanyId, Database, KeyRing};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

use crate::helpers::seed::Seeded;
use crate::helpers::{spawn_app_with, AppOptions, Backend};
use crate::on_both_backends;

on_both_backends!(
    rotate_keys_reseals_ten_thousand_companies,
    rotate_keys_reseals_web_hook_secrets_drops_cached_tokens_and_reports_unreadable_rows,
);

const COMPANIES: usize = 10_000;

fn company(i: usize) -> String {
    format!("c{i:05}")
}

fn seed(url: &str, keys: &KeyRing) {
    let db = Database::connect(url, 1).unwrap();
    db.migrate().unwrap();
    let companies: Vec<Seeded> = (0..COMPANIES)
        .map(|i| Seeded {
            company: company(i),
            application_id: format!("app-{i}"),
            shared_secret: format!("secret-{i:05}-abcdefgh"),
            refresh_token: format!("refresh-{i:05}-abcdefgh"),
            // Every tenth company also has SOAP Credentials: their secrets are re-sealed too.
            developer_key: soap_value(i, "devkey").map(|s| s.expose_secret().to_string()),
            password: soap_value(i, "password").map(|s| s.expose_secret().to_string()),
        })
        .collect();
    crate::helpers::seed::seed(&mut db.get().unwrap(), keys, &companies);
}

fn soap_value(i: usize, what: &str) -> Option<SecretString> {
    i.is_multiple_of(10)
        .then(|| SecretString::from(format!("{what}-{i:05}-abcdefgh")))
}

fn count_under(url: &str, key: &str) -> i64 {
    use diesel::prelude::*;
    use schema::schema::credentials::dsl;
    let db = Database::connect(url, 1).unwrap();
    let mut conn = db.get().unwrap();
    dsl::credentials
        .filter(dsl::key_id.eq(key))
        .count()
        .get_result(&mut *conn)
        .unwrap()
}

fn rotate(
    url: &str,
    spec: &SecretString,
    dir: &std::path::Path,
    batch_size: &str,
) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_ca-connector"))
        .args([
            "rotate-keys",
            "--batch-size",
            batch_size,
            "--log-format",
            "json",
            "--database-url",
            url,
        ])
        .arg("--data-dir")
        .arg(dir)
        .env("CA_CONNECTOR_ENCRYPTION_KEYS", spec.expose_secret())
        .env("CA_CONNECTOR_JWT_SECRET", crate::helpers::JWT_SECRET)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

async fn rotate_keys_reseals_ten_thousand_companies(backend: Backend) {
    let dir = tempfile::TempDir::new().unwrap();
    let url = backend.fresh_database(dir.path());
    let old = KeyRing::generate_spec("old");
    let new = KeyRing::generate_spec("new");
    let both = SecretString::from(format!("{},{}", new.expose_secret(), old.expose_secret()));
    let seed_url = url.clone();
    let old_ring = KeyRing::parse(&old).unwrap();
    tokio::task::spawn_blocking(move || seed(&seed_url, &old_ring))
        .await
        .unwrap();
    assert_eq!(count_under(&url, "old"), COMPANIES as i64);

    // The server runs with the new key first, as the operations guide says, during the rotation.
    let app = spawn_app_with(
        &backend,
        AppOptions {
            database_url: Some(url.clone()),
            keys_spec: Some(both.clone()),
            ..Default::default()
        },
    )
    .await;

    // First run: interrupted with SIGKILL part-way.
    let mut first = rotate(&url, &both, dir.path(), "25");
    let started = Instant::now();
    loop {
        let done = count_under(&url, "new");
        if done > 0 {
            break;
        }
        assert!(
            first.try_wait().unwrap().is_none(),
            "rotation ended before it could be interrupted"
        );
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "rotation never started"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    first.kill().unwrap();
    first.wait().unwrap();
    let after_kill = count_under(&url, "new");
    assert!(
        after_kill > 0 && after_kill < COMPANIES as i64,
        "interrupted part-way: {after_kill}"
    );

    // Second run resumes while the server saves new values for some companies: rounds of saves
    // until the rotation ends, each with new values (a save of the same values writes nothing),
    // and at least one round must fall wholly inside the rotation.
    // Small batches: the rotation takes long enough for saves to land inside it (on
    // PostgreSQL, where a transaction costs more, 25 a batch is enough).
    let batch = match backend {
        Backend::Sqlite => "5",
        Backend::Postgres(_) => "25",
    };
    let mut second = rotate(&url, &both, dir.path(), batch);
    let mut latest: std::collections::HashMap<usize, String> = Default::default();
    let (mut overlapping, mut saves) = (0, 0);
    for (round, i) in (0..).flat_map(|r| (0..COMPANIES).step_by(500).map(move |i| (r, i))) {
        let running_before = second.try_wait().unwrap().is_none();
        let rotated_before = count_under(&url, "new");
        let secret = format!("changed-{round}-{i:05}-abcdefgh");
        let res = app
            .put_credentials(&company(i), &json!({"application_id": format!("app-{i}"), "shared_secret": secret, "refresh_token": format!("refresh-{i:05}-abcdefgh")}))
            .await;
        assert_eq!(res.status(), 200);
        latest.insert(i, secret);
        saves += 1;
        let running_after = second.try_wait().unwrap().is_none();
        if running_before && running_after && rotated_before < COMPANIES as i64 {
            overlapping += 1;
        }
        if !running_after || saves >= 5000 {
            break;
        }
    }
    let round = saves;
    assert!(
        overlapping >= 1,
        "no save overlapped the rotation ({round} saves)"
    );
    let out =
        tokio::task::spawn_blocking(move || crate::cli::finish_within(second, crate::cli::LIMIT))
            .await
            .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("re-sealed") && stderr.contains("companies/s"),
        "{stderr}"
    );

    // Every value opens with the new key alone and is the latest one saved.
    let new_only = KeyRing::parse(&new).unwrap();
    let check_url = url.clone();
    tokio::task::spawn_blocking(move || {
        let db = Database::connect(&check_url, 1).unwrap();
        let mut conn = db.get().unwrap();
        assert_eq!(
            schema::keys::count_to_rotate(&mut conn, &new_only).unwrap(),
            0
        );
        for i in 0..COMPANIES {
            let c = credentials::load(
                &mut conn,
                &new_only,
                &CompanyId::parse(&company(i)).unwrap(),
            )
            .unwrap()
            .unwrap();
            let expected = latest
                .get(&i)
                .cloned()
                .unwrap_or_else(|| format!("secret-{i:05}-abcdefgh"));
            assert_eq!(c.values.shared_secret.unwrap().expose_secret(), expected);
            assert_eq!(
                c.values.refresh_token.unwrap().expose_secret(),
                format!("refresh-{i:05}-abcdefgh")
            );
            // A PUT by the server replaced every field, the SOAP values with nothing.
            let soap = |what| soap_value(i, what).filter(|_| !latest.contains_key(&i));
            let open = |v: Option<SecretString>| v.map(|s| s.expose_secret().to_string());
            assert_eq!(open(c.values.developer_key), open(soap("devkey")), "{i}");
            assert_eq!(open(c.values.password), open(soap("password")), "{i}");
        }
    })
    .await
    .unwrap();
    assert!(
        !stderr.contains("secret-0"),
        "no secret in the command's output"
    );
}

/// What `rotate-keys` does beside the credentials: web-hook secrets re-sealed, cached access
/// tokens under the old key dropped, and a row that does not open reported with a non-zero exit.
async fn rotate_keys_reseals_web_hook_secrets_drops_cached_tokens_and_reports_unreadable_rows(
    backend: Backend,
) {
    use diesel::prelude::*;
    use schema::schema::{access_tokens, credentials as creds, webhooks};
    let dir = tempfile::TempDir::new().unwrap();
    let sim = crate::connection::sim(0);
    let old = KeyRing::generate_spec("old");
    let new = KeyRing::generate_spec("new");
    let app = spawn_app_with(
        &backend,
        AppOptions {
            keys_spec: Some(old.clone()),
            extra_args: vec!["--channeladvisor-url".into(), sim.url()],
            ..Default::default()
        },
    )
    .await;
    let valid = crate::connection::valid();
    app.put_credentials("acme", &valid).await;
    assert_eq!(crate::tokens::issue(&app, "acme", "").await.status(), 200);
    app.put_credentials("broken", &valid).await;
    let hook = crate::webhooks::subscribe(
        &app,
        json!({"url": "https://erp.example/hook", "companies": ["acme"]}),
        &["acme"],
    )
    .await;
    let db = app.database();
    let mut conn = db.get().unwrap();
    // The cached token is written just after its caller has it.
    let started = Instant::now();
    while access_tokens::table
        .count()
        .get_result::<i64>(&mut *conn)
        .unwrap()
        == 0
    {
        assert!(started.elapsed() < Duration::from_secs(5), "token cached");
        std::thread::sleep(Duration::from_millis(20));
    }
    // One company's sealed secret altered in place: it no longer opens.
    let mut sealed: Vec<u8> = creds::table
        .find("broken")
        .select(creds::shared_secret)
        .first::<Option<Vec<u8>>>(&mut *conn)
        .unwrap()
        .unwrap();
    let last = sealed.len() - 1;
    sealed[last] ^= 0xff;
    diesel::update(creds::table.find("broken"))
        .set(creds::shared_secret.eq(Some(sealed)))
        .execute(&mut *conn)
        .unwrap();

    let both = SecretString::from(format!("{},{}", new.expose_secret(), old.expose_secret()));
    let out = crate::cli::finish_within(
        rotate(&app.database_url, &both, dir.path(), "25"),
        crate::cli::LIMIT,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "unreadable rows make it fail: {stderr}"
    );
    assert!(
        stderr.contains("company 'broken' does not open")
            && stderr.contains("1 companies could not be re-sealed"),
        "{stderr}"
    );
    assert!(
        stderr.contains("dropped 1 cached access tokens"),
        "{stderr}"
    );
    assert!(stderr.contains("re-sealed 1 web-hook secrets"), "{stderr}");
    let hook_key: String = webhooks::table
        .find(hook["id"].as_str().unwrap())
        .select(webhooks::key_id)
        .first(&mut *conn)
        .unwrap();
    assert_eq!(hook_key, "new");
    let tokens_left: i64 = access_tokens::table.count().get_result(&mut *conn).unwrap();
    assert_eq!(
        tokens_left, 0,
        "cached tokens under the old key are dropped"
    );
    let keys: Vec<(String, Option<String>)> = creds::table
        .select((creds::company, creds::key_id))
        .order(creds::company.asc())
        .load(&mut *conn)
        .unwrap();
    assert_eq!(
        keys,
        vec![
            ("acme".to_string(), Some("new".to_string())),
            ("broken".to_string(), Some("old".to_string())),
        ],
        "the unreadable row is left as it was"
    );
    // The re-sealed web-hook secret opens under the new key alone, and is the one shown at
    // subscription.
    let id = hook["id"].as_str().unwrap();
    let sealed: Vec<u8> = webhooks::table
        .find(id)
        .select(webhooks::secret)
        .first(&mut *conn)
        .unwrap();
    let opened = KeyRing::parse(&new)
        .unwrap()
        .open(id, schema::webhooks::WEBHOOK_SECRET, "new", &sealed)
        .unwrap();
    assert_eq!(opened.expose_secret(), hook["secret"].as_str().unwrap());
}

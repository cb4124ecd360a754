pub mod proxy;
pub mod seed;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use ca_connector::commands::Cli;
use ca_connector::http::auth::{mint_hs256, Claims};
use ca_connector::service::settings::LogFormat;
use ca_connector::service::telemetry;
use ca_connector::{Application, Config};
use clap::Parser;
use diesel::{Connection, PgConnection, RunQueryDsl};
use schema::KeyRing;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use tempfile::TempDir;

pub const JWT_SECRET: &str = "test-jwt-secret-0123456789-abcdefghijklmnopqrstuvwxyz";
pub const ALL_SCOPES: &str =
    "credentials:read credentials:write connection:read connection:test token:issue webhooks:manage";

/// Which database a test runs on.
#[derive(Clone, Debug)]
pub enum Backend {
    Sqlite,
    /// The admin URL of a PostgreSQL server; each app gets a fresh database on it.
    Postgres(String),
}

impl Backend {
    /// PostgreSQL when TEST_DATABASE_URL is set. Without it the test is skipped where a person
    /// sees it (a count at the end of the run) — or, in CI (`CI=true`) or with
    /// `REQUIRE_POSTGRES=1`, fails: a green CI run must have run it.
    pub fn postgres(test: &str) -> Option<Backend> {
        match std::env::var("TEST_DATABASE_URL") {
            Ok(url) if !url.is_empty() => Some(Backend::Postgres(url)),
            _ => {
                skip(test, "PostgreSQL", "TEST_DATABASE_URL", "REQUIRE_POSTGRES");
                None
            }
        }
    }

    /// A fresh, empty database URL for one app (a new file or a new PostgreSQL database).
    pub fn fresh_database(&self, dir: &std::path::Path) -> String {
        match self {
            Backend::Sqlite => format!("sqlite://{}", dir.join("test.db").display()),
            Backend::Postgres(admin) => {
                let name = format!("t_{}", uuid::Uuid::new_v4().simple());
                schema::pool::init_tls();
                let mut conn =
                    PgConnection::establish(admin).expect("connect to TEST_DATABASE_URL");
                diesel::sql_query(format!("CREATE DATABASE {name}"))
                    .execute(&mut conn)
                    .expect("create test database");
                let mut url = url::Url::parse(admin).expect("TEST_DATABASE_URL is a URL");
                url.set_path(&format!("/{name}"));
                url.to_string()
            }
        }
    }
}

/// Skips a test that needs an outside part (`what`, configured by `variable`), or fails it when
/// the run requires that part: in CI (`CI=true`) or with `require=1`.
pub fn skip(test: &str, what: &str, variable: &str, require: &str) {
    let set = |name: &str| {
        std::env::var(name)
            .map(|v| !v.is_empty() && v != "0" && v != "false")
            .unwrap_or(false)
    };
    if set("CI") || set(require) {
        panic!("{test} needs {what}, and this run requires it (CI or {require} is set): set {variable}");
    }
    skipped::count(what, variable);
}

/// Skipped tests, counted and reported in one line when the test process exits: a line printed
/// by a passing test is captured and never seen.
mod skipped {
    use std::collections::BTreeMap;
    use std::sync::{Mutex, Once};

    static COUNTS: Mutex<BTreeMap<(String, String), usize>> = Mutex::new(BTreeMap::new());
    static REPORT: Once = Once::new();

    pub fn count(what: &str, variable: &str) {
        *COUNTS
            .lock()
            .unwrap()
            .entry((what.to_string(), variable.to_string()))
            .or_default() += 1;
        REPORT.call_once(|| {
            // SAFETY: registers a plain function without arguments to run at process exit.
            unsafe {
                libc::atexit(report);
            }
        });
    }

    extern "C" fn report() {
        if let Ok(counts) = COUNTS.lock() {
            for ((what, variable), n) in counts.iter() {
                eprintln!(
                    "\n{n} {what} tests skipped: set {variable} to run them (CI requires them)"
                );
            }
        }
    }
}

/// Generates `mod sqlite` and `mod postgres` with one test per scenario, so every storage
/// scenario runs on both backends (PostgreSQL ones skip without TEST_DATABASE_URL).
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::helpers::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if let Some(backend) = $crate::helpers::Backend::postgres(stringify!($name)) {
                        super::$name(backend).await
                    }
                }
            )*
        }
    };
}

/// Every log line written by any app in this test process, for the secret-leak checks.
static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();

#[derive(Clone)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn init_logs() {
    let buffer = LOGS
        .get_or_init(|| Arc::new(Mutex::new(Vec::new())))
        .clone();
    let filter = "info,ca_connector=trace,schema=trace,connector=trace,web_hooks=trace";
    telemetry::init(filter, LogFormat::Json, move || Capture(buffer.clone()));
}

pub fn captured_logs() -> String {
    let buffer = LOGS.get().expect("logs initialised");
    String::from_utf8_lossy(&buffer.lock().unwrap()).into_owned()
}

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub database_url: String,
    pub keys_spec: SecretString,
    pub data_dir: TempDir,
    pub backend: Backend,
    /// Set for an instance that runs as a process of its own (`second_instance`).
    pub process: Option<Process>,
}

#[derive(Default)]
pub struct AppOptions {
    pub keys_spec: Option<SecretString>,
    pub database_url: Option<String>,
    pub extra_args: Vec<String>,
}

pub async fn spawn_app(backend: &Backend) -> TestApp {
    spawn_app_with(backend, AppOptions::default()).await
}

pub fn settings_args(
    data_dir: &std::path::Path,
    database_url: &str,
    keys: &SecretString,
    extra: &[String],
) -> Vec<String> {
    // A test that must know its port before start (a public URL that names it) passes --listen.
    let listen = if extra.iter().any(|a| a == "--listen") {
        vec![]
    } else {
        vec!["--listen".to_string(), "127.0.0.1:0".to_string()]
    };
    let mut args: Vec<String> = vec!["ca-connector".into()];
    args.extend(listen);
    args.extend([
        "--data-dir".into(),
        data_dir.display().to_string(),
        "--database-url".into(),
        database_url.into(),
        "--jwt-secret".into(),
        JWT_SECRET.into(),
        "--encryption-keys".into(),
        keys.expose_secret().to_string(),
    ]);
    args.extend(extra.iter().cloned());
    args
}

pub fn config_for(
    data_dir: &std::path::Path,
    database_url: &str,
    keys: &SecretString,
    extra: &[String],
) -> Config {
    let cli = Cli::try_parse_from(settings_args(data_dir, database_url, keys, extra))
        .expect("valid test settings");
    Config::resolve(&cli.settings).expect("config resolves")
}

pub async fn spawn_app_with(backend: &Backend, options: AppOptions) -> TestApp {
    init_logs();
    let data_dir = TempDir::new().unwrap();
    let database_url = options
        .database_url
        .unwrap_or_else(|| backend.fresh_database(data_dir.path()));
    let keys_spec = options
        .keys_spec
        .unwrap_or_else(|| KeyRing::generate_spec("test1"));
    let config = config_for(
        data_dir.path(),
        &database_url,
        &keys_spec,
        &options.extra_args,
    );
    let app = Application::build(config).await.expect("app starts");
    let base = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    TestApp {
        base,
        client: reqwest::Client::new(),
        database_url,
        keys_spec,
        data_dir,
        backend: backend.clone(),
        process: None,
    }
}

pub fn token(companies: &[&str], scope: &str) -> String {
    token_for("admin@test", companies, scope)
}

pub fn token_for(sub: &str, companies: &[&str], scope: &str) -> String {
    token_with(sub, companies, scope, 600)
}

/// A token that expires `seconds` from now.
pub fn token_expiring_in(companies: &[&str], scope: &str, seconds: i64) -> String {
    token_with("admin@test", companies, scope, seconds)
}

fn token_with(sub: &str, companies: &[&str], scope: &str, lifetime: i64) -> String {
    let now = chrono::Utc::now().timestamp();
    mint_hs256(
        &SecretString::from(JWT_SECRET.to_string()),
        &Claims {
            sub: sub.into(),
            exp: now + lifetime,
            aud: "ca-connector".into(),
            iss: None,
            nbf: None,
            iat: now,
            companies: companies.iter().map(|c| c.to_string()).collect(),
            scope: Some(scope.into()),
        },
    )
    .unwrap()
}

/// A token for every scope on the given companies.
pub fn admin(companies: &[&str]) -> String {
    token(companies, ALL_SCOPES)
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn put_credentials(&self, company: &str, body: &Value) -> reqwest::Response {
        self.client
            .put(self.url(&format!("/api/v1/companies/{company}/credentials")))
            .bearer_auth(admin(&[company]))
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn patch_credentials(&self, company: &str, body: &Value) -> reqwest::Response {
        self.client
            .patch(self.url(&format!("/api/v1/companies/{company}/credentials")))
            .bearer_auth(admin(&[company]))
            .header("content-type", "application/merge-patch+json")
            .body(body.to_string())
            .send()
            .await
            .unwrap()
    }

    pub async fn delete_credentials(&self, company: &str) -> reqwest::Response {
        self.client
            .delete(self.url(&format!("/api/v1/companies/{company}/credentials")))
            .bearer_auth(admin(&[company]))
            .send()
            .await
            .unwrap()
    }

    pub async fn get_json(&self, path: &str, token: &str) -> (u16, Value) {
        let res = self
            .client
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    /// Any call as company's admin, with an optional JSON body: the status and the body.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path_in_company: &str,
        company: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let url = self.url(&format!("/api/v1/companies/{company}/{path_in_company}"));
        let mut req = self
            .client
            .request(method, url)
            .bearer_auth(admin(&[company]));
        if let Some(body) = body {
            req = req.json(&body);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    /// A job's access token for company (the answer must be 200).
    pub async fn token(&self, company: &str) -> String {
        let (status, body) = self
            .call(reqwest::Method::POST, "access-token", company, None)
            .await;
        assert_eq!(status, 200, "{body}");
        body["access_token"].as_str().unwrap().to_string()
    }

    /// The connection's state as the status route shows it.
    pub async fn state(&self, company: &str) -> String {
        let (status, body) = self
            .call(reqwest::Method::GET, "connection", company, None)
            .await;
        assert_eq!(status, 200, "{body}");
        body["state"].as_str().unwrap().to_string()
    }

    /// The Prometheus text of `/metrics`.
    pub async fn metrics(&self) -> String {
        let res = self.client.get(self.url("/metrics")).send().await.unwrap();
        res.text().await.unwrap()
    }

    pub fn database(&self) -> schema::Database {
        schema::Database::connect(&self.database_url, 4).unwrap()
    }
}

/// Asserts a problem+json answer with the given status and code; returns the body.
pub async fn assert_problem(res: reqwest::Response, status: u16, code: &str) -> Value {
    assert_eq!(res.status().as_u16(), status, "status for expected {code}");
    let ct = res
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    assert!(
        ct.starts_with("application/problem+json"),
        "content-type {ct} for {code}"
    );
    assert!(res.headers().contains_key("x-request-id"));
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["status"], status);
    assert!(body["type"].is_string() && body["title"].is_string() && body["detail"].is_string());
    body
}

/// Another instance of the service on the same database and keys as `first`: the one way tests
/// start one. It is a `ca-connector serve` process of its own, so nothing process-wide (memory,
/// wake-ups, caches) is shared with `first`: only what crosses real instances crosses these.
/// Its log lines join `captured_logs()`, so the secret checks see them too.
pub async fn second_instance(first: &TestApp, extra_args: &[&str]) -> TestApp {
    let data_dir = TempDir::new().unwrap();
    let mut cmd = crate::cli::bare(data_dir.path());
    cmd.env("CA_CONNECTOR_DATABASE_URL", &first.database_url)
        .env(
            "CA_CONNECTOR_ENCRYPTION_KEYS",
            first.keys_spec.expose_secret(),
        )
        .env("CA_CONNECTOR_JWT_SECRET", JWT_SECRET)
        .env("CA_CONNECTOR_DATA_DIR", data_dir.path())
        .arg("serve")
        .args(extra_args);
    let (child, port, later, early) = crate::cli::start(cmd);
    init_logs();
    let buffer = LOGS.get().expect("logs initialised").clone();
    let record = move |line: String| {
        let mut logs = buffer.lock().unwrap();
        logs.extend_from_slice(line.as_bytes());
        logs.push(b'\n');
    };
    early.into_iter().for_each(&record);
    std::thread::spawn(move || later.into_iter().for_each(record));
    TestApp {
        base: format!("http://127.0.0.1:{port}"),
        client: reqwest::Client::new(),
        database_url: first.database_url.clone(),
        keys_spec: first.keys_spec.clone(),
        data_dir,
        backend: first.backend.clone(),
        process: Some(Process(child)),
    }
}

/// A service process a test started; killed when the test lets go of it.
pub struct Process(std::process::Child);

impl Process {
    /// Its resident memory, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.0.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A loopback port free a moment ago, for an app whose settings must name its own port before it
/// starts (a public URL).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The one way tests wait for something another task or process does: reads every 25 ms until
/// `done` holds on what was read or `within` has passed, and returns the last read, so the
/// caller's assertion shows what was there instead of a bare timeout.
pub async fn poll_until<T, F, Fut>(
    within: std::time::Duration,
    mut read: F,
    done: impl Fn(&T) -> bool,
) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let started = std::time::Instant::now();
    loop {
        let value = read().await;
        if done(&value) || started.elapsed() > within {
            return value;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
}

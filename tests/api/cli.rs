//! The binary itself: zero set-up start, settings, commands, graceful shutdown.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_ca-connector");

/// A command with none of the caller's CA_CONNECTOR_* settings.
pub fn bare(dir: &std::path::Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(dir);
    for (k, _) in std::env::vars() {
        if k.starts_with("CA_CONNECTOR_") {
            cmd.env_remove(k);
        }
    }
    cmd
}

/// How long any command of a test may run: a hang fails the test instead of blocking the run.
pub const LIMIT: Duration = Duration::from_secs(120);

/// `Command::output` with a deadline.
pub trait OutputWithin {
    fn output_within(&mut self, limit: Duration) -> std::process::Output;
}

impl OutputWithin for Command {
    fn output_within(&mut self, limit: Duration) -> std::process::Output {
        let child = self
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        finish_within(child, limit)
    }
}

/// Waits for a child with piped output (read meanwhile, so a full pipe cannot stall it); kills
/// it and fails past `limit`.
pub fn finish_within(mut child: Child, limit: Duration) -> std::process::Output {
    fn drain(pipe: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<Vec<u8>> {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            bytes
        })
    }
    let (stdout, stderr) = (drain(child.stdout.take()), drain(child.stderr.take()));
    let deadline = std::time::Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the command did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    std::process::Output {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}

/// The server's log after its "serving" line, read by a thread of its own so a full pipe never
/// stalls the server.
pub type LaterLines = std::sync::mpsc::Receiver<String>;

/// Starts `serve` and returns it with its port, read from the "serving" log line, and the lines
/// before it. Bounded: a server that neither serves nor exits within 60 s fails the test.
pub fn start(mut cmd: Command) -> (Child, u16, LaterLines, Vec<String>) {
    cmd.env("CA_CONNECTOR_LISTEN", "127.0.0.1:0")
        .env("CA_CONNECTOR_LOG_FORMAT", "json")
        .stderr(Stdio::piped())
        .stdout(Stdio::null());
    #[allow(clippy::zombie_processes)] // every test kills and waits for it
    let mut child = cmd.spawn().unwrap();
    let reader = BufReader::new(child.stderr.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // Read to the end even once nobody listens: the server must never block on stderr.
        for line in reader.lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut lines = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let line = match rx.recv_timeout(left) {
            Ok(line) => line,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                panic!("serve did not start within 60 s: {lines:?}");
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                panic!("serve exited: {lines:?}")
            }
        };
        let v: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
        lines.push(line);
        if v["fields"]["message"] == "serving" {
            return (
                child,
                v["fields"]["port"].as_u64().unwrap() as u16,
                rx,
                lines,
            );
        }
    }
}

fn get(port: u16, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    (out[9..12].parse().unwrap(), out)
}

#[test]
fn serve_in_an_empty_folder_needs_no_set_up() {
    let dir = tempfile::TempDir::new().unwrap();
    let (mut child, port, _reader, lines) = start({
        let mut c = bare(dir.path());
        c.arg("serve");
        c
    });
    let data = dir.path().join("data");
    assert!(data.join("ca-connector.db").exists());
    for secret in [
        "jwt-secret",
        "encryption-keys",
        "ca-connector.db",
        "ca-connector.db-wal",
    ] {
        let mode = std::fs::metadata(data.join(secret))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{secret}");
    }
    let warnings: Vec<&String> = lines.iter().filter(|l| l.contains("\"WARN\"")).collect();
    assert_eq!(
        warnings.len(),
        1,
        "one warning about generated secrets: {lines:?}"
    );
    assert!(warnings[0].contains("generated"));
    assert_eq!(get(port, "/readyz").0, 200);

    // `ca-connector token` signs with the generated secret, so the API can be called at once.
    let out = bare(dir.path())
        .args(["token", "--company", "acme", "--scope", "connection:read"])
        .output_within(LIMIT);
    assert!(out.status.success());
    let jwt = String::from_utf8(out.stdout).unwrap();
    assert_eq!(jwt.trim().split('.').count(), 3);
    assert_eq!(jwt.lines().count(), 1, "the JWT alone on one line");
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(s, "GET /api/v1/companies HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n", jwt.trim()).unwrap();
    let mut res = String::new();
    s.read_to_string(&mut res).unwrap();
    assert!(res.starts_with("HTTP/1.1 200"), "{res}");
    assert!(res.contains("not_configured"));
    child.kill().unwrap();
    child.wait().unwrap();

    // A second start reuses the secrets instead of generating new ones.
    let before = std::fs::read(data.join("jwt-secret")).unwrap();
    let (mut again, _, _r, lines) = start(bare(dir.path()));
    assert_eq!(std::fs::read(data.join("jwt-secret")).unwrap(), before);
    assert!(lines.iter().any(|l| l.contains("read back")));
    again.kill().unwrap();
    again.wait().unwrap();
}

/// A secret planted in a folder above is never adopted: outside a checkout the data dir is
/// `./data`, so a token forged with the planted secret is refused.
#[test]
fn a_secret_planted_in_a_parent_folder_is_not_adopted() {
    let dir = tempfile::TempDir::new().unwrap();
    let planted = "planted-jwt-secret-planted-jwt-secret-0123456789";
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    std::fs::write(dir.path().join("data/jwt-secret"), planted).unwrap();
    let run = dir.path().join("ops/run");
    std::fs::create_dir_all(&run).unwrap();
    let (mut child, port, _reader, _lines) = start({
        let mut c = bare(&run);
        c.arg("serve");
        c
    });
    assert!(run.join("data/jwt-secret").is_file(), "its own ./data");
    let now = chrono::Utc::now().timestamp();
    let forged = ca_connector::http::auth::mint_hs256(
        &secrecy::SecretString::from(planted.to_string()),
        &ca_connector::http::auth::Claims {
            sub: "intruder".into(),
            exp: now + 600,
            aud: "ca-connector".into(),
            iss: None,
            nbf: None,
            iat: now,
            companies: vec!["*".into()],
            scope: Some("connection:read".into()),
        },
    )
    .unwrap();
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(s, "GET /api/v1/companies HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {forged}\r\nConnection: close\r\n\r\n").unwrap();
    let mut res = String::new();
    s.read_to_string(&mut res).unwrap();
    assert!(res.starts_with("HTTP/1.1 401"), "{res}");
    child.kill().unwrap();
    child.wait().unwrap();
}

/// In a checkout, a secret file others may read is refused at start, naming the file and the fix.
#[test]
fn a_secret_file_others_may_read_stops_the_start_with_the_fix() {
    let dir = tempfile::TempDir::new().unwrap();
    std::fs::write(
        dir.path().join("Cargo.toml"),
        "[package]\nname = \"ca-connector\"\n",
    )
    .unwrap();
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    let secret = dir.path().join("data/jwt-secret");
    std::fs::write(
        &secret,
        "readable-jwt-secret-readable-jwt-secret-0123456789",
    )
    .unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
    let sub = dir.path().join("docs");
    std::fs::create_dir_all(&sub).unwrap();
    let out = bare(&sub)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .output_within(LIMIT);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("chmod 600 {}", secret.display())),
        "{err}"
    );
    assert!(!err.contains("readable-jwt-secret"), "{err}");
}

#[test]
fn postgres_without_secrets_is_a_start_up_error_naming_the_setting() {
    let dir = tempfile::TempDir::new().unwrap();
    let out = bare(dir.path())
        .args([
            "serve",
            "--database-url",
            "postgres://nobody@127.0.0.1:1/none",
        ])
        .output_within(LIMIT);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("CA_CONNECTOR_ENCRYPTION_KEYS"), "{err}");
    assert!(
        !dir.path().join("data").exists(),
        "nothing generated for PostgreSQL"
    );
    let out = bare(dir.path())
        .args([
            "check-config",
            "--database-url",
            "postgres://nobody@127.0.0.1:1/none",
        ])
        .env("CA_CONNECTOR_ENCRYPTION_KEYS", schema_spec())
        .output_within(LIMIT);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("CA_CONNECTOR_JWT_SECRET"),
        "{err}"
    );
}

fn schema_spec() -> String {
    use secrecy::ExposeSecret;
    schema::KeyRing::generate_spec("k1")
        .expose_secret()
        .to_string()
}

#[test]
fn help_lists_every_setting_with_its_variable() {
    for args in [vec!["--help"], vec!["serve", "--help"]] {
        let out = Command::new(BIN).args(&args).output_within(LIMIT);
        let help = String::from_utf8(out.stdout).unwrap();
        for name in [
            "listen",
            "data-dir",
            "database-url",
            "channeladvisor-url",
            "encryption-keys",
            "jwt-secret",
            "jwt-public-key",
            "jwt-audience",
            "jwt-issuer",
            "upstream-timeout-secs",
            "upstream-concurrency",
            "token-refresh-margin-secs",
            "health-check-interval-secs",
            "webhook-retry-schedule",
            "webhook-allow-private",
            "webhook-allow-http",
            "channeladvisor-allow-http",
            "test-history-retention-days",
            "audit-retention-days",
            "delivery-retention-days",
            "event-retention-hours",
            "public-url",
            "oauth-redirect-uri",
            "oauth-scope",
            "connect-return-origins",
            "admin-frame-ancestors",
            "log",
            "log-format",
        ] {
            assert!(help.contains(&format!("--{name}")), "--{name} in {args:?}");
            let var = format!("CA_CONNECTOR_{}", name.to_uppercase().replace('-', "_"));
            assert!(help.contains(&var), "{var} in {args:?}");
        }
    }
    let out = Command::new(BIN).arg("--help").output_within(LIMIT);
    let help = String::from_utf8(out.stdout).unwrap();
    for cmd in ["serve", "migrate", "rotate-keys", "token", "check-config"] {
        assert!(help.contains(cmd), "{cmd}");
    }
}

#[test]
fn migrate_and_check_config() {
    let dir = tempfile::TempDir::new().unwrap();
    let out = bare(dir.path()).arg("migrate").output_within(LIMIT);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let migrations = std::fs::read_dir(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/sqlite"),
    )
    .unwrap()
    .count();
    assert!(String::from_utf8_lossy(&out.stdout)
        .starts_with(&format!("{migrations} migrations applied")));
    let out = bare(dir.path()).arg("migrate").output_within(LIMIT);
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("0 migrations applied"));
    let out = bare(dir.path()).arg("check-config").output_within(LIMIT);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("configuration ok"),
        "{stdout}"
    );
    // Connect to ChannelAdvisor: what is missing, then what to register.
    assert!(
        stdout.contains("connect: off") && stdout.contains("--public-url"),
        "{stdout}"
    );
    let out = bare(dir.path())
        .args(["check-config", "--public-url", "https://ca.example"])
        .output_within(LIMIT);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("redirect URI https://ca.example/oauth/callback"),
        "{stdout}"
    );
    let out = bare(dir.path())
        .args(["check-config", "--public-url", "http://ca.example"])
        .output_within(LIMIT);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("--public-url"),
        "{stderr}"
    );
    let keys = std::fs::read_to_string(dir.path().join("data/encryption-keys")).unwrap();
    let key_b64 = keys.trim().split(':').nth(1).unwrap();
    assert!(!stdout.contains(key_b64), "no key material printed");
    let out = bare(dir.path())
        .args(["check-config", "--jwt-secret", "too-short"])
        .output_within(LIMIT);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--jwt-secret: must be at least 32 bytes")
    );
}

/// SIGTERM lets a request in flight finish: its body is still arriving when the signal comes.
#[test]
fn sigterm_finishes_requests_in_flight() {
    let dir = tempfile::TempDir::new().unwrap();
    let (child, port, _reader, _) = start(bare(dir.path()));
    let out = bare(dir.path())
        .args(["token", "--company", "acme"])
        .output_within(LIMIT);
    let jwt = String::from_utf8(out.stdout).unwrap();
    let body = br#"{"application_id": "app-during-shutdown"}"#;
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "PUT /api/v1/companies/acme/credentials HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        jwt.trim(),
        body.len()
    )
    .unwrap();
    s.write_all(&body[..10]).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    unsafe_kill(child.id(), "TERM");
    std::thread::sleep(Duration::from_millis(500));
    s.write_all(&body[10..]).unwrap();
    let mut res = String::new();
    s.read_to_string(&mut res).unwrap();
    assert!(res.starts_with("HTTP/1.1 201"), "{res}");
    let status = finish_within(child, Duration::from_secs(40)).status;
    assert!(status.success(), "clean exit after SIGTERM: {status:?}");
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "no longer listening"
    );
}

/// SIGTERM ends open live event streams at once instead of waiting out the shutdown timeout.
#[test]
fn sigterm_ends_live_event_streams() {
    let dir = tempfile::TempDir::new().unwrap();
    let (child, port, _reader, _) = start(bare(dir.path()));
    let out = bare(dir.path())
        .args(["token", "--company", "acme"])
        .output_within(LIMIT);
    let jwt = String::from_utf8(out.stdout).unwrap();
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "GET /api/v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nAccept: text/event-stream\r\n\r\n",
        jwt.trim()
    )
    .unwrap();
    let mut first = [0u8; 64];
    let n = s.read(&mut first).unwrap();
    assert!(
        String::from_utf8_lossy(&first[..n]).starts_with("HTTP/1.1 200"),
        "the stream opened"
    );
    let signalled = std::time::Instant::now();
    unsafe_kill(child.id(), "TERM");
    let status = finish_within(child, Duration::from_secs(40)).status;
    assert!(status.success(), "clean exit after SIGTERM: {status:?}");
    assert!(
        signalled.elapsed() < Duration::from_secs(10),
        "the open stream held the shutdown for {:?}",
        signalled.elapsed()
    );
}

fn unsafe_kill(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

//! A newcomer's first hour: every usual mistake gets a message that names its cure, and the two
//! slips found on the way (repeating versions, racing secret generation) stay fixed.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use crate::cli::{bare, start, OutputWithin};
use crate::helpers::{admin, assert_problem, spawn_app, spawn_app_with, AppOptions, Backend};

/// Runs a command to its end, bounded: a hang fails the test instead of blocking the run.
fn run(mut cmd: Command) -> (bool, String, String) {
    let out = cmd.output_within(crate::cli::LIMIT);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn with_args(dir: &std::path::Path, args: &[&str]) -> Command {
    let mut cmd = bare(dir);
    cmd.args(args);
    cmd
}

/// An authenticated GET against a server started by `start`, answered with its status line.
fn get_with(port: u16, path: &str, jwt: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
        jwt.trim()
    )
    .unwrap();
    let mut res = String::new();
    s.read_to_string(&mut res).unwrap();
    res
}

#[test]
fn commands_run_from_a_subfolder_use_the_same_data_dir() {
    let top = tempfile::TempDir::new().unwrap();
    // A checkout: the folder holding this project's Cargo.toml.
    std::fs::write(
        top.path().join("Cargo.toml"),
        "[package]\nname = \"ca-connector\"\n",
    )
    .unwrap();
    let (mut server, port, _r, lines) = start(bare(top.path()));
    let serving: Value = serde_json::from_str(lines.last().unwrap()).unwrap();
    // The start-up line says where it serves, on which database, against which ChannelAdvisor.
    let fields = &serving["fields"];
    assert_eq!(fields["address"], format!("127.0.0.1:{port}"));
    assert!(
        fields["database"]
            .as_str()
            .unwrap()
            .ends_with("data/ca-connector.db"),
        "{fields}"
    );
    assert_eq!(fields["channeladvisor"], "https://api.channeladvisor.com/");

    let docs = top.path().join("docs");
    std::fs::create_dir(&docs).unwrap();
    let (ok, jwt, err) = run(with_args(&docs, &["token", "--company", "acme"]));
    assert!(ok, "{err}");
    assert!(!docs.join("data").exists(), "no second data dir in docs/");
    let res = get_with(port, "/api/v1/companies", &jwt);
    assert!(res.starts_with("HTTP/1.1 200"), "{res}");
    // The data dir ignores itself, wherever it lands.
    let ignore = std::fs::read_to_string(top.path().join("data/.gitignore")).unwrap();
    assert!(ignore.lines().any(|l| l == "*"), "{ignore}");
    server.kill().unwrap();
    server.wait().unwrap();
}

#[test]
fn serve_and_token_started_at_once_agree_on_the_secret() {
    for _ in 0..3 {
        let dir = tempfile::TempDir::new().unwrap();
        let tokens: Vec<_> = (0..6)
            .map(|_| {
                with_args(dir.path(), &["token", "--company", "acme"])
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        let (mut server, port, _r, _) = start(bare(dir.path()));
        for child in tokens {
            let out = crate::cli::finish_within(child, crate::cli::LIMIT);
            let jwt = String::from_utf8(out.stdout).unwrap();
            assert!(
                out.status.success() && jwt.trim().split('.').count() == 3,
                "token printed '{jwt}': {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let res = get_with(port, "/api/v1/companies", &jwt);
            assert!(res.starts_with("HTTP/1.1 200"), "{res}");
        }
        server.kill().unwrap();
        server.wait().unwrap();
    }
}

#[test]
fn an_address_in_use_names_itself_and_the_setting_once() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let dir = tempfile::TempDir::new().unwrap();
    for format in ["text", "json"] {
        let (ok, _, err) = run(with_args(
            dir.path(),
            &["serve", "--listen", &address, "--log-format", format],
        ));
        assert!(!ok);
        let lines: Vec<&str> = err
            .lines()
            .filter(|l| l.contains("already in use"))
            .collect();
        assert_eq!(lines.len(), 1, "printed once ({format}): {err}");
        for words in [address.as_str(), "--listen", "CA_CONNECTOR_LISTEN"] {
            assert!(lines[0].contains(words), "{words} in {}", lines[0]);
        }
        if format == "json" {
            assert!(serde_json::from_str::<Value>(lines[0]).is_ok(), "{err}");
        }
    }
}

#[test]
fn check_config_refuses_what_serve_refuses() {
    let dir = tempfile::TempDir::new().unwrap();
    for command in ["check-config", "serve"] {
        let (ok, _, err) = run(with_args(
            dir.path(),
            &[command, "--listen", "8080", "--log-format", "text"],
        ));
        assert!(!ok, "{command} accepted --listen 8080");
        assert!(
            err.contains("--listen: '8080' is not an address") && err.contains("HOST:PORT"),
            "{command}: {err}"
        );
    }
    let (ok, out, err) = run(with_args(dir.path(), &["check-config", "--listen", ":0"]));
    assert!(ok && out.contains("listen: 127.0.0.1:0"), "{out}{err}");
    // ChannelAdvisor over plain http is only for a stand-in on this machine, or by a flag.
    let (ok, _, err) = run(with_args(
        dir.path(),
        &[
            "check-config",
            "--listen",
            ":0",
            "--channeladvisor-url",
            "http://ca.example.com",
        ],
    ));
    assert!(!ok && err.contains("--channeladvisor-allow-http"), "{err}");
    for allowed in [
        vec!["--channeladvisor-url", "http://127.0.0.1:9090"],
        vec![
            "--channeladvisor-url",
            "http://ca.example.com",
            "--channeladvisor-allow-http",
        ],
    ] {
        let mut args = vec!["check-config", "--listen", ":0"];
        args.extend(allowed.iter().copied());
        let (ok, _, err) = run(with_args(dir.path(), &args));
        assert!(ok, "{allowed:?}: {err}");
    }
    // A public key serve cannot use is refused by check-config as well.
    let pem = dir.path().join("not-a-key.pem");
    std::fs::write(
        &pem,
        "-----BEGIN PUBLIC KEY-----\nnonsense\n-----END PUBLIC KEY-----\n",
    )
    .unwrap();
    for command in ["check-config", "serve"] {
        let (ok, _, err) = run(with_args(
            dir.path(),
            &[
                command,
                "--listen",
                ":0",
                "--log-format",
                "text",
                "--jwt-public-key",
                pem.to_str().unwrap(),
            ],
        ));
        assert!(
            !ok && err.contains("--jwt-public-key: not a PEM"),
            "{command}: {err}"
        );
    }
}

#[test]
fn each_command_lists_its_own_options() {
    let dir = tempfile::TempDir::new().unwrap();
    let help = |command: &str| run(with_args(dir.path(), &[command, "--help"])).1;
    let token = help("token");
    for own in [
        "--company",
        "--scope",
        "--ttl",
        "--sub",
        "--data-dir",
        "--jwt-secret",
    ] {
        assert!(token.contains(own), "token --help lacks {own}");
    }
    let rotate = help("rotate-keys");
    for own in ["--batch-size", "--encryption-keys", "--database-url"] {
        assert!(rotate.contains(own), "rotate-keys --help lacks {own}");
    }
    for (name, text, foreign) in [
        (
            "token",
            &token,
            vec!["--listen", "--encryption-keys", "--webhook-allow-http"],
        ),
        (
            "rotate-keys",
            &rotate,
            vec!["--listen", "--jwt-secret", "--channeladvisor-url"],
        ),
    ] {
        for flag in foreign {
            assert!(!text.contains(flag), "{name} --help lists {flag}");
        }
    }
    // A setting put before the command would be ignored; it is refused instead.
    let (ok, _, err) = run(with_args(
        dir.path(),
        &["--data-dir", "elsewhere", "token", "--company", "acme"],
    ));
    assert!(
        !ok && err.contains("--data-dir must come after the command"),
        "{err}"
    );
    assert!(!dir.path().join("elsewhere").exists());
}

#[test]
fn a_damaged_sqlite_file_is_named_with_what_to_do() {
    let dir = tempfile::TempDir::new().unwrap();
    assert!(run(with_args(dir.path(), &["migrate"])).0);
    let db = dir.path().join("data/ca-connector.db");
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(dir.path().join(format!("data/ca-connector.db{suffix}")));
    }
    std::fs::write(&db, vec![b'x'; 8192]).unwrap();
    let (ok, _, err) = run(with_args(
        dir.path(),
        &["check-config", "--log-format", "text"],
    ));
    assert!(!ok);
    assert!(err.contains("data/ca-connector.db is damaged"), "{err}");
    assert!(
        err.contains("is damaged") && err.contains("restore it from a backup"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "one line: {err}");
}

#[test]
fn keys_without_their_database_are_a_loud_warning() {
    let dir = tempfile::TempDir::new().unwrap();
    assert!(run(with_args(dir.path(), &["migrate"])).0);
    for file in [
        "ca-connector.db",
        "ca-connector.db-wal",
        "ca-connector.db-shm",
    ] {
        let _ = std::fs::remove_file(dir.path().join("data").join(file));
    }
    let (mut server, _, _r, lines) = start(bare(dir.path()));
    let warning = lines
        .iter()
        .find(|l| l.contains("\"WARN\"") && l.contains("database is missing or empty"))
        .unwrap_or_else(|| panic!("no warning: {lines:?}"));
    assert!(
        warning.contains("ca-connector.db") && warning.contains("restore"),
        "{warning}"
    );
    server.kill().unwrap();
    server.wait().unwrap();
}

#[test]
fn damaged_secret_files_are_named_as_files() {
    let dir = tempfile::TempDir::new().unwrap();
    assert!(run(with_args(dir.path(), &["migrate"])).0);
    let keys = dir.path().join("data/encryption-keys");
    let good = std::fs::read_to_string(&keys).unwrap();
    std::fs::write(&keys, "dev1:not-base64!\n").unwrap();
    let (ok, _, err) = run(with_args(
        dir.path(),
        &["check-config", "--log-format", "text"],
    ));
    assert!(!ok);
    assert!(
        err.contains("data/encryption-keys: encryption keys: key 'dev1' is not valid base64"),
        "{err}"
    );
    assert!(
        !err.contains("--encryption-keys:"),
        "not a flag the user never set: {err}"
    );
    std::fs::write(&keys, good).unwrap();

    std::fs::write(dir.path().join("data/jwt-secret"), "short\n").unwrap();
    let (ok, _, err) = run(with_args(
        dir.path(),
        &["check-config", "--log-format", "text"],
    ));
    assert!(!ok);
    assert!(
        err.contains("data/jwt-secret: holds fewer than the 32 bytes"),
        "{err}"
    );
    assert!(!err.contains("--jwt-secret:"), "{err}");
}

#[test]
fn a_key_replaced_under_the_same_id_is_refused_at_start() {
    let dir = tempfile::TempDir::new().unwrap();
    assert!(run(with_args(dir.path(), &["migrate"])).0);
    // The key check value is written by the first start that uses the id.
    assert!(run(with_args(dir.path(), &["check-config"])).0);
    let replaced = schema::KeyRing::generate_spec("dev1");
    use secrecy::ExposeSecret;
    std::fs::write(
        dir.path().join("data/encryption-keys"),
        format!("{}\n", replaced.expose_secret()),
    )
    .unwrap();
    for command in ["check-config", "serve"] {
        let (ok, _, err) = run(with_args(
            dir.path(),
            &[command, "--listen", ":0", "--log-format", "text"],
        ));
        assert!(!ok, "{command} started with the wrong key");
        assert!(
            err.contains("the configured encryption key for id 'dev1' is not the one the database was sealed with"),
            "{command}: {err}"
        );
    }
}

#[test]
fn text_logs_carry_no_colour_codes_when_not_on_a_terminal() {
    let dir = tempfile::TempDir::new().unwrap();
    let mut child = with_args(
        dir.path(),
        &["serve", "--listen", ":0", "--log-format", "text"],
    )
    .stderr(Stdio::piped())
    .stdout(Stdio::null())
    .spawn()
    .unwrap();
    let reader = BufReader::new(child.stderr.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in reader.lines().map_while(Result::ok) {
            let done = line.contains("serving");
            let _ = tx.send(line);
            if done {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(30)) {
        let done = line.contains("serving");
        lines.push(line);
        if done {
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(lines.iter().any(|l| l.contains("serving")), "{lines:?}");
    assert!(lines.iter().all(|l| !l.contains('\u{1b}')), "{lines:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_mistakes_name_their_cure() {
    let app = spawn_app(&Backend::Sqlite).await;
    let put = |body: &'static str| {
        app.client
            .put(app.url("/api/v1/companies/acme/credentials"))
            .bearer_auth(admin(&["acme"]))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    // A tab pasted into a value, raw.
    let res = put("{\"application_id\": \"ryr0\tabc\"}").await.unwrap();
    let body = assert_problem(res, 400, "malformed_body").await;
    let detail = body["detail"].as_str().unwrap();
    assert!(
        detail.contains("raw control character") && detail.contains("line 1"),
        "{detail}"
    );
    let res = put("{\"aplication_id\": \"ryr0abc\"}").await.unwrap();
    let body = assert_problem(res, 422, "validation_failed").await;
    assert_eq!(body["errors"][0]["field"], "aplication_id");
    let message = body["errors"][0]["message"].as_str().unwrap();
    assert!(
        message.contains("application_id, shared_secret, refresh_token, profile_id"),
        "{message}"
    );

    let res = app
        .client
        .post(app.url("/api/v1/webhooks"))
        .bearer_auth(admin(&["acme"]))
        .json(&json!({"url": "https://erp.example/x", "companies": ["acme"], "event": []}))
        .send()
        .await
        .unwrap();
    let body = assert_problem(res, 422, "validation_failed").await;
    let message = body["errors"][0]["message"].as_str().unwrap();
    assert!(
        message.contains("url, events, companies, description"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_web_hook_target_names_every_problem_and_its_setting() {
    let app = spawn_app(&Backend::Sqlite).await;
    let res = app
        .client
        .post(app.url("/api/v1/webhooks"))
        .bearer_auth(admin(&["acme"]))
        .json(&json!({"url": "http://user:pw@127.0.0.1/hook", "companies": ["acme"]}))
        .send()
        .await
        .unwrap();
    let body = assert_problem(res, 422, "webhook_target_refused").await;
    let messages: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message"].as_str().unwrap())
        .collect();
    assert_eq!(messages.len(), 3, "{messages:?}");
    assert!(messages[0].contains("--webhook-allow-http"), "{messages:?}");
    assert!(
        messages[1].contains("user name or password"),
        "{messages:?}"
    );
    assert!(
        messages[2].contains("--webhook-allow-private"),
        "{messages:?}"
    );
    let detail = body["detail"].as_str().unwrap();
    assert!(
        detail.contains("--webhook-allow-http") && detail.contains("--webhook-allow-private"),
        "{detail}"
    );

    // With both allowed, the same URL minus the user info is accepted.
    let open = spawn_app_with(
        &Backend::Sqlite,
        AppOptions {
            extra_args: vec![
                "--webhook-allow-http".into(),
                "--webhook-allow-private".into(),
            ],
            ..Default::default()
        },
    )
    .await;
    let res = open
        .client
        .post(open.url("/api/v1/webhooks"))
        .bearer_auth(admin(&["acme"]))
        .json(&json!({"url": "http://127.0.0.1/hook", "companies": ["acme"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
}

/// A version (ETag) is never used twice for a company: an `If-Match` taken before a delete
/// cannot match the record saved after it.
async fn versions_never_repeat_after_a_delete(backend: Backend) {
    let app = spawn_app(&backend).await;
    let values = json!({"application_id": "ryr0abc123", "shared_secret": "w7Gd9KfLq2ZxW9Qa"});
    let first: Value = app
        .put_credentials("acme", &values)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(first["version"], 1);
    let patched: Value = app
        .patch_credentials("acme", &json!({"profile_id": 7}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(patched["version"], 2);
    assert_eq!(app.delete_credentials("acme").await.status(), 204);
    let res = app.put_credentials("acme", &values).await;
    assert_eq!(res.status(), 201);
    assert_eq!(res.headers()["etag"], "\"3\"");
    let again: Value = res.json().await.unwrap();
    assert_eq!(again["version"], 3);
    for stale in ["\"1\"", "\"2\""] {
        let res = app
            .client
            .patch(app.url("/api/v1/companies/acme/credentials"))
            .bearer_auth(admin(&["acme"]))
            .header("content-type", "application/merge-patch+json")
            .header("if-match", stale)
            .body(r#"{"profile_id": 9}"#)
            .send()
            .await
            .unwrap();
        assert_problem(res, 412, "version_conflict").await;
    }
    // A delete after that continues the count too.
    assert_eq!(app.delete_credentials("acme").await.status(), 204);
    let last: Value = app
        .put_credentials("acme", &values)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(last["version"], 4);
}

crate::on_both_backends!(versions_never_repeat_after_a_delete);

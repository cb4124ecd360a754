//! What the in-process benchmarks share: the service started on port 0 and a bearer token for it.

use ca_connector::commands::Cli;
use ca_connector::http::auth::{mint_hs256, Claims};
use ca_connector::{Application, Config};
use clap::Parser;
use secrecy::{ExposeSecret, SecretString};

pub const JWT: &str = "bench-jwt-secret-bench-jwt-secret-0123456789";

/// Starts the service in this process on a fresh key ring and `data_dir`, with `extra` settings;
/// returns its base URL.
pub async fn start_app(data_dir: &std::path::Path, extra: &[&str]) -> String {
    let keys = schema::KeyRing::generate_spec("bench");
    let data_dir = data_dir.display().to_string();
    // A benchmark that must know the port before start (a public URL naming it) passes --listen.
    let listen: &[&str] = if extra.contains(&"--listen") {
        &[]
    } else {
        &["--listen", "127.0.0.1:0"]
    };
    let mut args = vec!["ca-connector"];
    args.extend_from_slice(listen);
    args.extend_from_slice(&[
        "--data-dir",
        &data_dir,
        "--jwt-secret",
        JWT,
        "--encryption-keys",
        keys.expose_secret(),
    ]);
    args.extend_from_slice(extra);
    let cli = Cli::try_parse_from(args).unwrap();
    let app = Application::build(Config::resolve(&cli.settings).unwrap())
        .await
        .unwrap();
    let base = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    base
}

/// A token for every company with the given scope, valid for ten hours.
pub fn bearer(scope: &str) -> String {
    bearer_for(&["*"], scope)
}

/// A token for the given companies with the given scope, valid for ten hours.
pub fn bearer_for(companies: &[&str], scope: &str) -> String {
    let now = chrono::Utc::now().timestamp();
    mint_hs256(
        &SecretString::from(JWT.to_string()),
        &Claims {
            sub: "bench".into(),
            exp: now + 36000,
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

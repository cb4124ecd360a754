//! Every setting of contract §1 as a flag with its environment variable, and their resolution into
//! a `Config` the service runs with (generated dev secrets included).

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{ArgAction, Args, ValueEnum};
use schema::{Backend, KeyRing};
use secrecy::{ExposeSecret, SecretString};

use crate::dev_secrets;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// The settings as given. Not `Debug`: it holds secrets as plain strings until resolved.
#[derive(Clone, Args)]
pub struct Settings {
    /// Address to serve HTTP on
    #[arg(
        long,
        env = "CA_CONNECTOR_LISTEN",
        default_value = "127.0.0.1:8080",
        global = true
    )]
    pub listen: String,
    /// Where the embedded database and generated dev keys live
    #[arg(
        long,
        env = "CA_CONNECTOR_DATA_DIR",
        default_value = "./data",
        global = true
    )]
    pub data_dir: PathBuf,
    /// sqlite://PATH or postgres://… (PostgreSQL 13+); default: SQLite file <data-dir>/ca-connector.db
    #[arg(
        long,
        env = "CA_CONNECTOR_DATABASE_URL",
        hide_env_values = true,
        global = true
    )]
    pub database_url: Option<String>,
    /// ChannelAdvisor base URL; /oauth2/token and /v1/… hang off it
    #[arg(
        long,
        env = "CA_CONNECTOR_CHANNELADVISOR_URL",
        default_value = "https://api.channeladvisor.com",
        global = true
    )]
    pub channeladvisor_url: String,
    /// ID:BASE64KEY[,ID:BASE64KEY…]; the first encrypts, all decrypt (generated on the embedded default)
    #[arg(
        long,
        env = "CA_CONNECTOR_ENCRYPTION_KEYS",
        hide_env_values = true,
        global = true
    )]
    pub encryption_keys: Option<String>,
    /// HS256 secret shared with the ERP, at least 32 bytes (generated on the embedded default)
    #[arg(
        long,
        env = "CA_CONNECTOR_JWT_SECRET",
        hide_env_values = true,
        global = true
    )]
    pub jwt_secret: Option<String>,
    /// Path of a PEM public key: RS256 or ES256 instead of HS256
    #[arg(long, env = "CA_CONNECTOR_JWT_PUBLIC_KEY", global = true)]
    pub jwt_public_key: Option<PathBuf>,
    /// Required `aud` claim
    #[arg(
        long,
        env = "CA_CONNECTOR_JWT_AUDIENCE",
        default_value = "ca-connector",
        global = true
    )]
    pub jwt_audience: String,
    /// Required `iss` claim when set
    #[arg(long, env = "CA_CONNECTOR_JWT_ISSUER", global = true)]
    pub jwt_issuer: Option<String>,
    /// Whole-request deadline for one upstream call, in seconds
    #[arg(
        long,
        env = "CA_CONNECTOR_UPSTREAM_TIMEOUT_SECS",
        default_value_t = 15,
        global = true
    )]
    pub upstream_timeout_secs: u64,
    /// Most upstream calls in flight per Application ID
    #[arg(
        long,
        env = "CA_CONNECTOR_UPSTREAM_CONCURRENCY",
        default_value_t = 4,
        global = true
    )]
    pub upstream_concurrency: usize,
    /// Refresh a cached access token when less than this many seconds are left
    #[arg(
        long,
        env = "CA_CONNECTOR_TOKEN_REFRESH_MARGIN_SECS",
        default_value_t = 300,
        global = true
    )]
    pub token_refresh_margin_secs: u64,
    /// Scheduled re-test of every complete connection, in seconds; 0 = off
    #[arg(
        long,
        env = "CA_CONNECTOR_HEALTH_CHECK_INTERVAL_SECS",
        default_value_t = 21600,
        global = true
    )]
    pub health_check_interval_secs: u64,
    /// Seconds before each web-hook delivery attempt
    #[arg(
        long,
        env = "CA_CONNECTOR_WEBHOOK_RETRY_SCHEDULE",
        default_value = "0,5,300,1800,7200,18000,36000,36000",
        global = true
    )]
    pub webhook_retry_schedule: String,
    /// Allow web-hook targets on loopback/private addresses
    #[arg(long, env = "CA_CONNECTOR_WEBHOOK_ALLOW_PRIVATE", action = ArgAction::SetTrue, global = true)]
    pub webhook_allow_private: bool,
    /// Allow http:// web-hook targets
    #[arg(long, env = "CA_CONNECTOR_WEBHOOK_ALLOW_HTTP", action = ArgAction::SetTrue, global = true)]
    pub webhook_allow_http: bool,
    /// tracing filter, e.g. info or ca_connector=debug
    #[arg(long, env = "CA_CONNECTOR_LOG", default_value = "info", global = true)]
    pub log: String,
    /// Log format; default text on a terminal, else json
    #[arg(long, env = "CA_CONNECTOR_LOG_FORMAT", value_enum, global = true)]
    pub log_format: Option<LogFormat>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{setting}: {message}")]
    Invalid {
        setting: &'static str,
        message: String,
    },
    #[error("{0} is required with PostgreSQL (secrets are only generated for the embedded SQLite default)")]
    MissingSecret(&'static str),
    #[error("data dir: {0}")]
    DataDir(String),
}

fn invalid(setting: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        setting,
        message: message.into(),
    }
}

/// How incoming JWTs are verified.
#[derive(Clone)]
pub enum JwtKey {
    Hs256(SecretString),
    /// PEM bytes of an RSA or EC public key.
    PublicKey(Vec<u8>),
}

#[derive(Clone)]
pub struct JwtSettings {
    pub key: JwtKey,
    pub audience: String,
    pub issuer: Option<String>,
}

#[derive(Clone)]
pub struct WebhookSettings {
    pub retry_schedule: Vec<u64>,
    pub allow_private: bool,
    pub allow_http: bool,
}

impl Config {
    pub fn webhook_policy(&self) -> web_hooks::target::TargetPolicy {
        web_hooks::target::TargetPolicy {
            allow_http: self.webhooks.allow_http,
            allow_private: self.webhooks.allow_private,
        }
    }
}

/// The resolved configuration the service runs with.
#[derive(Clone)]
pub struct Config {
    pub listen: String,
    pub data_dir: PathBuf,
    pub database_url: String,
    pub backend: Backend,
    pub channeladvisor_url: url::Url,
    pub keys: KeyRing,
    pub jwt: JwtSettings,
    pub upstream_timeout: Duration,
    pub upstream_concurrency: usize,
    pub token_refresh_margin: Duration,
    pub health_check_interval: Option<Duration>,
    pub webhooks: WebhookSettings,
    /// Dev secrets that were generated (or read back) from the data dir, for the start-up warning.
    pub dev_secrets: Vec<String>,
}

impl Config {
    pub fn resolve(s: &Settings) -> Result<Config, ConfigError> {
        let database_url = match &s.database_url {
            Some(url) => url.clone(),
            None => format!("sqlite://{}", s.data_dir.join("ca-connector.db").display()),
        };
        let backend = if database_url.starts_with("postgres://")
            || database_url.starts_with("postgresql://")
        {
            Backend::Postgres
        } else if database_url.starts_with("sqlite://") || !database_url.contains("://") {
            Backend::Sqlite
        } else {
            return Err(invalid(
                "--database-url",
                "must be sqlite://PATH or postgres://…",
            ));
        };
        let embedded = backend == Backend::Sqlite;
        if embedded {
            dev_secrets::ensure_dir(&s.data_dir).map_err(ConfigError::DataDir)?;
            let file = Path::new(
                database_url
                    .strip_prefix("sqlite://")
                    .unwrap_or(&database_url),
            );
            if let Some(parent) = file.parent().filter(|p| !p.as_os_str().is_empty()) {
                dev_secrets::ensure_dir(parent).map_err(ConfigError::DataDir)?;
            }
            dev_secrets::ensure_private_file(file).map_err(ConfigError::DataDir)?;
        }
        let mut dev = Vec::new();

        let keys_spec = match &s.encryption_keys {
            Some(spec) => SecretString::from(spec.clone()),
            None if embedded => {
                let (spec, note) =
                    dev_secrets::encryption_keys(&s.data_dir).map_err(ConfigError::DataDir)?;
                dev.push(note);
                spec
            }
            None => {
                return Err(ConfigError::MissingSecret(
                    "CA_CONNECTOR_ENCRYPTION_KEYS (--encryption-keys)",
                ))
            }
        };
        let keys =
            KeyRing::parse(&keys_spec).map_err(|e| invalid("--encryption-keys", e.to_string()))?;

        let jwt_key = match (&s.jwt_public_key, &s.jwt_secret) {
            (Some(path), _) => JwtKey::PublicKey(
                std::fs::read(path)
                    .map_err(|e| invalid("--jwt-public-key", format!("{}: {e}", path.display())))?,
            ),
            (None, Some(secret)) => JwtKey::Hs256(SecretString::from(secret.clone())),
            (None, None) if embedded => {
                let (secret, note) =
                    dev_secrets::jwt_secret(&s.data_dir).map_err(ConfigError::DataDir)?;
                dev.push(note);
                JwtKey::Hs256(secret)
            }
            (None, None) => {
                return Err(ConfigError::MissingSecret(
                    "CA_CONNECTOR_JWT_SECRET (--jwt-secret) or CA_CONNECTOR_JWT_PUBLIC_KEY",
                ))
            }
        };
        if let JwtKey::Hs256(secret) = &jwt_key {
            if secret.expose_secret().len() < 32 {
                return Err(invalid("--jwt-secret", "must be at least 32 bytes"));
            }
        }

        let channeladvisor_url = url::Url::parse(&s.channeladvisor_url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .ok_or_else(|| invalid("--channeladvisor-url", "must be an http(s) URL"))?;
        if s.upstream_timeout_secs == 0 {
            return Err(invalid("--upstream-timeout-secs", "must be at least 1"));
        }
        if s.upstream_concurrency == 0 {
            return Err(invalid("--upstream-concurrency", "must be at least 1"));
        }
        let retry_schedule = s
            .webhook_retry_schedule
            .split(',')
            .map(|p| p.trim().parse::<u64>())
            .collect::<Result<Vec<_>, _>>()
            .ok()
            .filter(|v| !v.is_empty())
            .ok_or_else(|| {
                invalid(
                    "--webhook-retry-schedule",
                    "must be comma-separated whole seconds",
                )
            })?;

        Ok(Config {
            listen: s.listen.clone(),
            data_dir: s.data_dir.clone(),
            database_url,
            backend,
            channeladvisor_url,
            keys,
            jwt: JwtSettings {
                key: jwt_key,
                audience: s.jwt_audience.clone(),
                issuer: s.jwt_issuer.clone(),
            },
            upstream_timeout: Duration::from_secs(s.upstream_timeout_secs),
            upstream_concurrency: s.upstream_concurrency,
            token_refresh_margin: Duration::from_secs(s.token_refresh_margin_secs),
            health_check_interval: (s.health_check_interval_secs > 0)
                .then(|| Duration::from_secs(s.health_check_interval_secs)),
            webhooks: WebhookSettings {
                retry_schedule,
                allow_private: s.webhook_allow_private,
                allow_http: s.webhook_allow_http,
            },
            dev_secrets: dev,
        })
    }
}

//! Every setting of contract §1 as a flag with its environment variable, and their resolution into
//! a `Config` the service runs with (generated dev secrets included).

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Args, ValueEnum};
use schema::{Backend, KeyRing};
use secrecy::{ExposeSecret, SecretString};

use crate::service::dev_secrets;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Where the data lives: shared by every command.
#[derive(Clone, Args)]
pub struct DataArgs {
    /// Where the embedded database and generated dev keys live [default: ./data; inside a
    /// checkout, the checkout's data/]
    #[arg(long, env = "CA_CONNECTOR_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// sqlite://PATH or postgres://… (PostgreSQL 13+); default: SQLite file <data-dir>/ca-connector.db
    #[arg(long, env = "CA_CONNECTOR_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
}

/// The encryption keys, for the commands that open sealed values.
#[derive(Clone, Args)]
pub struct KeyArgs {
    /// ID:BASE64KEY[,ID:BASE64KEY…]; the first encrypts, all decrypt (generated on the embedded default)
    #[arg(long, env = "CA_CONNECTOR_ENCRYPTION_KEYS", hide_env_values = true)]
    pub encryption_keys: Option<String>,
}

/// How JWTs are verified (and, by `token`, signed).
#[derive(Clone, Args)]
pub struct JwtArgs {
    /// HS256 secret shared with the ERP, at least 32 bytes (generated on the embedded default)
    #[arg(long, env = "CA_CONNECTOR_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// Path of a PEM public key: RS256 or ES256 instead of HS256
    #[arg(long, env = "CA_CONNECTOR_JWT_PUBLIC_KEY")]
    pub jwt_public_key: Option<PathBuf>,
    /// Required `aud` claim
    #[arg(
        long,
        env = "CA_CONNECTOR_JWT_AUDIENCE",
        default_value = "ca-connector"
    )]
    pub jwt_audience: String,
    /// Required `iss` claim when set
    #[arg(long, env = "CA_CONNECTOR_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
}

/// Logging, accepted by every command.
#[derive(Clone, Args)]
pub struct LogArgs {
    /// tracing filter, e.g. info or ca_connector=debug
    #[arg(long, env = "CA_CONNECTOR_LOG", default_value = "info", global = true)]
    pub log: String,
    /// Log format; default text on a terminal, else json
    #[arg(long, env = "CA_CONNECTOR_LOG_FORMAT", value_enum, global = true)]
    pub log_format: Option<LogFormat>,
}

/// Every setting of the service. Not `Debug`: it holds secrets as plain strings until resolved.
#[derive(Clone, Args)]
pub struct Settings {
    /// Address to serve HTTP on: HOST:PORT, or :PORT on 127.0.0.1 (:0 picks a free port)
    #[arg(long, env = "CA_CONNECTOR_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: String,
    #[command(flatten)]
    pub data: DataArgs,
    /// ChannelAdvisor base URL; /oauth2/token and /v1/… hang off it
    #[arg(
        long,
        env = "CA_CONNECTOR_CHANNELADVISOR_URL",
        default_value = "https://api.channeladvisor.com"
    )]
    pub channeladvisor_url: String,
    /// Accept an http:// ChannelAdvisor URL that is not on loopback (a test stand-in, never
    /// ChannelAdvisor itself: its tokens would cross the network in the clear)
    #[arg(long, env = "CA_CONNECTOR_CHANNELADVISOR_ALLOW_HTTP", action = ArgAction::SetTrue)]
    pub channeladvisor_allow_http: bool,
    #[command(flatten)]
    pub keys: KeyArgs,
    #[command(flatten)]
    pub jwt: JwtArgs,
    /// Whole-request deadline for one upstream call, in seconds
    #[arg(long, env = "CA_CONNECTOR_UPSTREAM_TIMEOUT_SECS", default_value_t = 15)]
    pub upstream_timeout_secs: u64,
    /// Most upstream calls in flight on this instance, all companies and Application IDs together
    #[arg(long, env = "CA_CONNECTOR_UPSTREAM_CONCURRENCY", default_value_t = 64)]
    pub upstream_concurrency: usize,
    /// Refresh a cached access token when less than this many seconds are left
    #[arg(
        long,
        env = "CA_CONNECTOR_TOKEN_REFRESH_MARGIN_SECS",
        default_value_t = 300
    )]
    pub token_refresh_margin_secs: u64,
    /// Refresh ahead: a token a job used is renewed in the background once less than this many
    /// seconds are left; 0 = off; must exceed the refresh margin
    #[arg(
        long,
        env = "CA_CONNECTOR_TOKEN_REFRESH_AHEAD_SECS",
        default_value_t = 900
    )]
    pub token_refresh_ahead_secs: u64,
    /// How long after a job's last token request its company's token is kept fresh by refresh
    /// ahead, in hours
    #[arg(long, env = "CA_CONNECTOR_TOKEN_KEEP_WARM_HOURS", default_value_t = 24)]
    pub token_keep_warm_hours: u64,
    /// Scheduled re-test of every complete connection, in seconds; 0 = off
    #[arg(
        long,
        env = "CA_CONNECTOR_HEALTH_CHECK_INTERVAL_SECS",
        default_value_t = 21600
    )]
    pub health_check_interval_secs: u64,
    /// Seconds before each web-hook delivery attempt
    #[arg(
        long,
        env = "CA_CONNECTOR_WEBHOOK_RETRY_SCHEDULE",
        default_value = "0,5,300,1800,7200,18000,36000,36000"
    )]
    pub webhook_retry_schedule: String,
    /// Days Test Connection results are kept in the history (a company's last test always stays)
    #[arg(
        long,
        env = "CA_CONNECTOR_TEST_HISTORY_RETENTION_DAYS",
        default_value_t = 90
    )]
    pub test_history_retention_days: u64,
    /// Days audit entries are kept
    #[arg(long, env = "CA_CONNECTOR_AUDIT_RETENTION_DAYS", default_value_t = 400)]
    pub audit_retention_days: u64,
    /// Days finished web-hook deliveries and their attempts are kept
    #[arg(
        long,
        env = "CA_CONNECTOR_DELIVERY_RETENTION_DAYS",
        default_value_t = 30
    )]
    pub delivery_retention_days: u64,
    /// Hours events are kept in the event log (those still to be delivered always stay)
    #[arg(long, env = "CA_CONNECTOR_EVENT_RETENTION_HOURS", default_value_t = 72)]
    pub event_retention_hours: u64,
    /// Allow web-hook targets on loopback/private addresses
    #[arg(long, env = "CA_CONNECTOR_WEBHOOK_ALLOW_PRIVATE", action = ArgAction::SetTrue)]
    pub webhook_allow_private: bool,
    /// Allow http:// web-hook targets
    #[arg(long, env = "CA_CONNECTOR_WEBHOOK_ALLOW_HTTP", action = ArgAction::SetTrue)]
    pub webhook_allow_http: bool,
    /// Web-hook host names pinned to addresses, looked up before DNS (HOST=ADDRESS, comma-separated;
    /// the private-address check still applies)
    #[arg(long, env = "CA_CONNECTOR_WEBHOOK_RESOLVE", value_delimiter = ',')]
    pub webhook_resolve: Vec<String>,
    #[command(flatten)]
    pub connect: crate::service::connect_settings::ConnectArgs,
    /// Who may embed the settings screen (/admin/) in a frame: its CSP frame-ancestors sources
    #[arg(
        long,
        env = "CA_CONNECTOR_ADMIN_FRAME_ANCESTORS",
        default_value = "'self'"
    )]
    pub admin_frame_ancestors: String,
}

/// `--webhook-resolve`: HOST=ADDRESS pairs (a host may be named more than once).
fn pinned_hosts(pairs: &[String]) -> Result<web_hooks::target::Pinned, ConfigError> {
    let mut pinned: std::collections::HashMap<String, Vec<std::net::IpAddr>> = Default::default();
    for pair in pairs.iter().filter(|p| !p.trim().is_empty()) {
        let invalid = || ConfigError::Invalid {
            setting: "--webhook-resolve",
            message: format!("{pair:?} is not HOST=ADDRESS (an IPv4 or IPv6 address)"),
        };
        let (host, address) = pair.trim().split_once('=').ok_or_else(invalid)?;
        let address = address.trim().parse().map_err(|_| invalid())?;
        let host = host.trim().trim_end_matches('.').to_ascii_lowercase();
        if host.is_empty() {
            return Err(invalid());
        }
        pinned.entry(host).or_default().push(address);
    }
    Ok(std::sync::Arc::new(pinned))
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
    /// A generated secret file that does not hold what it should: named as the file, since the
    /// user never set the flag it stands in for.
    #[error("{path}: {message}; restore the file from a backup, or delete it to generate a new one (anything sealed or signed with the old one is then lost)")]
    DamagedFile { path: String, message: String },
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
    pub pinned: web_hooks::target::Pinned,
}

impl Config {
    pub fn store(&self) -> Store {
        Store {
            data_dir: self.data_dir.clone(),
            database_url: self.database_url.clone(),
            backend: self.backend,
        }
    }

    pub fn webhook_policy(&self) -> web_hooks::target::TargetPolicy {
        web_hooks::target::TargetPolicy {
            allow_http: self.webhooks.allow_http,
            allow_private: self.webhooks.allow_private,
        }
    }
}

/// Where the data is: the data dir and the database in it (or elsewhere).
#[derive(Clone, Debug)]
pub struct Store {
    pub data_dir: PathBuf,
    pub database_url: String,
    pub backend: Backend,
}

impl Store {
    pub fn embedded(&self) -> bool {
        self.backend == Backend::Sqlite
    }

    /// The SQLite file, for messages about it.
    pub fn sqlite_path(&self) -> Option<PathBuf> {
        self.embedded().then(|| {
            PathBuf::from(
                self.database_url
                    .strip_prefix("sqlite://")
                    .unwrap_or(&self.database_url),
            )
        })
    }
}

impl DataArgs {
    /// The data dir and database URL, without touching the disk.
    pub fn locate(&self) -> Result<Store, ConfigError> {
        let data_dir = self
            .data_dir
            .clone()
            .unwrap_or_else(dev_secrets::default_data_dir);
        let database_url = match &self.database_url {
            Some(url) => url.clone(),
            None => format!(
                "sqlite://{}",
                data_dir.join(dev_secrets::DATABASE_FILE).display()
            ),
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
        Ok(Store {
            data_dir,
            database_url,
            backend,
        })
    }

    /// Locates the store and, on the embedded default, creates the data dir and the private
    /// database file. A data dir whose generated keys survive but whose database is gone is
    /// warned about loudly: starting empty would otherwise look like lost data fixed itself.
    pub fn prepare(&self) -> Result<Store, ConfigError> {
        let store = self.locate()?;
        if let Some(file) = store.sqlite_path() {
            dev_secrets::ensure_dir(&store.data_dir).map_err(ConfigError::DataDir)?;
            if let Some(parent) = file.parent().filter(|p| !p.as_os_str().is_empty()) {
                dev_secrets::ensure_dir(parent).map_err(ConfigError::DataDir)?;
            }
            let keys_file = store.data_dir.join(dev_secrets::ENCRYPTION_KEYS_FILE);
            let empty = std::fs::metadata(&file).map_or(true, |m| m.len() == 0);
            if empty && keys_file.is_file() {
                tracing::warn!(
                    database = %file.display(),
                    keys = %keys_file.display(),
                    "the data dir has generated encryption keys but the database is missing or empty: starting with an empty database. If credentials were stored before, stop now and restore {} from a backup (or point --data-dir / --database-url at the right one)",
                    file.display()
                );
            }
            dev_secrets::ensure_private_file(&file).map_err(ConfigError::DataDir)?;
        }
        Ok(store)
    }
}

impl KeyArgs {
    /// The key ring: configured, or generated into the data dir on the embedded default. The
    /// note is for the start-up warning about development secrets.
    pub fn resolve(&self, store: &Store) -> Result<(KeyRing, Option<String>), ConfigError> {
        if let Some(spec) = &self.encryption_keys {
            let keys = KeyRing::parse(&SecretString::from(spec.clone()))
                .map_err(|e| invalid("--encryption-keys", e.to_string()))?;
            return Ok((keys, None));
        }
        if !store.embedded() {
            return Err(ConfigError::MissingSecret(
                "CA_CONNECTOR_ENCRYPTION_KEYS (--encryption-keys)",
            ));
        }
        dev_secrets::ensure_dir(&store.data_dir).map_err(ConfigError::DataDir)?;
        let dev = dev_secrets::encryption_keys(&store.data_dir).map_err(ConfigError::DataDir)?;
        let keys = KeyRing::parse(&dev.value).map_err(|e| ConfigError::DamagedFile {
            path: dev.path.display().to_string(),
            message: e.to_string(),
        })?;
        Ok((keys, Some(dev.note)))
    }
}

impl JwtArgs {
    /// The verification key: configured, or generated into the data dir on the embedded default.
    pub fn resolve(&self, store: &Store) -> Result<(JwtSettings, Option<String>), ConfigError> {
        let (key, note) = match (&self.jwt_public_key, &self.jwt_secret) {
            (Some(path), _) => (
                JwtKey::PublicKey(std::fs::read(path).map_err(|e| {
                    invalid("--jwt-public-key", format!("{}: {e}", path.display()))
                })?),
                None,
            ),
            (None, Some(secret)) => {
                if secret.len() < 32 {
                    return Err(invalid("--jwt-secret", "must be at least 32 bytes"));
                }
                (JwtKey::Hs256(SecretString::from(secret.clone())), None)
            }
            (None, None) if store.embedded() => {
                dev_secrets::ensure_dir(&store.data_dir).map_err(ConfigError::DataDir)?;
                let dev = dev_secrets::jwt_secret(&store.data_dir).map_err(ConfigError::DataDir)?;
                if dev.value.expose_secret().len() < 32 {
                    return Err(ConfigError::DamagedFile {
                        path: dev.path.display().to_string(),
                        message: "holds fewer than the 32 bytes a JWT secret needs".into(),
                    });
                }
                (JwtKey::Hs256(dev.value), Some(dev.note))
            }
            (None, None) => {
                return Err(ConfigError::MissingSecret(
                    "CA_CONNECTOR_JWT_SECRET (--jwt-secret) or CA_CONNECTOR_JWT_PUBLIC_KEY",
                ))
            }
        };
        let settings = JwtSettings {
            key,
            audience: self.jwt_audience.clone(),
            issuer: self.jwt_issuer.clone(),
        };
        Ok((settings, note))
    }
}

/// A URL whose host is this machine: 127.0.0.0/8, ::1 or localhost.
pub(crate) fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// `HOST:PORT`, or `:PORT` for the default host. Resolved here, so `check-config` refuses what
/// `serve` would fail to bind.
pub fn parse_listen(raw: &str) -> Result<SocketAddr, ConfigError> {
    let spec = match raw.strip_prefix(':') {
        Some(port) => format!("127.0.0.1:{port}"),
        None => raw.to_string(),
    };
    let hint = format!(
        "'{raw}' is not an address to listen on; give HOST:PORT (127.0.0.1:8080, 0.0.0.0:8080, [::1]:8080) or :PORT"
    );
    spec.to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .ok_or_else(|| invalid("--listen", hint))
}

/// CSP `frame-ancestors` sources: `'self'`, `'none'`, or origins; nothing that could close the
/// directive and start another (`;` or `,`).
fn frame_ancestors(raw: &str) -> Result<String, ConfigError> {
    let sources: Vec<&str> = raw.split_whitespace().collect();
    let ok = |s: &&str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_graphic() && c != ';' && c != ',')
    };
    if sources.is_empty() || !sources.iter().all(ok) {
        return Err(invalid(
            "--admin-frame-ancestors",
            "must be CSP sources separated by spaces, like 'self' https://erp.example",
        ));
    }
    Ok(sources.join(" "))
}

/// Refresh ahead's window: renew a job's token when less than `window` is left, for companies
/// whose jobs asked within `keep_warm`.
#[derive(Clone, Copy, Debug)]
pub struct RefreshAhead {
    pub window: Duration,
    pub margin: Duration,
    pub keep_warm: Duration,
}

fn refresh_ahead(s: &Settings) -> Result<Option<RefreshAhead>, ConfigError> {
    if s.token_refresh_ahead_secs == 0 || s.token_keep_warm_hours == 0 {
        return Ok(None);
    }
    if s.token_refresh_ahead_secs <= s.token_refresh_margin_secs {
        return Err(invalid(
            "--token-refresh-ahead-secs",
            format!(
                "must exceed --token-refresh-margin-secs ({}), or be 0 to turn refresh ahead off",
                s.token_refresh_margin_secs
            ),
        ));
    }
    if s.token_refresh_ahead_secs > 3300 || s.token_keep_warm_hours > 24 * 365 {
        return Err(invalid(
            if s.token_refresh_ahead_secs > 3300 {
                "--token-refresh-ahead-secs"
            } else {
                "--token-keep-warm-hours"
            },
            "is too large: at most 3300 seconds (tokens live an hour) and 8760 hours",
        ));
    }
    Ok(Some(RefreshAhead {
        window: Duration::from_secs(s.token_refresh_ahead_secs),
        margin: Duration::from_secs(s.token_refresh_margin_secs),
        keep_warm: Duration::from_secs(s.token_keep_warm_hours * 3600),
    }))
}

/// The resolved configuration the service runs with.
#[derive(Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub database_url: String,
    pub backend: Backend,
    pub channeladvisor_url: url::Url,
    pub keys: KeyRing,
    pub jwt: JwtSettings,
    pub upstream_timeout: Duration,
    pub upstream_concurrency: usize,
    pub token_refresh_margin: Duration,
    /// Refresh ahead (contract §6); `None` = off.
    pub refresh_ahead: Option<RefreshAhead>,
    pub health_check_interval: Option<Duration>,
    pub webhooks: WebhookSettings,
    pub retention: schema::retention::Retention,
    pub connect: crate::service::connect_settings::ConnectSettings,
    /// The CSP `frame-ancestors` sources of the settings screen.
    pub admin_frame_ancestors: String,
    /// Dev secrets that were generated (or read back) from the data dir, for the start-up warning.
    pub dev_secrets: Vec<String>,
}

impl Config {
    pub fn resolve(s: &Settings) -> Result<Config, ConfigError> {
        let listen = parse_listen(&s.listen)?;
        let store = s.data.prepare()?;
        let (keys, keys_note) = s.keys.resolve(&store)?;
        let (jwt, jwt_note) = s.jwt.resolve(&store)?;
        let channeladvisor_url = url::Url::parse(&s.channeladvisor_url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .ok_or_else(|| invalid("--channeladvisor-url", "must be an http(s) URL"))?;
        if channeladvisor_url.scheme() == "http"
            && !is_loopback(&channeladvisor_url)
            && !s.channeladvisor_allow_http
        {
            return Err(invalid(
                "--channeladvisor-url",
                format!(
                    "{channeladvisor_url} is plain http outside this machine; ChannelAdvisor is https. For a test stand-in elsewhere, add --channeladvisor-allow-http (CA_CONNECTOR_CHANNELADVISOR_ALLOW_HTTP)"
                ),
            ));
        }
        if s.upstream_timeout_secs == 0 {
            return Err(invalid("--upstream-timeout-secs", "must be at least 1"));
        }
        if s.upstream_concurrency == 0 {
            return Err(invalid("--upstream-concurrency", "must be at least 1"));
        }
        let refresh_ahead = refresh_ahead(s)?;
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

        for (setting, value) in [
            (
                "--test-history-retention-days",
                s.test_history_retention_days,
            ),
            ("--audit-retention-days", s.audit_retention_days),
            ("--delivery-retention-days", s.delivery_retention_days),
            ("--event-retention-hours", s.event_retention_hours),
        ] {
            // The upper bound (a century in hours) keeps the durations within chrono's range.
            if value == 0 || value > 100 * 365 * 24 {
                return Err(invalid(setting, "must be a whole number from 1 to 876000"));
            }
        }
        let days = |d: u64| chrono::Duration::days(d as i64);
        let retention = schema::retention::Retention {
            test_history: days(s.test_history_retention_days),
            audit: days(s.audit_retention_days),
            deliveries: days(s.delivery_retention_days),
            events: chrono::Duration::hours(s.event_retention_hours as i64),
        };

        Ok(Config {
            listen,
            data_dir: store.data_dir,
            database_url: store.database_url,
            backend: store.backend,
            channeladvisor_url,
            keys,
            jwt,
            upstream_timeout: Duration::from_secs(s.upstream_timeout_secs),
            upstream_concurrency: s.upstream_concurrency,
            token_refresh_margin: Duration::from_secs(s.token_refresh_margin_secs),
            refresh_ahead,
            health_check_interval: (s.health_check_interval_secs > 0)
                .then(|| Duration::from_secs(s.health_check_interval_secs)),
            webhooks: WebhookSettings {
                retry_schedule,
                allow_private: s.webhook_allow_private,
                allow_http: s.webhook_allow_http,
                pinned: pinned_hosts(&s.webhook_resolve)?,
            },
            retention,
            connect: s.connect.resolve()?,
            admin_frame_ancestors: frame_ancestors(&s.admin_frame_ancestors)?,
            dev_secrets: keys_note.into_iter().chain(jwt_note).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::parse_listen;

    #[test]
    fn listen_takes_host_and_port_or_port_alone() {
        assert_eq!(
            parse_listen("127.0.0.1:8080").unwrap().to_string(),
            "127.0.0.1:8080"
        );
        assert_eq!(parse_listen(":0").unwrap().to_string(), "127.0.0.1:0");
        assert_eq!(parse_listen("[::1]:9").unwrap().to_string(), "[::1]:9");
        for bad in ["8080", "localhost", "127.0.0.1:99999", ""] {
            let err = parse_listen(bad).unwrap_err().to_string();
            assert!(
                err.contains("--listen") && err.contains("HOST:PORT"),
                "{err}"
            );
        }
    }
}

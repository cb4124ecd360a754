use schema::pool::redact_url;

use crate::service::settings::Config;
use crate::startup::open_database;

/// Prints what the service would run with (no secret values) after opening the database,
/// applying migrations and checking the key ids, as `serve` does at start.
pub async fn run(config: &Config) -> anyhow::Result<()> {
    let db = open_database(&config.store(), &config.keys).await?;
    // What `serve` builds before it listens, so a key `serve` would refuse is refused here too.
    crate::http::auth::Authenticator::new(&config.jwt).map_err(anyhow::Error::msg)?;
    connector::ChannelAdvisorClient::new(
        config.channeladvisor_url.clone(),
        config.upstream_timeout,
        config.upstream_concurrency,
    )
    .map_err(anyhow::Error::msg)?;
    let keys: Vec<&str> = config.keys.key_ids().collect();
    println!(
        "database: {} ({})",
        redact_url(&config.database_url),
        db.backend().name()
    );
    println!("listen: {}", config.listen);
    println!("channeladvisor: {}", config.channeladvisor_url);
    println!(
        "encryption keys: {} (seals with '{}')",
        keys.join(", "),
        config.keys.primary_id()
    );
    println!(
        "jwt: {} audience '{}'{}",
        match config.jwt.key {
            crate::service::settings::JwtKey::Hs256(_) => "HS256",
            crate::service::settings::JwtKey::PublicKey(_) => "RS256/ES256 public key",
        },
        config.jwt.audience,
        config
            .jwt
            .issuer
            .as_deref()
            .map(|i| format!(", issuer '{i}'"))
            .unwrap_or_default()
    );
    println!("{}", config.connect.describe());
    println!("configuration ok");
    Ok(())
}

use clap::Args;

use crate::auth::{mint_hs256, Claims};
use crate::settings::{Config, JwtKey};

#[derive(Args)]
pub struct TokenArgs {
    /// Company the token may act on; repeat for several, `*` for all
    #[arg(long = "company", required = true)]
    pub companies: Vec<String>,
    /// Space-separated permissions
    #[arg(
        long,
        default_value = "credentials:read credentials:write connection:read connection:test token:issue webhooks:manage"
    )]
    pub scope: String,
    /// Lifetime in seconds
    #[arg(long, default_value_t = 3600)]
    pub ttl: i64,
    /// The `sub` claim (who acts; shown in the audit trail)
    #[arg(long, default_value = "local-admin")]
    pub sub: String,
}

pub fn run(config: &Config, args: &TokenArgs) -> anyhow::Result<String> {
    let JwtKey::Hs256(secret) = &config.jwt.key else {
        anyhow::bail!(
            "`token` signs with HS256 only; a public key is configured (--jwt-public-key)"
        );
    };
    let now = chrono::Utc::now().timestamp();
    let claims = Claims {
        sub: args.sub.clone(),
        exp: now + args.ttl,
        aud: config.jwt.audience.clone(),
        iss: config.jwt.issuer.clone(),
        nbf: None,
        iat: now,
        companies: args.companies.clone(),
        scope: Some(args.scope.clone()),
    };
    mint_hs256(secret, &claims).map_err(anyhow::Error::msg)
}

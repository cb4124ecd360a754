use clap::Args;

use crate::http::auth::{mint_hs256, Claims};
use crate::service::settings::{DataArgs, JwtArgs, JwtKey};

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
    /// Print a link that opens the settings screen signed in (BASE/admin/#token=…) instead of
    /// the bare token; BASE defaults to http://127.0.0.1:8080
    #[arg(long, num_args = 0..=1, default_missing_value = "http://127.0.0.1:8080", value_name = "BASE")]
    pub admin_url: Option<String>,
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub jwt: JwtArgs,
}

/// Signs a token with the configured HS256 secret, or the one generated into the data dir (made
/// here when the server has not made it yet, so `serve &` followed by `token` always agree).
pub fn run(args: &TokenArgs) -> anyhow::Result<String> {
    let store = args.data.locate()?;
    let (jwt, _) = args.jwt.resolve(&store)?;
    let JwtKey::Hs256(secret) = &jwt.key else {
        anyhow::bail!(
            "`token` signs with HS256 only; a public key is configured (--jwt-public-key)"
        );
    };
    if args.ttl <= 0 {
        anyhow::bail!("--ttl: must be at least 1 second");
    }
    let now = chrono::Utc::now().timestamp();
    let claims = Claims {
        sub: args.sub.clone(),
        exp: now + args.ttl,
        aud: jwt.audience.clone(),
        iss: jwt.issuer.clone(),
        nbf: None,
        iat: now,
        companies: args.companies.clone(),
        scope: Some(args.scope.clone()),
    };
    let jwt = mint_hs256(secret, &claims).map_err(anyhow::Error::msg)?;
    Ok(match &args.admin_url {
        // In the fragment: a browser never sends it to a server.
        Some(base) => format!("{}/admin/#token={jwt}", base.trim_end_matches('/')),
        None => jwt,
    })
}

//! `ca-sim`: a ChannelAdvisor simulator for local demos and benchmarks (see `connector::sim`).

use std::collections::HashMap;
use std::time::Duration;

use clap::Parser;
use connector::sim::{SimConfig, Simulator, SoapAccount};

#[derive(Parser)]
#[command(
    name = "ca-sim",
    about = "ChannelAdvisor simulator: /oauth2/token, /oauth2/authorize and /v1/Profiles"
)]
struct Args {
    /// Address to serve on
    #[arg(long, default_value = "127.0.0.1:9090")]
    listen: String,
    /// An application as APPLICATION_ID:SHARED_SECRET (repeatable)
    #[arg(long = "app", default_values = ["demo-app:demo-shared-secret-0001"])]
    apps: Vec<String>,
    /// A valid refresh token as TOKEN=PROFILE_ID[,PROFILE_ID…] (repeatable)
    #[arg(long = "refresh-token", default_values = ["demo-refresh-token-0001=12345678"])]
    refresh_tokens: Vec<String>,
    /// Added to every answer, in milliseconds
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Also accept any Application ID whose Shared Secret is "<id>-secret"
    #[arg(long)]
    any_app: bool,
    /// How long an access token works (its expires_in), in seconds
    #[arg(long, default_value_t = 3600)]
    token_lifetime_secs: u64,
    /// The profiles the Grant Access page offers (comma-separated)
    #[arg(long, default_value = "12345678", value_delimiter = ',')]
    grant_profiles: Vec<i64>,
    /// Leave `state` out of the authorization redirect
    #[arg(long)]
    omit_state: bool,
    /// SOAP Credentials the soap grant accepts, as DEVELOPER_KEY:PASSWORD:ACCOUNT_ID=PROFILE_ID[,…]
    /// (repeatable)
    #[arg(long = "soap", default_values = ["demo-developer-key-0001:demo-soap-password-0001:0a1b2c3d-4e5f-6789-abcd-ef0123456789=12345678"])]
    soap: Vec<String>,
    /// Rotate refresh tokens, with reuse detection: a spent refresh token used again revokes its grant
    #[arg(long)]
    rotate_refresh_tokens: bool,
    /// A Redirect URI registered on an application, as APPLICATION_ID=URI (repeatable); the Grant
    /// Access page refuses any other
    #[arg(long = "redirect-uri", default_values = ["demo-app=http://127.0.0.1:8080/oauth/callback", "demo-app=http://localhost:8080/oauth/callback"])]
    redirect_uris: Vec<String>,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // Errors as one plain sentence, not the Debug dump `main` returning an error would print.
    match run(Args::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ca-sim: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let mut config = SimConfig {
        apps: HashMap::new(),
        refresh_tokens: HashMap::new(),
        latency: Duration::from_millis(args.latency_ms),
        any_app: args.any_app,
        token_lifetime: Duration::from_secs(args.token_lifetime_secs),
        grant_profiles: args.grant_profiles.clone(),
        omit_state: args.omit_state,
        soap_accounts: Vec::new(),
        rotate_refresh_tokens: args.rotate_refresh_tokens,
        redirect_uris: HashMap::new(),
        integration_concurrency: connector::sim::INTEGRATION_CONCURRENCY,
    };
    for registered in &args.redirect_uris {
        let (app, uri) = registered
            .split_once('=')
            .ok_or("--redirect-uri takes APPLICATION_ID=URI")?;
        config
            .redirect_uris
            .entry(app.to_string())
            .or_default()
            .push(uri.to_string());
    }
    for app in &args.apps {
        let (id, secret) = app.split_once(':').ok_or("--app takes ID:SECRET")?;
        config.apps.insert(id.to_string(), secret.to_string());
    }
    for token in &args.refresh_tokens {
        let (t, profiles) = token
            .split_once('=')
            .ok_or("--refresh-token takes TOKEN=PROFILE[,PROFILE]")?;
        config
            .refresh_tokens
            .insert(t.to_string(), profile_ids(profiles)?);
    }
    for soap in &args.soap {
        let (values, profiles) = soap
            .split_once('=')
            .ok_or("--soap takes DEVELOPER_KEY:PASSWORD:ACCOUNT_ID=PROFILE[,PROFILE]")?;
        let mut parts = values.splitn(3, ':');
        let (Some(key), Some(password), Some(account)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err("--soap takes DEVELOPER_KEY:PASSWORD:ACCOUNT_ID=PROFILE[,PROFILE]".into());
        };
        config.soap_accounts.push(SoapAccount {
            developer_key: key.to_string(),
            password: password.to_string(),
            account_id: account.to_string(),
            profiles: profile_ids(profiles)?,
        });
    }
    let sim = Simulator::start(config, &args.listen)?;
    eprintln!(
        "ca-sim listening on {} (stats: {}/_sim/stats)",
        sim.url(),
        sim.url()
    );
    tokio::signal::ctrl_c().await?;
    sim.stop().await;
    Ok(())
}

fn profile_ids(list: &str) -> Result<Vec<i64>, std::num::ParseIntError> {
    list.split(',').map(|p| p.trim().parse::<i64>()).collect()
}

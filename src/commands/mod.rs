//! The commands of the one binary besides `serve`.

pub mod check_config;
pub mod rotate_keys;
pub mod token;

use clap::{Parser, Subcommand};

use crate::settings::Settings;

#[derive(Parser)]
#[command(
    name = "ca-connector",
    version,
    about = "ChannelAdvisor connection backend for ERP companies"
)]
pub struct Cli {
    #[command(flatten)]
    pub settings: Settings,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the HTTP service (the default)
    Serve,
    /// Apply pending database migrations and exit
    Migrate,
    /// Re-seal every stored secret under the first encryption key
    RotateKeys(rotate_keys::RotateArgs),
    /// Mint a JWT with the configured HS256 secret, for local use
    Token(token::TokenArgs),
    /// Check the settings, the database and the keys, then exit
    CheckConfig,
}

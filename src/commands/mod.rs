//! The commands of the one binary. `serve`, `migrate` and `check-config` take every setting;
//! `token` and `rotate-keys` only the ones they use, so their `--help` shows what matters.

pub mod check_config;
pub mod rotate_keys;
pub mod token;

use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::service::settings::{LogArgs, Settings};

#[derive(Parser)]
#[command(
    name = "ca-connector",
    version,
    about = "ChannelAdvisor connection backend for ERP companies",
    after_help = "Without a command, `serve` runs with the settings above. A command takes its \
                  settings after its name: `ca-connector token --company acme --data-dir DIR`."
)]
pub struct Cli {
    /// The settings of `serve` when no command is named.
    #[command(flatten)]
    pub settings: Settings,
    #[command(flatten)]
    pub logging: LogArgs,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the HTTP service (the default)
    Serve(Settings),
    /// Apply pending database migrations and exit
    Migrate(Settings),
    /// Re-seal every stored secret under the first encryption key
    RotateKeys(rotate_keys::RotateArgs),
    /// Mint a JWT with the configured HS256 secret, for local use
    Token(token::TokenArgs),
    /// Check the settings, the database and the keys, then exit
    CheckConfig(Settings),
}

impl Cli {
    /// Parses the process arguments. A setting written before a command's name would otherwise
    /// be ignored without a word (the command reads its own): it is refused, naming where it goes.
    pub fn parse_checked() -> Result<Cli, clap::Error> {
        let matches = Cli::command().get_matches();
        Self::from_matches_checked(&matches)
    }

    pub fn from_matches_checked(matches: &ArgMatches) -> Result<Cli, clap::Error> {
        let cli = Cli::from_arg_matches(matches)?;
        if let Some((name, _)) = matches.subcommand() {
            let misplaced: Vec<String> = Cli::command()
                .get_arguments()
                .filter(|arg| !arg.is_global_set())
                .filter(|arg| {
                    matches.value_source(arg.get_id().as_str()) == Some(ValueSource::CommandLine)
                })
                .filter_map(|arg| arg.get_long().map(|l| format!("--{l}")))
                .collect();
            if !misplaced.is_empty() {
                return Err(Cli::command().error(
                    clap::error::ErrorKind::ArgumentConflict,
                    format!(
                        "{} must come after the command: ca-connector {name} {} …",
                        misplaced.join(", "),
                        misplaced[0]
                    ),
                ));
            }
        }
        Ok(cli)
    }

    /// The command to run: `serve` with the top-level settings when none is named.
    pub fn into_command(self) -> Command {
        self.command.unwrap_or(Command::Serve(self.settings))
    }
}

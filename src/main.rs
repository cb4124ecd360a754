use std::process::ExitCode;

use ca_connector::commands::{self, Cli, Command};
use ca_connector::{telemetry, Application, Config};
use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let format = cli
        .settings
        .log_format
        .unwrap_or_else(telemetry::default_format);
    // Log lines are written by a background thread: a request never waits for stderr, which was
    // one write(2) per line on the request's own thread. Not lossy: a full buffer waits.
    let (writer, _flush_on_exit) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .finish(std::io::stderr());
    telemetry::init(&cli.settings.log, format, writer);
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "ca-connector stopped");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let config = Config::resolve(&cli.settings)?;
    let command = cli.command.unwrap_or(Command::Serve);
    if !config.dev_secrets.is_empty() && matches!(command, Command::Serve) {
        tracing::warn!(
            files = config.dev_secrets.join(", "),
            "using development secrets from the data dir (embedded default); set CA_CONNECTOR_ENCRYPTION_KEYS and CA_CONNECTOR_JWT_SECRET for production"
        );
    }
    match command {
        Command::Serve => {
            let app = Application::build(config).await?;
            tracing::info!(port = app.port(), "serving");
            app.run_until_stopped().await?;
            tracing::info!("stopped");
        }
        Command::Migrate => {
            let db = schema::Database::connect(&config.database_url, 1)?;
            let applied = tokio::task::spawn_blocking(move || db.migrate()).await??;
            println!("{} migrations applied", applied.len());
            for name in applied {
                println!("  {name}");
            }
        }
        Command::Token(args) => println!("{}", commands::token::run(&config, &args)?),
        Command::RotateKeys(args) => commands::rotate_keys::run(&config, &args).await?,
        Command::CheckConfig => commands::check_config::run(&config).await?,
    }
    Ok(())
}

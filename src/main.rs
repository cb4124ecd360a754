use std::process::ExitCode;

use ca_connector::commands::{self, Cli, Command};
use ca_connector::service::settings::LogFormat;
use ca_connector::service::telemetry;
use ca_connector::{Application, Config};
use schema::pool::redact_url;

fn main() -> ExitCode {
    limit_malloc_arenas();
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(start()),
        Err(e) => {
            eprintln!("error: the async runtime did not start: {e}");
            ExitCode::FAILURE
        }
    }
}

/// One malloc arena per core: glibc gives threads their own arenas, up to eight per core, and
/// memory freed in one is not reused by the others, so bursts of connections would leave the
/// service holding memory it no longer uses (figures in `docs/performance.md`). Set before any
/// thread starts.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let arenas = libc::c_int::try_from(cores).unwrap_or(libc::c_int::MAX);
        // SAFETY: mallopt only sets an allocator parameter; it is called before any other thread
        // exists, and an unaccepted value is ignored (it returns 0), which changes nothing.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, arenas);
        }
    }
}

async fn start() -> ExitCode {
    let cli = match Cli::parse_checked() {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let format = cli
        .logging
        .log_format
        .unwrap_or_else(telemetry::default_format);
    // Log lines are written by a background thread: a request never waits for stderr, which was
    // one write(2) per line on the request's own thread. Not lossy: a full buffer waits.
    let (writer, flush_on_exit) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .finish(std::io::stderr());
    telemetry::init(&cli.logging.log, format, writer);
    let outcome = run(cli).await;
    // A fatal error is printed once: as a JSON log line where logs are JSON (read by machines),
    // else as one plain line after the log is flushed, so it is the last thing a person sees.
    if let (Err(e), LogFormat::Json) = (&outcome, format) {
        tracing::error!(error = format!("{e:#}"), "ca-connector stopped");
    }
    drop(flush_on_exit);
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if format == LogFormat::Text {
                eprintln!("error: {e:#}");
            }
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.into_command() {
        Command::Serve(settings) => {
            let config = Config::resolve(&settings)?;
            if !config.dev_secrets.is_empty() {
                tracing::warn!(
                    files = config.dev_secrets.join(", "),
                    "using development secrets from the data dir (embedded default); set CA_CONNECTOR_ENCRYPTION_KEYS and CA_CONNECTOR_JWT_SECRET for production"
                );
            }
            let app = Application::build(config.clone()).await?;
            tracing::info!(
                port = app.port(),
                address = %app.address(),
                database = %redact_url(&config.database_url),
                channeladvisor = %config.channeladvisor_url,
                "serving"
            );
            app.run_until_stopped().await?;
            tracing::info!("stopped");
        }
        Command::Migrate(settings) => {
            let config = Config::resolve(&settings)?;
            let db = schema::Database::connect(&config.database_url, 1)?;
            let applied = tokio::task::spawn_blocking(move || db.migrate()).await??;
            println!("{} migrations applied", applied.len());
            for name in applied {
                println!("  {name}");
            }
        }
        Command::Token(args) => println!("{}", commands::token::run(&args)?),
        Command::RotateKeys(args) => commands::rotate_keys::run(&args).await?,
        Command::CheckConfig(settings) => {
            commands::check_config::run(&Config::resolve(&settings)?).await?
        }
    }
    Ok(())
}

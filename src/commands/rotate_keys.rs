use std::time::Instant;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use crate::service::settings::{DataArgs, KeyArgs};
use crate::startup::open_database;

#[derive(Args)]
pub struct RotateArgs {
    /// Companies re-sealed per transaction
    #[arg(long, default_value_t = 200)]
    pub batch_size: i64,
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub keys: KeyArgs,
}

/// Re-seals every secret under the first key, batch by batch. Each batch is its own transaction,
/// so an interruption loses nothing and a rerun continues with what is left.
pub async fn run(args: &RotateArgs) -> anyhow::Result<()> {
    let store = args.data.prepare()?;
    let (keys, _) = args.keys.resolve(&store)?;
    let db = open_database(&store, &keys).await?;
    let batch_size = args.batch_size.max(1);
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let mut conn = db.get()?;
        let dropped = schema::keys::drop_tokens_under_old_keys(&mut conn, &keys)?;
        if dropped > 0 {
            eprintln!("dropped {dropped} cached access tokens sealed under old keys (they are refreshed on demand)");
        }
        let resealed = schema::webhooks::reseal_all(&mut conn, &keys)?;
        if resealed > 0 {
            eprintln!("re-sealed {resealed} web-hook secrets");
        }
        let total = schema::keys::count_to_rotate(&mut conn, &keys)?;
        let bar = ProgressBar::new(total as u64);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} re-sealing [{bar:40}] {pos}/{len} companies ({per_sec}, {eta} left)",
            )?
            .progress_chars("=> "),
        );
        let started = Instant::now();
        let (mut after, mut rotated, mut failed) = (None::<String>, 0u64, Vec::new());
        loop {
            let batch = schema::keys::rotate_batch(&mut conn, &keys, after.as_deref(), batch_size)?;
            let Some(last) = batch.last else { break };
            rotated += batch.rotated;
            bar.inc(batch.rotated + batch.failed.len() as u64);
            failed.extend(batch.failed);
            after = Some(last);
        }
        bar.finish_and_clear();
        let secs = started.elapsed().as_secs_f64();
        eprintln!(
            "re-sealed {rotated} companies under key '{}' in {secs:.2} s ({:.0} companies/s)",
            keys.primary_id(),
            rotated as f64 / secs.max(1e-9)
        );
        if !failed.is_empty() {
            for (company, err) in &failed {
                eprintln!("not re-sealed: {err}");
                tracing::warn!(company = %company, "secrets did not open during rotation");
            }
            anyhow::bail!("{} companies could not be re-sealed", failed.len());
        }
        Ok(())
    })
    .await?
}

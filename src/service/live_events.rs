//! Live events (contract §11): one reader per instance follows the event log in the database and
//! fans each new event out to this instance's streams. The log is the source, so a change made
//! through any instance reaches every instance's streams: a local commit wakes the reader at once
//! (`schema::pool::commit_wake`), and it looks at least every `POLL` for commits of other
//! instances (or processes on one file).

use std::sync::Arc;
use std::time::Duration;

use schema::events::LoggedEvent;
use schema::Database;
use tokio::sync::broadcast;

/// How often the reader looks for other instances' events ("within a second", §11).
const POLL: Duration = Duration::from_millis(250);
/// Events read per query; a longer backlog is read in several.
const BATCH: i64 = 500;
/// Events a slow stream may fall behind before it re-reads from the log.
const CAPACITY: usize = 4096;

#[derive(Clone)]
pub struct EventHub {
    sender: broadcast::Sender<Arc<LoggedEvent>>,
    /// Flips to true when the server stops: every stream ends.
    closing: tokio::sync::watch::Sender<bool>,
}

impl EventHub {
    /// Starts the reader on the current runtime, from the newest event in the log.
    pub async fn start(db: Database) -> Result<EventHub, schema::StoreError> {
        let newest = db
            .run(|conn| Ok(schema::events::bounds(conn)?.map_or(0, |(_, n)| n)))
            .await?;
        let (sender, _) = broadcast::channel(CAPACITY);
        let hub = EventHub {
            sender,
            closing: tokio::sync::watch::Sender::new(false),
        };
        tokio::spawn(follow(db, hub.sender.clone(), newest));
        Ok(hub)
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<LoggedEvent>> {
        self.sender.subscribe()
    }

    /// Resolves when the server is stopping.
    pub fn closing(&self) -> tokio::sync::watch::Receiver<bool> {
        self.closing.subscribe()
    }

    /// Ends every stream (the server is stopping).
    pub fn close(&self) {
        self.closing.send_replace(true);
    }
}

async fn follow(db: Database, sender: broadcast::Sender<Arc<LoggedEvent>>, mut last: i64) {
    loop {
        // Armed before the log is read: a commit while reading wakes the next round at once.
        let woken = schema::pool::commit_wake().notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        if sender.receiver_count() == 0 {
            // Nobody listens: remember where the log ends, without reading the events.
            if let Ok(Some((_, newest))) = db.run(schema::events::bounds).await {
                last = last.max(newest);
            }
        } else {
            last = publish(&db, &sender, last).await;
        }
        tokio::select! {
            _ = woken => {}
            _ = tokio::time::sleep(POLL) => {}
        }
    }
}

/// Sends every event after `last` to the streams; returns the last one sent.
async fn publish(
    db: &Database,
    sender: &broadcast::Sender<Arc<LoggedEvent>>,
    mut last: i64,
) -> i64 {
    loop {
        let events = match db
            .run(move |conn| schema::events::after(conn, last, BATCH))
            .await
        {
            Ok(events) => events,
            Err(e) => {
                tracing::warn!(error = %e, "live events: reading the event log failed");
                return last;
            }
        };
        let full = events.len() as i64 == BATCH;
        for event in events {
            last = event.seq;
            // No receiver is not an error: streams come and go.
            let _ = sender.send(Arc::new(event));
        }
        if !full {
            return last;
        }
    }
}

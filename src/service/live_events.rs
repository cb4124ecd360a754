//! Live events (contract §11): one reader per instance follows the event log in the database and
//! fans each new event out to this instance's streams. The log is the source, so a change made
//! through any instance reaches every instance's streams: a local commit wakes the reader at once
//! (`schema::pool::event_wake`), and it looks at least every `POLL` for commits of other
//! instances (or processes on one file).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use schema::events::LoggedEvent;
use schema::Database;
use tokio::sync::{broadcast, Notify};

/// How often the reader looks for other instances' events ("within a second", §11).
const POLL: Duration = Duration::from_millis(250);
/// Events read per query; a longer backlog is read in several.
const BATCH: i64 = 500;
/// Events a slow stream may fall behind before it re-reads from the log.
const CAPACITY: usize = 4096;
/// Live streams one caller (a token's `sub`) may hold open on one instance: a screen needs one
/// per tab, and one stream carries any number of companies. A new stream past it ends that
/// caller's oldest: a client that closed a stream is known to have closed it only when the
/// stream is next written to (up to a keep-alive later), so refusing would lock out a screen that
/// reconnects. A stream told to end that is not being read ends only when its connection does,
/// so a caller holding twice this many is refused.
pub const STREAMS_PER_CALLER: usize = 32;

/// One open stream: its number, and its end signal once it was told to end.
struct Open {
    id: u64,
    ended: Arc<Notify>,
    told: bool,
}

/// Each caller's open streams, oldest first.
type OpenStreams = Arc<Mutex<HashMap<String, VecDeque<Open>>>>;

#[derive(Clone)]
pub struct EventHub {
    sender: broadcast::Sender<Arc<LoggedEvent>>,
    /// Flips to true when the server stops: every stream ends.
    closing: tokio::sync::watch::Sender<bool>,
    streams: StreamsPerCaller,
}

/// The streams each caller holds open on this instance.
#[derive(Clone, Default)]
pub struct StreamsPerCaller {
    open: OpenStreams,
    /// Numbers streams, to find one in its caller's list.
    next_id: Arc<std::sync::atomic::AtomicU64>,
}

/// One caller's stream, counted until it is dropped.
pub struct StreamSlot {
    caller: String,
    id: u64,
    /// Notified when a newer stream of the same caller takes this one's place: the stream ends.
    pub ended: Arc<Notify>,
    open: OpenStreams,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(streams) = open.get_mut(&self.caller) {
            streams.retain(|open| open.id != self.id);
            if streams.is_empty() {
                open.remove(&self.caller);
            }
        }
    }
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
            streams: StreamsPerCaller::default(),
        };
        tokio::spawn(follow(db, hub.sender.clone(), newest));
        Ok(hub)
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<LoggedEvent>> {
        self.sender.subscribe()
    }

    /// Counts a new stream of `caller` (see `StreamsPerCaller::open`).
    pub fn open_stream(&self, caller: &str) -> Option<StreamSlot> {
        self.streams.open(caller)
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

impl StreamsPerCaller {
    /// Counts a new stream of `caller`, ending its oldest when it already holds
    /// `STREAMS_PER_CALLER`; `None` when twice as many are still open.
    pub fn open(&self, caller: &str) -> Option<StreamSlot> {
        let id = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let ended = Arc::new(Notify::new());
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let streams = open.entry(caller.to_string()).or_default();
        if streams.len() >= 2 * STREAMS_PER_CALLER {
            return None;
        }
        let live = streams.iter().filter(|s| !s.told).count();
        if live >= STREAMS_PER_CALLER {
            if let Some(oldest) = streams.iter_mut().find(|s| !s.told) {
                oldest.told = true;
                // A permit is kept if the stream is not waiting right now.
                oldest.ended.notify_one();
            }
        }
        streams.push_back(Open {
            id,
            ended: ended.clone(),
            told: false,
        });
        Some(StreamSlot {
            caller: caller.to_string(),
            id,
            ended,
            open: self.open.clone(),
        })
    }
}

async fn follow(db: Database, sender: broadcast::Sender<Arc<LoggedEvent>>, mut last: i64) {
    loop {
        // Armed before the log is read: a commit while reading wakes the next round at once.
        let woken = schema::pool::event_wake().notified();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_stream_past_the_bound_ends_the_oldest_and_twice_as_many_are_refused() {
        let streams = StreamsPerCaller::default();
        let mut held: Vec<StreamSlot> = (0..STREAMS_PER_CALLER)
            .map(|_| streams.open("screen").unwrap())
            .collect();
        held.push(streams.open("screen").expect("one more is let in"));
        tokio::time::timeout(Duration::from_secs(1), held[0].ended.notified())
            .await
            .expect("the oldest is told to end");
        // Streams told to end that never do (nobody reads them) still count, up to twice the bound.
        while held.len() < 2 * STREAMS_PER_CALLER {
            held.push(streams.open("screen").unwrap());
        }
        assert!(
            streams.open("screen").is_none(),
            "refused past twice the bound"
        );
        assert!(streams.open("another caller").is_some());
        held.remove(0);
        assert!(
            streams.open("screen").is_some(),
            "a stream that ended gives its place back"
        );
    }
}

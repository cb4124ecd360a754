//! The event log read back for live streams (contract §11): events in `seq` order (commit order,
//! see `outbox::next_seq`), with their web-hook JSON.

use diesel::prelude::*;

use crate::error::StoreError;
use crate::pool::AnyConnection;
use crate::schema::outbox_events;

/// One logged event as a stream sends it.
#[derive(Debug, Clone)]
pub struct LoggedEvent {
    pub seq: i64,
    pub event_type: String,
    pub company: Option<String>,
    /// The web-hook JSON: `{"type", "timestamp", "data"}`.
    pub body: String,
}

/// Up to `limit` events after `seq`, oldest first.
pub fn after(
    conn: &mut AnyConnection,
    seq: i64,
    limit: i64,
) -> Result<Vec<LoggedEvent>, StoreError> {
    let rows: Vec<(Option<i64>, String, Option<String>, String)> = outbox_events::table
        .filter(outbox_events::seq.gt(seq))
        .order(outbox_events::seq.asc())
        .limit(limit)
        .select((
            outbox_events::seq,
            outbox_events::event_type,
            outbox_events::company,
            outbox_events::body,
        ))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .filter_map(|(seq, event_type, company, body)| {
            Some(LoggedEvent {
                seq: seq?,
                event_type,
                company,
                body,
            })
        })
        .collect())
}

/// The oldest and newest numbers still in the log (`None` when it is empty).
pub fn bounds(conn: &mut AnyConnection) -> Result<Option<(i64, i64)>, StoreError> {
    let (oldest, newest): (Option<i64>, Option<i64>) = outbox_events::table
        .select((
            diesel::dsl::min(outbox_events::seq),
            diesel::dsl::max(outbox_events::seq),
        ))
        .first(conn)?;
    Ok(oldest.zip(newest))
}

//! The outbox: events written in the same transaction as the change they describe, one delivery
//! per matching subscription, claimed by delivery workers with a lease and recorded attempt by
//! attempt. Per subscription and company only the oldest pending delivery is eligible, so a
//! receiver sees a company's events in the order they happened.

use chrono::{DateTime, Duration, NaiveDateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text, Timestamp};
use secrecy::SecretString;
use serde_json::{json, Value};

use crate::credentials::{now, to_utc, ConnectionState};
use crate::error::StoreError;
use crate::pool::{write_tx, AnyConnection};
use crate::schema::{outbox_events, webhook_attempts, webhook_deliveries, webhooks};
use crate::seal::KeyRing;
use crate::webhooks::WEBHOOK_SECRET;

pub const STATUS_CHANGED: &str = "connection.status_changed";
pub const TESTED: &str = "connection.tested";
pub const CREDENTIALS_UPDATED: &str = "credentials.updated";
pub const CREDENTIALS_DELETED: &str = "credentials.deleted";
pub const REFRESH_FAILED: &str = "access_token.refresh_failed";
pub const PING: &str = "webhook.ping";
pub const ALL_EVENTS: [&str; 5] = [
    STATUS_CHANGED,
    TESTED,
    CREDENTIALS_UPDATED,
    CREDENTIALS_DELETED,
    REFRESH_FAILED,
];

#[derive(Insertable)]
#[diesel(table_name = outbox_events)]
struct EventRow {
    id: String,
    event_type: String,
    company: Option<String>,
    body: String,
    created_at: NaiveDateTime,
    seq: Option<i64>,
}

#[derive(Insertable)]
#[diesel(table_name = webhook_deliveries)]
struct DeliveryRow {
    id: String,
    webhook_id: String,
    event_id: String,
    company: String,
    status: String,
    attempts: i64,
    next_attempt_at: NaiveDateTime,
    created_at: NaiveDateTime,
    delivered_at: Option<NaiveDateTime>,
    locked_until: Option<NaiveDateTime>,
    locked_by: Option<String>,
}

/// Whether a subscription's list names `value` (or `*`). A list that does not parse matches
/// nothing (the change being saved must not fail because of one damaged subscription), and says so.
fn matches(webhook_id: &str, list_json: &str, value: &str) -> bool {
    match serde_json::from_str::<Vec<String>>(list_json) {
        Ok(list) => list.iter().any(|v| v == "*" || v == value),
        Err(e) => {
            tracing::error!(webhook = %webhook_id, error = %e, "web-hook subscription has an unreadable list; it receives no events until it is recreated");
            false
        }
    }
}

/// Writes an event and its deliveries; call it inside the transaction of the change. `only`
/// restricts delivery to one subscription (pings). Returns the event id (`webhook-id`).
pub fn emit(
    conn: &mut AnyConnection,
    event_type: &str,
    company: Option<&str>,
    data: Value,
    only: Option<&str>,
) -> Result<String, StoreError> {
    crate::pool::event_written();
    let at = now();
    let id = format!("msg_{}", uuid::Uuid::now_v7().simple());
    let subs: Vec<(String, String, String)> = webhooks::table
        .filter(webhooks::enabled.eq(true))
        .select((webhooks::id, webhooks::events, webhooks::companies))
        .load(conn)?;
    let targets: Vec<String> = subs
        .into_iter()
        .filter(|(webhook_id, events, companies)| match only {
            Some(target) => target == webhook_id,
            None => {
                matches(webhook_id, events, event_type)
                    && company.is_some_and(|c| matches(webhook_id, companies, c))
            }
        })
        .map(|(webhook_id, _, _)| webhook_id)
        .collect();
    // Every event is kept, delivered or not: live streams (§11) read the same log.
    let seq = next_seq(conn)?;
    let body = json!({"type": event_type, "timestamp": at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true), "data": data});
    diesel::insert_into(outbox_events::table)
        .values(&EventRow {
            id: id.clone(),
            event_type: event_type.to_string(),
            company: company.map(str::to_string),
            body: body.to_string(),
            created_at: at.naive_utc(),
            seq: Some(seq),
        })
        .execute(conn)?;
    for webhook_id in targets {
        diesel::insert_into(webhook_deliveries::table)
            .values(&DeliveryRow {
                id: uuid::Uuid::now_v7().to_string(),
                webhook_id,
                event_id: id.clone(),
                company: company.unwrap_or("").to_string(),
                status: "pending".into(),
                attempts: 0,
                next_attempt_at: at.naive_utc(),
                created_at: at.naive_utc(),
                delivered_at: None,
                locked_until: None,
                locked_by: None,
            })
            .execute(conn)?;
    }
    Ok(id)
}

/// The next event number, in commit order: on PostgreSQL event writers take turns on an advisory
/// lock held to the end of their transaction (SQLite's write transactions already take turns).
fn next_seq(conn: &mut AnyConnection) -> Result<i64, StoreError> {
    if let AnyConnection::Postgresql(pg) = conn {
        diesel::sql_query("SELECT pg_advisory_xact_lock(7204131169)").execute(pg)?;
    }
    let max: Option<Option<i64>> = outbox_events::table
        .select(diesel::dsl::max(outbox_events::seq))
        .first(conn)
        .optional()?;
    Ok(max.flatten().unwrap_or(0) + 1)
}

/// Writes `connection.status_changed`, in the transaction of whatever changed the state.
/// `error` is the classified error that caused it (or null); `test_id` the test, if one did.
pub fn status_changed(
    conn: &mut AnyConnection,
    company: &str,
    previous: ConnectionState,
    state: ConnectionState,
    error: Value,
    test_id: Option<&str>,
) -> Result<String, StoreError> {
    let data = json!({
        "company": company, "previous_state": previous.as_str(), "state": state.as_str(),
        "error": error, "test_id": test_id,
    });
    emit(conn, STATUS_CHANGED, Some(company), data, None)
}

/// A delivery a worker holds the lease of.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub delivery_id: String,
    /// The instance that holds the lease: only it may record the attempt.
    pub owner: String,
    pub webhook_id: String,
    pub url: String,
    /// `None` when the subscription's sealed secret does not open: that delivery fails on its own
    /// (logged here, once per claim), the others of the batch go ahead.
    pub secret: Option<SecretString>,
    pub event_id: String,
    pub event_type: String,
    pub body: String,
    /// 1 for the first attempt.
    pub attempt: i64,
}

/// delivery id, event id, attempts so far, event type, body, webhook id, url, sealed secret, key id
type ClaimRow = (
    String,
    String,
    i64,
    String,
    String,
    String,
    String,
    Vec<u8>,
    String,
);

#[derive(QueryableByName)]
struct DueRow {
    #[diesel(sql_type = Text)]
    id: String,
}

const DUE: &str = "SELECT d.id FROM webhook_deliveries d \
    WHERE d.status = 'pending' \
      AND ((d.attempts = 0 AND d.next_attempt_at <= {first}) OR (d.attempts > 0 AND d.next_attempt_at <= {now})) \
      AND (d.locked_until IS NULL OR d.locked_until < {now}) \
      AND NOT EXISTS (SELECT 1 FROM webhook_deliveries e WHERE e.webhook_id = d.webhook_id AND e.company = d.company \
          AND e.status = 'pending' AND (e.created_at < d.created_at OR (e.created_at = d.created_at AND e.id < d.id))) \
    ORDER BY d.created_at, d.id LIMIT {limit}";

/// Claims up to `limit` due deliveries for `owner` with a lease. `first_delay` is the retry
/// schedule's first entry (the wait before the first attempt).
pub fn claim(
    conn: &mut AnyConnection,
    keys: &KeyRing,
    owner: &str,
    first_delay: Duration,
    lease: Duration,
    limit: i64,
) -> Result<Vec<Claimed>, StoreError> {
    write_tx(conn, |conn| {
        let at = now();
        let (now_n, first_n) = (at.naive_utc(), (at - first_delay).naive_utc());
        let due: Vec<DueRow> = match &mut *conn {
            // Rows another instance is claiming are skipped, never waited for or taken twice.
            AnyConnection::Postgresql(pg) => {
                let sql = DUE
                    .replace("{first}", "$1")
                    .replace("{now}", "$2")
                    .replace("{limit}", "$3")
                    + " FOR UPDATE OF d SKIP LOCKED";
                diesel::sql_query(sql)
                    .bind::<Timestamp, _>(first_n)
                    .bind::<Timestamp, _>(now_n)
                    .bind::<BigInt, _>(limit)
                    .load(pg)?
            }
            AnyConnection::Sqlite(lite) => {
                let sql = DUE
                    .replace("{first}", "?1")
                    .replace("{now}", "?2")
                    .replace("{limit}", "?3");
                diesel::sql_query(sql)
                    .bind::<Timestamp, _>(first_n)
                    .bind::<Timestamp, _>(now_n)
                    .bind::<BigInt, _>(limit)
                    .load(lite)?
            }
        };
        if due.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<String> = due.into_iter().map(|r| r.id).collect();
        diesel::update(webhook_deliveries::table.filter(webhook_deliveries::id.eq_any(&ids)))
            .set((
                webhook_deliveries::locked_until.eq(Some((at + lease).naive_utc())),
                webhook_deliveries::locked_by.eq(Some(owner)),
            ))
            .execute(conn)?;
        let rows: Vec<ClaimRow> = webhook_deliveries::table
            .inner_join(outbox_events::table.on(outbox_events::id.eq(webhook_deliveries::event_id)))
            .inner_join(webhooks::table.on(webhooks::id.eq(webhook_deliveries::webhook_id)))
            .filter(webhook_deliveries::id.eq_any(&ids))
            .select((
                webhook_deliveries::id,
                webhook_deliveries::event_id,
                webhook_deliveries::attempts,
                outbox_events::event_type,
                outbox_events::body,
                webhooks::id,
                webhooks::url,
                webhooks::secret,
                webhooks::key_id,
            ))
            .load(conn)?;
        rows.into_iter()
            .map(
                |(
                    delivery_id,
                    event_id,
                    attempts,
                    event_type,
                    body,
                    webhook_id,
                    url,
                    secret,
                    key_id,
                )| {
                    let secret = match keys.open(&webhook_id, WEBHOOK_SECRET, &key_id, &secret) {
                        Ok(secret) => Some(secret),
                        Err(e) => {
                            tracing::error!(webhook = %webhook_id, error = %e, "web-hook secret does not open; its deliveries fail until the secret is rotated");
                            None
                        }
                    };
                    Ok(Claimed {
                        owner: owner.to_string(),
                        secret,
                        delivery_id,
                        webhook_id,
                        url,
                        event_id,
                        event_type,
                        body,
                        attempt: attempts + 1,
                    })
                },
            )
            .collect()
    })
}

/// How one attempt ended.
#[derive(Debug, Clone)]
pub struct AttemptResult {
    pub delivered: bool,
    pub status_code: Option<u16>,
    pub duration_ms: u64,
    pub error: Option<String>,
}

#[derive(Insertable)]
#[diesel(table_name = webhook_attempts)]
struct AttemptRow {
    id: String,
    delivery_id: String,
    webhook_id: String,
    event_id: String,
    event_type: String,
    attempt: i64,
    at: NaiveDateTime,
    status_code: Option<i64>,
    duration_ms: i64,
    outcome: String,
    error: Option<String>,
}

/// What `record` answers for an attempt whose lease another instance holds now.
pub const SUPERSEDED: &str = "superseded";

/// Records an attempt and schedules the next one from `schedule` (seconds before each attempt),
/// or ends the delivery as `delivered` or, after the last attempt, `failed`. Returns the
/// delivery's status afterwards.
pub fn record(
    conn: &mut AnyConnection,
    claimed: &Claimed,
    result: &AttemptResult,
    schedule: &[u64],
) -> Result<&'static str, StoreError> {
    write_tx(conn, |conn| {
        let at = now();
        let status = if result.delivered {
            "delivered"
        } else if claimed.attempt as usize >= schedule.len() {
            "failed"
        } else {
            "pending"
        };
        let delay = schedule.get(claimed.attempt as usize).copied().unwrap_or(0);
        // Fenced by the lease: an instance whose lease ran out (and whose delivery another
        // instance may have claimed and attempted since) records nothing.
        let updated = diesel::update(
            webhook_deliveries::table
                .find(&claimed.delivery_id)
                .filter(webhook_deliveries::locked_by.eq(&claimed.owner))
                .filter(webhook_deliveries::attempts.eq(claimed.attempt - 1)),
        )
        .set((
            webhook_deliveries::status.eq(status),
            webhook_deliveries::attempts.eq(claimed.attempt),
            webhook_deliveries::next_attempt_at
                .eq((at + Duration::seconds(delay as i64)).naive_utc()),
            webhook_deliveries::delivered_at.eq(result.delivered.then_some(at.naive_utc())),
            webhook_deliveries::locked_until.eq(None::<NaiveDateTime>),
            webhook_deliveries::locked_by.eq(None::<String>),
        ))
        .execute(conn)?;
        if updated == 0 {
            return Ok(SUPERSEDED);
        }
        diesel::insert_into(webhook_attempts::table)
            .values(&AttemptRow {
                id: uuid::Uuid::now_v7().to_string(),
                delivery_id: claimed.delivery_id.clone(),
                webhook_id: claimed.webhook_id.clone(),
                event_id: claimed.event_id.clone(),
                event_type: claimed.event_type.clone(),
                attempt: claimed.attempt,
                at: at.naive_utc(),
                status_code: result.status_code.map(i64::from),
                duration_ms: result.duration_ms as i64,
                outcome: if result.delivered {
                    "delivered".into()
                } else {
                    "failed".into()
                },
                error: result.error.clone(),
            })
            .execute(conn)?;
        Ok(status)
    })
}

/// Records a batch of attempts in one transaction (one lock and one commit instead of one each).
pub fn record_all(
    conn: &mut AnyConnection,
    results: &[(Claimed, AttemptResult)],
    schedule: &[u64],
) -> Result<Vec<&'static str>, StoreError> {
    write_tx(conn, |conn| {
        results
            .iter()
            .map(|(c, r)| record(conn, c, r, schedule))
            .collect()
    })
}

/// Pending deliveries and the creation time of the oldest, for the metrics.
pub fn depth(conn: &mut AnyConnection) -> Result<(i64, Option<DateTime<Utc>>), StoreError> {
    let pending = webhook_deliveries::table.filter(webhook_deliveries::status.eq("pending"));
    let count: i64 = pending.count().get_result(conn)?;
    let oldest: Option<NaiveDateTime> = webhook_deliveries::table
        .filter(webhook_deliveries::status.eq("pending"))
        .select(diesel::dsl::min(webhook_deliveries::created_at))
        .get_result(conn)?;
    Ok((count, oldest.map(to_utc)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::webhooks::{create, NewWebhook};

    /// An instance whose lease ran out, and whose delivery another instance claimed since, may
    /// not record its attempt: the delivery and its log are the new holder's.
    #[test]
    fn only_the_lease_holder_records_an_attempt() {
        let dir = tempfile::TempDir::new().unwrap();
        let db = crate::pool::test_sqlite(dir.path());
        let mut conn = db.get().unwrap();
        let keys = KeyRing::parse(&KeyRing::generate_spec("k1")).unwrap();
        let hook = create(
            &mut conn,
            &keys,
            NewWebhook {
                url: "https://erp.example/hook".into(),
                events: vec![CREDENTIALS_UPDATED.into()],
                companies: vec!["acme".into()],
                description: None,
                created_by: "t".into(),
            },
            &SecretString::from("whsec_dGVzdA=="),
        )
        .unwrap();
        emit(
            &mut conn,
            CREDENTIALS_UPDATED,
            Some("acme"),
            json!({"company": "acme"}),
            None,
        )
        .unwrap();
        let lease = Duration::seconds(15);
        let first = claim(&mut conn, &keys, "instance-a", Duration::zero(), lease, 10).unwrap();
        assert_eq!(first.len(), 1);
        // A's lease runs out; B claims the delivery.
        diesel::update(webhook_deliveries::table)
            .set(
                webhook_deliveries::locked_until
                    .eq(Some((now() - Duration::seconds(1)).naive_utc())),
            )
            .execute(&mut conn)
            .unwrap();
        let second = claim(&mut conn, &keys, "instance-b", Duration::zero(), lease, 10).unwrap();
        assert_eq!(second.len(), 1);
        let failed = AttemptResult {
            delivered: false,
            status_code: Some(503),
            duration_ms: 1,
            error: Some("answered HTTP 503".into()),
        };
        let late = record(&mut conn, &first[0], &failed, &[0, 60]).unwrap();
        assert_eq!(late, SUPERSEDED);
        let attempts: i64 = webhook_attempts::table
            .count()
            .get_result(&mut conn)
            .unwrap();
        assert_eq!(attempts, 0, "nothing recorded by the old holder");
        let delivered = AttemptResult {
            delivered: true,
            status_code: Some(204),
            duration_ms: 1,
            error: None,
        };
        assert_eq!(
            record(&mut conn, &second[0], &delivered, &[0, 60]).unwrap(),
            "delivered"
        );
        let attempts: Vec<String> = webhook_attempts::table
            .filter(webhook_attempts::webhook_id.eq(&hook.id))
            .select(webhook_attempts::outcome)
            .load(&mut conn)
            .unwrap();
        assert_eq!(attempts, vec!["delivered".to_string()]);
    }
}

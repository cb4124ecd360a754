//! How long the records that only grow are kept: test history, the audit trail, web-hook
//! delivery attempts and the event log. One sweep deletes what is past its time, each kind in a
//! transaction of its own; what the service still needs is never deleted (a company's last test,
//! an event with a delivery still pending).

use chrono::{DateTime, Duration, Utc};
use diesel::prelude::*;

use crate::error::StoreError;
use crate::pool::{write_tx, AnyConnection};
use crate::schema::{
    audit_entries, connection_tests, credentials, outbox_events, webhook_attempts, webhook_audit,
    webhook_deliveries,
};

/// How long each kind is kept.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    pub test_history: Duration,
    pub audit: Duration,
    pub deliveries: Duration,
    pub events: Duration,
}

/// Rows deleted by one sweep, per kind.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Swept {
    pub tests: usize,
    pub audit: usize,
    pub deliveries: usize,
    pub attempts: usize,
    pub events: usize,
}

pub fn sweep(
    conn: &mut AnyConnection,
    keep: &Retention,
    now: DateTime<Utc>,
) -> Result<Swept, StoreError> {
    let before = |d: Duration| (now - d).naive_utc();
    let tests = write_tx(conn, |conn| {
        // A company's last test stays: its status shows it.
        let last: Vec<Option<String>> = credentials::table
            .select(credentials::last_test_id)
            .filter(credentials::last_test_id.is_not_null())
            .load(conn)?;
        let last: Vec<String> = last.into_iter().flatten().collect();
        Ok(diesel::delete(
            connection_tests::table
                .filter(connection_tests::started_at.lt(before(keep.test_history)))
                .filter(connection_tests::id.ne_all(last)),
        )
        .execute(conn)?)
    })?;
    let audit = write_tx(conn, |conn| {
        Ok(
            diesel::delete(audit_entries::table.filter(audit_entries::at.lt(before(keep.audit))))
                .execute(conn)?
                + diesel::delete(
                    webhook_audit::table.filter(webhook_audit::at.lt(before(keep.audit))),
                )
                .execute(conn)?,
        )
    })?;
    let (deliveries, attempts) = write_tx(conn, |conn| {
        let cutoff = before(keep.deliveries);
        let attempts =
            diesel::delete(webhook_attempts::table.filter(webhook_attempts::at.lt(cutoff)))
                .execute(conn)?;
        // Finished deliveries only: a pending one is work still to do.
        let deliveries = diesel::delete(
            webhook_deliveries::table
                .filter(webhook_deliveries::status.ne("pending"))
                .filter(webhook_deliveries::created_at.lt(cutoff)),
        )
        .execute(conn)?;
        Ok((deliveries, attempts))
    })?;
    let events = write_tx(conn, |conn| {
        let pending = webhook_deliveries::table
            .filter(webhook_deliveries::status.eq("pending"))
            .select(webhook_deliveries::event_id);
        // The newest event always stays: numbering continues after it, so a stream's
        // Last-Event-ID never meets a number used twice.
        let newest: Option<i64> = outbox_events::table
            .select(diesel::dsl::max(outbox_events::seq))
            .first(conn)?;
        Ok(diesel::delete(
            outbox_events::table
                .filter(outbox_events::created_at.lt(before(keep.events)))
                .filter(outbox_events::id.ne_all(pending))
                .filter(outbox_events::seq.lt(newest.unwrap_or(i64::MAX))),
        )
        .execute(conn)?)
    })?;
    Ok(Swept {
        tests,
        audit,
        deliveries,
        attempts,
        events,
    })
}

#[cfg(test)]
mod tests {
    use diesel::sql_types::{Text, Timestamp};

    use super::*;
    use crate::credentials::{Change, CredentialsChange};
    use crate::{CompanyId, KeyRing};

    fn insert(conn: &mut AnyConnection, sql: &str, id: &str, at: chrono::NaiveDateTime) {
        diesel::sql_query(sql)
            .bind::<Text, _>(id)
            .bind::<Timestamp, _>(at)
            .execute(conn)
            .unwrap();
    }

    #[test]
    fn a_sweep_deletes_what_is_past_its_time_and_keeps_what_is_needed() {
        let dir = tempfile::TempDir::new().unwrap();
        let db = crate::pool::test_sqlite(dir.path());
        let mut conn = db.get().unwrap();
        let keys = KeyRing::parse(&KeyRing::generate_spec("k1")).unwrap();
        let change = CredentialsChange {
            application_id: Change::Set(domain::ApplicationId::parse("app").unwrap().unwrap()),
            shared_secret: Change::Keep,
            refresh_token: Change::Keep,
            profile_id: Change::Keep,
            ..Default::default()
        };
        let acme = CompanyId::parse("acme").unwrap();
        crate::credentials::save(&mut conn, &keys, &acme, &change, None, "t").unwrap();
        let now = Utc::now();
        let (old, new) = ((now - Duration::days(1000)).naive_utc(), now.naive_utc());
        let test = "INSERT INTO connection_tests (id, company, candidate, outcome, result, started_at, triggered_by) VALUES (?, 'acme', false, 'failed', '{}', ?, 't')";
        for (id, at) in [("t-old", old), ("t-last", old), ("t-new", new)] {
            insert(&mut conn, test, id, at);
        }
        diesel::update(credentials::table)
            .set(credentials::last_test_id.eq(Some("t-last")))
            .execute(&mut conn)
            .unwrap();
        insert(&mut conn, "INSERT INTO audit_entries (id, company, at, actor, action, fields) VALUES (?, 'acme', ?, 't', 'updated', '[]')", "a-old", old);
        // The newest event stays however old it is: numbering continues after it.
        for (seq, id, at) in [
            (10, "e-old", old),
            (11, "e-old-pending", old),
            (12, "e-new", new),
            (13, "e-newest", old),
        ] {
            let event = format!("INSERT INTO outbox_events (id, event_type, company, body, created_at, seq) VALUES (?, 'credentials.updated', 'acme', '{{}}', ?, {seq})");
            insert(&mut conn, &event, id, at);
        }
        let delivery = |status: &str| {
            format!("INSERT INTO webhook_deliveries (id, webhook_id, event_id, company, status, attempts, next_attempt_at, created_at) VALUES (?, 'wh', 'e-old-pending', 'acme', '{status}', 1, ?, '2000-01-01 00:00:00')")
        };
        insert(&mut conn, &delivery("delivered"), "d-done", old);
        insert(&mut conn, &delivery("pending"), "d-pending", old);
        insert(&mut conn, "INSERT INTO webhook_attempts (id, delivery_id, webhook_id, event_id, event_type, attempt, at, duration_ms, outcome) VALUES (?, 'd-done', 'wh', 'e-old', 'credentials.updated', 1, ?, 1, 'delivered')", "x-old", old);

        let keep = Retention {
            test_history: Duration::days(90),
            audit: Duration::days(400),
            deliveries: Duration::days(30),
            events: Duration::hours(72),
        };
        let swept = sweep(&mut conn, &keep, now).unwrap();
        assert_eq!(
            swept,
            Swept {
                tests: 1,
                audit: 1,
                deliveries: 1,
                attempts: 1,
                events: 1
            }
        );
        let tests: Vec<String> = connection_tests::table
            .select(connection_tests::id)
            .order(connection_tests::id.asc())
            .load(&mut conn)
            .unwrap();
        assert_eq!(tests, ["t-last", "t-new"], "the last test stays");
        let events: Vec<String> = outbox_events::table
            .filter(outbox_events::id.like("e-%"))
            .select(outbox_events::id)
            .order(outbox_events::id.asc())
            .load(&mut conn)
            .unwrap();
        assert_eq!(
            events,
            ["e-new", "e-newest", "e-old-pending"],
            "pending work and the newest event stay"
        );
        let audit: i64 = audit_entries::table.count().get_result(&mut conn).unwrap();
        assert_eq!(audit, 1, "the save's own entry stays");
        assert_eq!(sweep(&mut conn, &keep, now).unwrap(), Swept::default());
    }
}

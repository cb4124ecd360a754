//! Scheduled health checks: which complete connections are due for a re-test. Claiming moves a
//! company's next check one interval ahead in the same transaction, so with several instances
//! each company is checked once per interval.

use chrono::{DateTime, Duration, Utc};
use diesel::prelude::*;
use rand::Rng;

use crate::credentials::now;
use crate::credentials::AuthMethod;
use crate::error::StoreError;
use crate::pool::{write_tx, AnyConnection};
use crate::schema::credentials;
use domain::CompanyId;

/// Newly complete connections scheduled by one look at the schedule.
const SCHEDULE_BATCH: i64 = 5000;
/// How many moments one look spreads the connections it schedules over.
const SPREAD_SLOTS: usize = 64;

/// What one look at the schedule found.
#[derive(Debug, Default)]
pub struct Due {
    /// Checks claimed for this instance to run now.
    pub claimed: Vec<CompanyId>,
    /// When the oldest check still due (before this claim) was due: how far behind the schedule is.
    pub oldest: Option<DateTime<Utc>>,
}

/// Schedules newly complete connections at a random moment within one interval (so checks spread
/// over the interval), then claims up to `limit` that are due (none with a `limit` of 0, which
/// only reads how far behind the schedule is).
pub fn claim_due(
    conn: &mut AnyConnection,
    interval: Duration,
    limit: i64,
) -> Result<Due, StoreError> {
    write_tx(conn, |conn| {
        let at = now();
        // Complete by the company's method (contract §3), as `credentials::missing_fields` says.
        let by_refresh_token = credentials::auth_method
            .eq(AuthMethod::RefreshToken.as_str())
            .and(credentials::refresh_token.is_not_null());
        let by_soap = credentials::auth_method
            .eq(AuthMethod::Soap.as_str())
            .and(credentials::developer_key.is_not_null())
            .and(credentials::password.is_not_null())
            .and(credentials::account_id.is_not_null());
        let complete = credentials::application_id
            .is_not_null()
            .and(credentials::shared_secret.is_not_null())
            .and(by_refresh_token.or(by_soap));
        // A bounded batch a look, in a few statements: a fleet made complete at once (a first
        // start after an upgrade, a bulk import) is scheduled over a few looks, not in one long
        // transaction of one statement per company.
        let unscheduled: Vec<String> = credentials::table
            .filter(complete)
            .filter(credentials::next_check_at.is_null())
            .select(credentials::company)
            .limit(SCHEDULE_BATCH)
            .load(conn)?;
        let span = interval.num_milliseconds().max(1);
        let group = unscheduled.len().div_ceil(SPREAD_SLOTS).max(1);
        let groups = unscheduled.len().div_ceil(group).max(1) as i64;
        let share = (span / groups).max(1);
        for (slot, companies) in unscheduled.chunks(group).enumerate() {
            // Each group at its own random moment within its share of the interval.
            let offset = share * slot as i64 + rand::thread_rng().gen_range(0..share);
            let next = (at + Duration::milliseconds(offset)).naive_utc();
            diesel::update(credentials::table.filter(credentials::company.eq_any(companies)))
                .set(credentials::next_check_at.eq(Some(next)))
                .execute(conn)?;
        }
        let oldest: Option<chrono::NaiveDateTime> = credentials::table
            .filter(complete)
            .filter(credentials::next_check_at.le(at.naive_utc()))
            .select(diesel::dsl::min(credentials::next_check_at))
            .first(conn)?;
        if limit == 0 {
            return Ok(Due {
                claimed: Vec::new(),
                oldest: oldest.map(|t| t.and_utc()),
            });
        }
        let due = credentials::table
            .filter(complete)
            .filter(credentials::next_check_at.le(at.naive_utc()))
            .order(credentials::next_check_at.asc())
            .limit(limit)
            .select(credentials::company);
        let claimed: Vec<String> = match &mut *conn {
            // Rows another instance is claiming right now are skipped, not waited for.
            AnyConnection::Postgresql(pg) => due.for_update().skip_locked().load(pg)?,
            other => due.load(other)?,
        };
        let next = (at + interval).naive_utc();
        for company in &claimed {
            diesel::update(credentials::table.find(company))
                .set(credentials::next_check_at.eq(Some(next)))
                .execute(conn)?;
        }
        Ok(Due {
            claimed: claimed
                .into_iter()
                .filter_map(|c| CompanyId::parse(&c).ok())
                .collect(),
            oldest: oldest.map(|t| t.and_utc()),
        })
    })
}

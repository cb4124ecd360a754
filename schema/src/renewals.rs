//! Refresh ahead (contract §6): which companies' tokens are renewed before they run out. A job's
//! token request marks its company as wanted; storing a token sets when it is renewed (a moment
//! spread over the window before it runs out); claiming moves that moment ahead in the same
//! transaction, so with several instances one renews each token.

use chrono::{DateTime, Duration, Utc};
use diesel::prelude::*;

use crate::credentials::now;
use crate::error::StoreError;
use crate::pool::{write_tx, AnyConnection};
use crate::schema::credentials;
use domain::{CompanyId, ConnectionState};

/// Records that a job asked for the company's token just now.
pub fn note_wanted(conn: &mut AnyConnection, company: &CompanyId) -> Result<(), StoreError> {
    diesel::update(credentials::table.find(company.as_str()))
        .set(credentials::token_wanted_at.eq(Some(now().naive_utc())))
        .execute(conn)?;
    Ok(())
}

/// Claims up to `limit` companies whose renewal is due and whose jobs asked within `keep_warm`,
/// moving each one's renewal `hold` ahead (a renewal that fails is tried again then).
pub fn claim_due(
    conn: &mut AnyConnection,
    keep_warm: Duration,
    hold: Duration,
    limit: i64,
) -> Result<Vec<CompanyId>, StoreError> {
    write_tx(conn, |conn| {
        let at = now();
        // Only connections that work: a failed one waits for its credentials to be fixed.
        let usable = [
            ConnectionState::Connected.as_str(),
            ConnectionState::Untested.as_str(),
        ];
        let due = credentials::table
            .filter(credentials::renew_at.le(at.naive_utc()))
            .filter(credentials::token_wanted_at.ge((at - keep_warm).naive_utc()))
            .filter(credentials::state.eq_any(usable))
            .order(credentials::renew_at.asc())
            .limit(limit)
            .select(credentials::company);
        let claimed: Vec<String> = match &mut *conn {
            // Rows another instance is claiming right now are skipped, not waited for.
            AnyConnection::Postgresql(pg) => due.for_update().skip_locked().load(pg)?,
            other => due.load(other)?,
        };
        if !claimed.is_empty() {
            diesel::update(credentials::table.filter(credentials::company.eq_any(&claimed)))
                .set(credentials::renew_at.eq(Some((at + hold).naive_utc())))
                .execute(conn)?;
        }
        Ok(claimed
            .into_iter()
            .filter_map(|c| CompanyId::parse(&c).ok())
            .collect())
    })
}

/// When a token obtained at `obtained_at` that runs out at `expires_at` is renewed: a moment
/// between `window` and `margin` before it runs out, by `spread` (0 to 1), so renewals of tokens
/// obtained together (the top of the hour) do not fall due together. Never in the token's first
/// half-life; `None` when no moment is left before the margin (a job's next request refreshes).
pub fn renewal_moment(
    obtained_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    window: Duration,
    margin: Duration,
    spread: f64,
) -> Option<DateTime<Utc>> {
    let start = (expires_at - window).max(obtained_at + (expires_at - obtained_at) / 2);
    let end = expires_at - margin;
    if end <= start {
        return None;
    }
    let span = (end - start).num_milliseconds() as f64;
    Some(start + Duration::milliseconds((span * spread.clamp(0.0, 1.0)) as i64))
}

#[cfg(test)]
mod tests {
    use super::renewal_moment;
    use chrono::{Duration, Utc};

    #[test]
    fn renewals_fall_between_the_window_and_the_margin() {
        let obtained = Utc::now();
        let expires = obtained + Duration::seconds(3600);
        let (window, margin) = (Duration::seconds(900), Duration::seconds(300));
        let at = |spread| renewal_moment(obtained, expires, window, margin, spread);
        assert_eq!(at(0.0), Some(expires - window));
        assert_eq!(at(1.0), Some(expires - margin));
        assert_eq!(expires - at(0.5).unwrap(), Duration::seconds(600));
    }

    #[test]
    fn short_tokens_are_renewed_after_half_their_life_or_not_at_all() {
        let obtained = Utc::now();
        let (window, margin) = (Duration::seconds(900), Duration::seconds(300));
        let expires = obtained + Duration::seconds(1000);
        let at = renewal_moment(obtained, expires, window, margin, 0.0);
        assert_eq!(at, Some(obtained + Duration::seconds(500)));
        let short = obtained + Duration::seconds(500);
        assert_eq!(renewal_moment(obtained, short, window, margin, 0.5), None);
    }
}

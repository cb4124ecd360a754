//! The access-token cache for connector jobs and the refresh lease, as the token broker sees them:
//! a `Snapshot` of what its decision needs, the lease it takes, and the fenced writes of a
//! refresh's outcome. Nobody holds a database connection while ChannelAdvisor is being called:
//! the lease is taken and released in short transactions.

use chrono::{DateTime, Duration, Utc};
use diesel::prelude::*;
use domain::TestError;
use secrecy::{ExposeSecret, SecretString};

use crate::connection::{store_token, ObtainedToken, StateChange, ACCESS_TOKEN};
use crate::credentials::{
    load_row_for_update, now, open_row, row_missing, to_utc, ConnectionState, Credentials,
    CredentialsRow,
};
use crate::error::StoreError;
use crate::pool::{on_backend, AnyConnection};
use crate::schema::{access_tokens, credentials};
use crate::seal::KeyRing;
use crate::visibility::mark_visible_change;
use domain::CompanyId;

#[derive(Debug, Clone)]
pub struct CachedToken {
    pub access_token: SecretString,
    pub expires_at: DateTime<Utc>,
    /// When it was stored: a caller that asked before this gets a token fresh from upstream.
    pub obtained_at: DateTime<Utc>,
}

/// A refresh under way somewhere: its holder (one per refresh attempt) and when it runs out.
#[derive(Debug, Clone)]
pub struct Lease {
    pub holder: String,
    pub until: DateTime<Utc>,
}

/// The last refresh's error, kept for the callers that waited on it and, when permanent, for
/// a minute so retrying jobs do not hammer ChannelAdvisor.
#[derive(Debug, Clone)]
pub struct Remembered {
    pub error: TestError,
    pub at: DateTime<Utc>,
}

/// What the token decision needs to know about a company's row.
#[derive(Debug, Clone)]
pub struct TokenRow {
    pub state: ConnectionState,
    pub missing: Vec<&'static str>,
    pub lease: Option<Lease>,
    /// Only an error about these very values (this version).
    pub remembered: Option<Remembered>,
}

/// A company's row and cached token, as one decision reads them.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub row: Option<TokenRow>,
    pub cached: Option<CachedToken>,
}

/// A snapshot read under the row lock, inside a write transaction: the lease can be taken from it.
pub struct Locked {
    pub snapshot: Snapshot,
    row: Option<CredentialsRow>,
}

/// A plain read: the row and the cached token of its current values.
pub fn snapshot(
    conn: &mut AnyConnection,
    keys: &KeyRing,
    company: &CompanyId,
) -> Result<Snapshot, StoreError> {
    let row = on_backend!(&mut *conn, |c| credentials::table
        .find(company.as_str())
        .select(CredentialsRow::as_select())
        .load(c))?
    .pop();
    snapshot_of(conn, keys, row.as_ref())
}

/// `snapshot` with the row locked; call inside `write_tx`.
pub fn lock(
    conn: &mut AnyConnection,
    keys: &KeyRing,
    company: &CompanyId,
) -> Result<Locked, StoreError> {
    let row = load_row_for_update(conn, company.as_str())?;
    let snapshot = snapshot_of(conn, keys, row.as_ref())?;
    Ok(Locked { snapshot, row })
}

impl Locked {
    /// Takes the lease for `holder` until `until`; the credentials to refresh with.
    pub fn lease(
        self,
        conn: &mut AnyConnection,
        keys: &KeyRing,
        holder: &str,
        until: DateTime<Utc>,
    ) -> Result<Credentials, StoreError> {
        let row = self.row.ok_or(StoreError::NotFound)?;
        on_backend!(conn, |c| diesel::update(
            credentials::table.find(row.company.as_str())
        )
        .set((
            credentials::token_lease_until.eq(Some(until.naive_utc())),
            credentials::token_lease_owner.eq(Some(holder)),
        ))
        .execute(c))?;
        open_row(keys, row)
    }
}

fn snapshot_of(
    conn: &mut AnyConnection,
    keys: &KeyRing,
    row: Option<&CredentialsRow>,
) -> Result<Snapshot, StoreError> {
    let Some(row) = row else {
        return Ok(Snapshot::default());
    };
    let token: Option<(
        String,
        Vec<u8>,
        chrono::NaiveDateTime,
        chrono::NaiveDateTime,
    )> = on_backend!(conn, |c| access_tokens::table
        .find(row.company.as_str())
        .filter(access_tokens::credentials_version.eq(row.version))
        .select((
            access_tokens::key_id,
            access_tokens::token,
            access_tokens::expires_at,
            access_tokens::obtained_at,
        ))
        .load(c))?
    .pop();
    let cached = token
        .map(|(key_id, bytes, expires_at, obtained_at)| {
            Ok::<_, StoreError>(CachedToken {
                access_token: keys.open(row.company.as_str(), ACCESS_TOKEN, &key_id, &bytes)?,
                expires_at: to_utc(expires_at),
                obtained_at: to_utc(obtained_at),
            })
        })
        .transpose()?;
    Ok(Snapshot {
        row: Some(token_row(row)?),
        cached,
    })
}

fn token_row(row: &CredentialsRow) -> Result<TokenRow, StoreError> {
    let lease = match (&row.token_lease_owner, row.token_lease_until) {
        (Some(holder), Some(until)) => Some(Lease {
            holder: holder.clone(),
            until: to_utc(until),
        }),
        _ => None,
    };
    let remembered = match (&row.token_error, row.token_error_at) {
        (Some(json), Some(at)) if row.token_error_version == Some(row.version) => {
            // Written by `finish_err` from a `TestError`; one that does not read is an error.
            let error = serde_json::from_str(json).map_err(|e| {
                StoreError::Worker(format!(
                    "company '{}' has an unreadable remembered token error: {e}",
                    row.company
                ))
            })?;
            Some(Remembered {
                error,
                at: to_utc(at),
            })
        }
        _ => None,
    };
    Ok(TokenRow {
        state: row.state,
        missing: row_missing(row),
        lease,
        remembered,
    })
}

/// What became of a refresh's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// Written, the lease released.
    Stored,
    /// The credentials were saved while upstream was asked: the lease is released and a rotated
    /// refresh token kept, but the access token (of the old values) is not cached.
    Outdated,
    /// This attempt no longer holds the lease (it ran out and another took it, or the company
    /// was deleted): nothing was written.
    NotHolder,
}

/// A successful exchange, for `finish_ok`.
pub struct Exchanged<'a> {
    pub company: &'a CompanyId,
    pub holder: &'a str,
    /// The credentials version the exchange was made with.
    pub version: i64,
    /// The refresh token the exchange spent, if any.
    pub spent: Option<&'a SecretString>,
    pub token: &'a ObtainedToken,
    /// Cache the access token (not for a test of candidate values).
    pub cache: bool,
    /// When refresh ahead renews the cached token (`None`: refresh ahead is off).
    pub renew_at: Option<DateTime<Utc>>,
}

/// Locks the row and checks the lease is still `holder`'s; `None` when it is not (fenced).
fn held(
    conn: &mut AnyConnection,
    company: &CompanyId,
    holder: &str,
) -> Result<Option<CredentialsRow>, StoreError> {
    let row = load_row_for_update(conn, company.as_str())?;
    Ok(row.filter(|r| r.token_lease_owner.as_deref() == Some(holder)))
}

/// Releases the lease; with `clear_error`, also forgets the last refresh's error.
fn release(conn: &mut AnyConnection, company: &str, clear_error: bool) -> Result<(), StoreError> {
    let lease = (
        credentials::token_lease_until.eq(None::<chrono::NaiveDateTime>),
        credentials::token_lease_owner.eq(None::<String>),
    );
    let row = credentials::table.find(company);
    // On the backend's own connection: a refresh burst writes these a hundred times at once.
    if clear_error {
        let set = (lease, credentials::token_error.eq(None::<String>));
        on_backend!(conn, |c| diesel::update(row).set(set).execute(c))?;
    } else {
        on_backend!(conn, |c| diesel::update(row).set(lease).execute(c))?;
    }
    Ok(())
}

/// Stores a refresh's new token (and a rotated refresh token) if the lease is still the
/// exchange's. A rotated refresh token replaces the stored one whenever the stored one is the
/// token the exchange spent, even when other values were saved meanwhile: the spent one will
/// never work again. Call inside `write_tx`.
pub fn finish_ok(
    conn: &mut AnyConnection,
    keys: &KeyRing,
    done: &Exchanged,
) -> Result<Written, StoreError> {
    let Some(row) = held(conn, done.company, done.holder)? else {
        return Ok(Written::NotHolder);
    };
    let current = row.version == done.version && done.cache;
    release(conn, done.company.as_str(), current)?;
    if let (Some(rotated), Some(spent)) = (&done.token.rotated_refresh_token, done.spent) {
        let stored = crate::secrets::open(keys, &row)?.refresh_token;
        if stored.is_some_and(|s| s.expose_secret() == spent.expose_secret()) {
            crate::connection::store_rotated_refresh_token(conn, keys, &row, rotated)?;
        }
    }
    if !current {
        return Ok(Written::Outdated);
    }
    store_token(conn, keys, done.company.as_str(), row.version, done.token)?;
    diesel::update(credentials::table.find(done.company.as_str()))
        .set(credentials::renew_at.eq(done.renew_at.map(|t| t.naive_utc())))
        .execute(conn)?;
    Ok(Written::Stored)
}

/// Who a failed refresh is recorded for, which decides what it changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailedFor {
    /// A job's or refresh ahead's refresh: the error for its waiters, the state (`failed` on a
    /// permanent rejection) and `access_token.refresh_failed`.
    Refresh,
    /// A test of the stored values: the error for its waiters only. The state and its
    /// `connection.status_changed` are the test's to record, with its `test_id` (contract §7).
    Test,
    /// A test of candidate values: nothing stored is about them; the lease is only released.
    Candidate,
}

/// Records a failed refresh if the lease is still `holder`'s and the values are still `version`,
/// as `failed_for` says. Call inside `write_tx`.
pub fn finish_err(
    conn: &mut AnyConnection,
    company: &CompanyId,
    holder: &str,
    version: i64,
    error: &TestError,
    failed_for: FailedFor,
) -> Result<(Written, Option<StateChange>), StoreError> {
    let Some(row) = held(conn, company, holder)? else {
        return Ok((Written::NotHolder, None));
    };
    release(conn, company.as_str(), false)?;
    if row.version != version || failed_for == FailedFor::Candidate {
        return Ok((Written::Outdated, None));
    }
    let permanent = error.code.is_permanent();
    let error_json = serde_json::to_string(error).map_err(|e| StoreError::Worker(e.to_string()))?;
    let at = now().naive_utc();
    let previous = row.state;
    let current = if permanent && failed_for == FailedFor::Refresh {
        ConnectionState::Failed
    } else {
        previous
    };
    diesel::update(credentials::table.find(company.as_str()))
        .set((
            credentials::token_error.eq(Some(error_json)),
            credentials::token_error_at.eq(Some(at)),
            credentials::token_error_version.eq(Some(version)),
            credentials::state.eq(current.as_str()),
            credentials::state_since.eq(if current == previous {
                row.state_since
            } else {
                at
            }),
        ))
        .execute(conn)?;
    if permanent {
        crate::connection::drop_cached_token(conn, company.as_str())?;
    }
    if failed_for == FailedFor::Test {
        return Ok((Written::Stored, None));
    }
    let error = serde_json::to_value(error).map_err(|e| StoreError::Worker(e.to_string()))?;
    let data = serde_json::json!({"company": company.as_str(), "error": error, "permanent": permanent, "state": current.as_str()});
    crate::outbox::emit(
        conn,
        crate::outbox::REFRESH_FAILED,
        Some(company.as_str()),
        data,
        None,
    )?;
    if current != previous {
        crate::outbox::status_changed(conn, company.as_str(), previous, current, error, None)?;
        mark_visible_change();
    }
    Ok((Written::Stored, Some(StateChange { previous, current })))
}

/// How long a lease lasts: past the upstream deadline (which includes the wait for a permit), so
/// only a holder that stalled or crashed lets it run out.
pub fn lease_for(deadline: std::time::Duration) -> Duration {
    Duration::from_std(deadline).unwrap_or(Duration::seconds(15)) + Duration::seconds(5)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credentials::{Change, CredentialsChange};
    use crate::pool::write_tx;

    fn keys() -> KeyRing {
        KeyRing::parse(&SecretString::from(format!("k1:{}", "A".repeat(43) + "="))).unwrap()
    }

    fn obtained(token: &str, rotated: Option<&str>) -> ObtainedToken {
        ObtainedToken {
            access_token: SecretString::from(token.to_string()),
            expires_at: now() + Duration::hours(1),
            rotated_refresh_token: rotated.map(|r| SecretString::from(r.to_string())),
        }
    }

    /// The fence: once another attempt holds the lease, the first one's outcome — success or
    /// failure — writes nothing; a rotated token survives a save of another field.
    #[test]
    fn only_the_lease_holder_writes_and_a_rotated_token_survives_a_save() {
        let dir = tempfile::TempDir::new().unwrap();
        let db = crate::pool::test_sqlite(dir.path());
        let keys = keys();
        let mut conn = db.get().unwrap();
        let company = CompanyId::parse("acme").unwrap();
        let change = CredentialsChange {
            application_id: Change::Set(domain::ApplicationId::parse("app-1").unwrap().unwrap()),
            shared_secret: Change::Set(SecretString::from("secret-value-1")),
            refresh_token: Change::Set(SecretString::from("refresh-1")),
            ..Default::default()
        };
        crate::credentials::save(&mut conn, &keys, &company, &change, None, "t").unwrap();
        let take = |conn: &mut AnyConnection, holder: &str| {
            write_tx(conn, |conn| {
                lock(conn, &keys, &company)?.lease(
                    conn,
                    &keys,
                    holder,
                    now() + Duration::seconds(20),
                )
            })
            .unwrap()
        };
        let first = take(&mut conn, "first");
        let second = take(&mut conn, "second");
        let spent = first.refresh_token.clone().unwrap();
        let late = obtained("token-first", Some("refresh-2"));
        let done = |holder, token| Exchanged {
            company: &company,
            holder,
            version: first.version,
            spent: Some(&spent),
            token,
            cache: true,
            renew_at: None,
        };
        let written = write_tx(&mut conn, |c| finish_ok(c, &keys, &done("first", &late))).unwrap();
        assert_eq!(written, Written::NotHolder);
        let error = TestError::incomplete(vec!["refresh_token"]);
        let failed = write_tx(&mut conn, |c| {
            finish_err(
                c,
                &company,
                "first",
                first.version,
                &error,
                FailedFor::Refresh,
            )
        })
        .unwrap();
        assert_eq!(failed.0, Written::NotHolder);
        assert!(snapshot(&mut conn, &keys, &company)
            .unwrap()
            .cached
            .is_none());

        // The holder's exchange overlapped a save of the Profile ID: its rotated refresh token
        // is kept, its access token (of the old values) is not cached.
        let profile = CredentialsChange {
            profile_id: Change::Set(domain::ProfileId::parse(7).unwrap()),
            ..Default::default()
        };
        crate::credentials::save(&mut conn, &keys, &company, &profile, None, "t").unwrap();
        assert_eq!(
            second.refresh_token.as_ref().unwrap().expose_secret(),
            "refresh-1"
        );
        let rotated = obtained("token-second", Some("refresh-2"));
        let written = write_tx(&mut conn, |c| {
            finish_ok(c, &keys, &done("second", &rotated))
        })
        .unwrap();
        assert_eq!(written, Written::Outdated);
        let stored = crate::credentials::load(&mut conn, &keys, &company)
            .unwrap()
            .unwrap();
        assert_eq!(
            stored.refresh_token.as_ref().unwrap().expose_secret(),
            "refresh-2"
        );
        let snap = snapshot(&mut conn, &keys, &company).unwrap();
        assert!(snap.cached.is_none() && snap.row.unwrap().lease.is_none());
    }
}

//! Test Connection results, the connection status they drive, and the cached access token.

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use secrecy::SecretString;

use domain::TestResult;

use crate::audit;
use crate::credentials::{
    load_row_for_update, now, row_missing, to_utc, AuthMethod, ConnectionState, CredentialsRow,
    REFRESH_TOKEN,
};
use crate::error::StoreError;
use crate::outbox;
use crate::pool::{on_backend, write_tx, AnyConnection};
use crate::schema::{access_tokens, connection_tests, credentials};
use crate::seal::KeyRing;
use domain::CompanyId;

pub const ACCESS_TOKEN: &str = "access_token";
const INCOMPLETE: &str = "incomplete_credentials";

/// A history row: the result's JSON plus the columns queries filter on.
#[derive(Insertable, Debug, Clone)]
#[diesel(table_name = connection_tests)]
struct TestRecord {
    pub id: String,
    pub company: String,
    pub candidate: bool,
    /// `connected` or `failed`
    pub outcome: String,
    pub error_code: Option<String>,
    /// The whole result as the API shows it (JSON); it never holds a secret.
    pub result: String,
    pub started_at: NaiveDateTime,
    pub triggered_by: String,
}

#[derive(Insertable)]
#[diesel(table_name = access_tokens)]
struct TokenRow {
    company: String,
    key_id: String,
    token: Vec<u8>,
    expires_at: NaiveDateTime,
    credentials_version: i64,
    obtained_at: NaiveDateTime,
}

/// What a successful exchange leaves to store with the test.
pub struct ObtainedToken {
    pub access_token: SecretString,
    pub expires_at: DateTime<Utc>,
    /// A new refresh token from upstream; it replaces the stored one.
    pub rotated_refresh_token: Option<SecretString>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateChange {
    pub previous: ConnectionState,
    pub current: ConnectionState,
}

pub(crate) fn drop_cached_token(conn: &mut AnyConnection, company: &str) -> Result<(), StoreError> {
    diesel::delete(access_tokens::table.find(company)).execute(conn)?;
    // No token, nothing for refresh ahead to renew.
    diesel::update(credentials::table.find(company))
        .set(credentials::renew_at.eq(None::<NaiveDateTime>))
        .execute(conn)?;
    Ok(())
}

pub(crate) fn store_token(
    conn: &mut AnyConnection,
    keys: &KeyRing,
    company: &str,
    version: i64,
    token: &ObtainedToken,
) -> Result<(), StoreError> {
    let sealed = keys.seal(company, ACCESS_TOKEN, &token.access_token);
    let row = TokenRow {
        company: company.to_string(),
        key_id: sealed.key_id,
        token: sealed.bytes,
        expires_at: token.expires_at.naive_utc(),
        credentials_version: version,
        obtained_at: now().naive_utc(),
    };
    // On the backend's own connection: a refresh burst writes these a hundred times at once.
    on_backend!(&mut *conn, |c| diesel::delete(
        access_tokens::table.find(company)
    )
    .execute(c))?;
    on_backend!(conn, |c| diesel::insert_into(access_tokens::table)
        .values(&row)
        .execute(c))?;
    Ok(())
}

/// Replaces the stored refresh token with the one upstream returned, re-sealing the row under
/// the current key. Not a change by a person: the version stays, the audit names the upstream.
pub(crate) fn store_rotated_refresh_token(
    conn: &mut AnyConnection,
    keys: &KeyRing,
    row: &CredentialsRow,
    new_token: &SecretString,
) -> Result<(), StoreError> {
    let mut values = crate::secrets::open(keys, row)?;
    values.refresh_token = Some(new_token.clone());
    crate::secrets::write(conn, keys, row.company.as_str(), &values)?;
    audit::record(
        conn,
        &row.company,
        audit::Author::api("channeladvisor"),
        "rotated",
        &[REFRESH_TOKEN],
        Some(row.version),
        now(),
    )
}

/// Records a test in the history. A non-candidate test run against `version` of the stored
/// credentials also sets the state; if the credentials changed meanwhile it is history only (its
/// result is about old values). The token it obtained was stored by the token broker.
pub fn record_test(
    conn: &mut AnyConnection,
    result: &TestResult,
    version: Option<i64>,
) -> Result<Option<StateChange>, StoreError> {
    let record = TestRecord {
        id: result.id.clone(),
        company: result.company.clone(),
        candidate: result.candidate,
        outcome: result.outcome.as_str().to_string(),
        error_code: result.error.as_ref().map(|e| e.code.as_str().to_string()),
        result: serde_json::to_string(result).map_err(|e| StoreError::Worker(e.to_string()))?,
        started_at: result.started_at.naive_utc(),
        triggered_by: result.triggered_by.clone(),
    };
    let record = &record;
    let error = serde_json::to_value(&result.error).unwrap_or_default();
    write_tx(conn, |conn| {
        diesel::insert_into(connection_tests::table)
            .values(record)
            .execute(conn)?;
        let tested = serde_json::json!({
            "company": record.company, "test_id": record.id, "outcome": record.outcome, "candidate": record.candidate,
            "error": error, "triggered_by": record.triggered_by,
        });
        outbox::emit(conn, outbox::TESTED, Some(&record.company), tested, None)?;
        if record.candidate {
            return Ok(None);
        }
        let Some(row) = load_row_for_update(conn, &record.company)? else {
            return Ok(None);
        };
        if version != Some(row.version) {
            return Ok(None);
        }
        let previous = row.state;
        // A test that found values missing learned nothing new: the state stays `incomplete`.
        let current = match (record.outcome.as_str(), record.error_code.as_deref()) {
            (_, Some(INCOMPLETE)) => previous,
            ("connected", _) => ConnectionState::Connected,
            _ => ConnectionState::Failed,
        };
        let at = now().naive_utc();
        diesel::update(credentials::table.find(&record.company))
            .set((
                credentials::state.eq(current.as_str()),
                credentials::state_since.eq(if current == previous {
                    row.state_since
                } else {
                    at
                }),
                credentials::last_test_id.eq(Some(&record.id)),
                credentials::last_success_at.eq(if current == ConnectionState::Connected {
                    Some(at)
                } else {
                    row.last_success_at
                }),
            ))
            .execute(conn)?;
        if current != previous {
            let test = Some(record.id.as_str());
            outbox::status_changed(conn, &record.company, previous, current, error, test)?;
            crate::visibility::mark_visible_change();
        }
        Ok(Some(StateChange { previous, current }))
    })
}

/// The connection status of contract §4, without the `last_test` body (see `last_test_result`).
#[derive(Debug, Clone)]
pub struct Status {
    pub state: ConnectionState,
    pub since: Option<DateTime<Utc>>,
    pub missing: Vec<&'static str>,
    pub last_test_id: Option<String>,
    pub last_success_at: Option<DateTime<Utc>>,
    pub access_token_expires_at: Option<DateTime<Utc>>,
}

pub fn status(conn: &mut AnyConnection, company: &CompanyId) -> Result<Status, StoreError> {
    // The statements of every status read on the backend's own connection (see `on_backend`).
    let row = on_backend!(&mut *conn, |c| credentials::table
        .find(company.as_str())
        .select(CredentialsRow::as_select())
        .first(c)
        .optional())?;
    let Some(row) = row else {
        return Ok(Status {
            state: ConnectionState::NotConfigured,
            since: None,
            missing: crate::credentials::names(&domain::values::missing(
                AuthMethod::default(),
                |_| false,
            )),
            last_test_id: None,
            last_success_at: None,
            access_token_expires_at: None,
        });
    };
    let expires: Option<NaiveDateTime> = on_backend!(conn, |c| access_tokens::table
        .find(company.as_str())
        .filter(access_tokens::credentials_version.eq(row.version))
        .select(access_tokens::expires_at)
        .first(c)
        .optional())?;
    let missing = row_missing(&row);
    Ok(Status {
        state: row.state,
        since: Some(to_utc(row.state_since)),
        missing,
        last_test_id: row.last_test_id,
        last_success_at: row.last_success_at.map(to_utc),
        access_token_expires_at: expires.map(to_utc),
    })
}

/// A stored result read back. A row this build cannot read is an error naming the test, never
/// a silently missing result.
fn read_result(id: &str, json: &str) -> Result<TestResult, StoreError> {
    serde_json::from_str(json)
        .map_err(|e| StoreError::Worker(format!("stored result of test {id} is not readable: {e}")))
}

pub fn test_result(conn: &mut AnyConnection, id: &str) -> Result<Option<TestResult>, StoreError> {
    let json: Option<String> = on_backend!(conn, |c| connection_tests::table
        .find(id)
        .select(connection_tests::result)
        .first(c)
        .optional())?;
    json.map(|j| read_result(id, &j)).transpose()
}

/// Results, newest first.
pub fn history(
    conn: &mut AnyConnection,
    company: &CompanyId,
    limit: i64,
) -> Result<Vec<TestResult>, StoreError> {
    let rows: Vec<(String, String)> = connection_tests::table
        .filter(connection_tests::company.eq(company.as_str()))
        .order((
            connection_tests::started_at.desc(),
            connection_tests::id.desc(),
        ))
        .limit(limit)
        .select((connection_tests::id, connection_tests::result))
        .load(conn)?;
    rows.iter()
        .map(|(id, json)| read_result(id, json))
        .collect()
}

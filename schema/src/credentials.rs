//! Company credentials: the settings screen's data. Secrets are opened and sealed here, inside the
//! transaction that reads and writes them, so a save is all-or-nothing.

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;

use crate::audit;
use crate::error::StoreError;
use crate::outbox;
use crate::pool::{write_tx, AnyConnection};
use crate::schema::{credentials, credentials_deleted_versions};
use crate::seal::KeyRing;
use domain::CompanyId;
use serde_json::Value;

pub const APPLICATION_ID: &str = CredentialField::ApplicationId.as_str();
pub const SHARED_SECRET: &str = CredentialField::SharedSecret.as_str();
pub const REFRESH_TOKEN: &str = CredentialField::RefreshToken.as_str();
pub const PROFILE_ID: &str = CredentialField::ProfileId.as_str();
pub const AUTH_METHOD: &str = CredentialField::AuthMethod.as_str();
pub const DEVELOPER_KEY: &str = CredentialField::DeveloperKey.as_str();
pub const PASSWORD: &str = CredentialField::Password.as_str();
pub const ACCOUNT_ID: &str = CredentialField::AccountId.as_str();

pub use domain::values::{Change, CredentialField, CredentialValues, CredentialsChange};
pub use domain::{AccountId, ApplicationId, AuthMethod, ConnectionState, ProfileId};

#[derive(Queryable, Selectable, Insertable, AsChangeset, Debug, Clone)]
#[diesel(table_name = credentials, treat_none_as_null = true)]
pub(crate) struct CredentialsRow {
    pub company: CompanyId,
    pub application_id: Option<ApplicationId>,
    pub shared_secret: Option<Vec<u8>>,
    pub refresh_token: Option<Vec<u8>>,
    pub key_id: Option<String>,
    pub profile_id: Option<ProfileId>,
    pub version: i64,
    pub state: ConnectionState,
    pub state_since: NaiveDateTime,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
    pub updated_by: String,
    pub last_test_id: Option<String>,
    pub last_success_at: Option<NaiveDateTime>,
    pub token_lease_until: Option<NaiveDateTime>,
    pub token_lease_owner: Option<String>,
    pub token_error: Option<String>,
    pub token_error_at: Option<NaiveDateTime>,
    pub token_error_version: Option<i64>,
    pub next_check_at: Option<NaiveDateTime>,
    pub auth_method: AuthMethod,
    pub developer_key: Option<Vec<u8>>,
    pub password: Option<Vec<u8>>,
    pub account_id: Option<AccountId>,
}

/// A company's stored credentials: the values with the secrets opened (its fields are reached
/// through `Deref`), and what the store keeps about them. `Debug` is redacted by `SecretString`.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub company: CompanyId,
    pub values: CredentialValues,
    pub version: i64,
    pub state: ConnectionState,
    pub state_since: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub updated_by: String,
}

impl std::ops::Deref for Credentials {
    type Target = CredentialValues;

    fn deref(&self) -> &CredentialValues {
        &self.values
    }
}

impl Credentials {
    /// The values a connection needs that are not set, in the order the screen shows them.
    pub fn missing(&self) -> Vec<&'static str> {
        names(&self.values.missing())
    }

    pub fn is_complete(&self) -> bool {
        self.values.is_complete()
    }
}

/// The API's names of `fields`.
pub fn names(fields: &[CredentialField]) -> Vec<&'static str> {
    fields.iter().map(|f| f.as_str()).collect()
}

/// The values a row's method needs that are not set, read from which columns hold a value (no
/// secret is opened).
pub(crate) fn row_missing(row: &CredentialsRow) -> Vec<&'static str> {
    let is_set = |field| match field {
        CredentialField::AuthMethod => true,
        CredentialField::ApplicationId => row.application_id.is_some(),
        CredentialField::SharedSecret => row.shared_secret.is_some(),
        CredentialField::RefreshToken => row.refresh_token.is_some(),
        CredentialField::ProfileId => row.profile_id.is_some(),
        CredentialField::DeveloperKey => row.developer_key.is_some(),
        CredentialField::Password => row.password.is_some(),
        CredentialField::AccountId => row.account_id.is_some(),
    };
    names(&domain::values::missing(row.auth_method, is_set))
}

#[derive(Debug)]
pub struct Saved {
    pub credentials: Credentials,
    pub created: bool,
    /// Names of the fields whose value changed; empty when the write changed nothing.
    pub changed: Vec<&'static str>,
    pub previous_state: ConnectionState,
}

/// Now, at the precision both databases keep (microseconds).
pub fn now() -> DateTime<Utc> {
    use chrono::SubsecRound;
    Utc::now().trunc_subsecs(6)
}

/// A stored timestamp (UTC without zone, as both backends keep it) as a UTC instant.
pub(crate) fn to_utc(t: NaiveDateTime) -> DateTime<Utc> {
    DateTime::from_naive_utc_and_offset(t, Utc)
}

/// Reads the row, taking a row lock on PostgreSQL so concurrent writers queue instead of both
/// building on the same version (SQLite's write transactions are already exclusive).
pub(crate) fn load_row_for_update(
    conn: &mut AnyConnection,
    company: &str,
) -> QueryResult<Option<CredentialsRow>> {
    Ok(load_rows_for_update(conn, &[company])?.pop())
}

/// `load_row_for_update` for several companies, locked in company order on PostgreSQL (two
/// writers locking overlapping sets cannot deadlock).
pub(crate) fn load_rows_for_update(
    conn: &mut AnyConnection,
    companies: &[&str],
) -> QueryResult<Vec<CredentialsRow>> {
    let query = credentials::table.order(credentials::company);
    match (conn, companies) {
        (AnyConnection::Postgresql(pg), _) => query
            .filter(credentials::company.eq_any(companies))
            .select(CredentialsRow::as_select())
            .for_update()
            .load(pg),
        // One company by `=`, a statement SQLite prepares once: its `IN (…)` form is prepared
        // anew on every call, and the single-company lease is taken on an HTTP worker.
        (AnyConnection::Sqlite(lite), [one]) => query
            .filter(credentials::company.eq(*one))
            .select(CredentialsRow::as_select())
            .load(lite),
        (AnyConnection::Sqlite(lite), many) => query
            .filter(credentials::company.eq_any(many))
            .select(CredentialsRow::as_select())
            .load(lite),
    }
}

pub(crate) fn open_row(keys: &KeyRing, row: CredentialsRow) -> Result<Credentials, StoreError> {
    Ok(Credentials {
        values: crate::secrets::open(keys, &row)?,
        company: row.company,
        version: row.version,
        state: row.state,
        state_since: to_utc(row.state_since),
        updated_at: to_utc(row.updated_at),
        updated_by: row.updated_by,
    })
}

/// The stored credentials with secrets opened, or `None` when the company has none.
pub fn load(
    conn: &mut AnyConnection,
    keys: &KeyRing,
    company: &CompanyId,
) -> Result<Option<Credentials>, StoreError> {
    let row = credentials::table
        .find(company.as_str())
        .select(CredentialsRow::as_select())
        .load(conn)?
        .into_iter()
        .next();
    row.map(|r| open_row(keys, r)).transpose()
}

/// Applies one field's change; `old` is the stored value (an `Err` when it does not open).
/// Creates or changes a company's credentials in one transaction: re-seals every secret under the
/// current key, bumps the version, resets the connection state, drops cached tokens and writes the
/// audit entry. `if_match` is the version the caller last saw.
pub fn save(
    conn: &mut AnyConnection,
    keys: &KeyRing,
    company: &CompanyId,
    change: &CredentialsChange,
    if_match: Option<i64>,
    actor: &str,
) -> Result<Saved, StoreError> {
    write_tx(conn, |conn| {
        save_in_tx(
            conn,
            keys,
            company,
            change,
            if_match,
            audit::Author::api(actor),
        )
    })
}

/// The stored values a change is laid over. A secret the change keeps must open; one it sets or
/// clears need not (a company whose secrets no longer open is repaired by entering them again).
fn stored_values(
    keys: &KeyRing,
    row: &CredentialsRow,
    change: &CredentialsChange,
) -> Result<CredentialValues, StoreError> {
    let keeps = |field| matches!(change.secret(field), Some(Change::Keep));
    Ok(crate::secrets::open_with(keys, row, keeps)?)
}

/// `save` inside a transaction the caller holds, by any author (Connect saves as the person who
/// started it, `via: authorization_code`, in the transaction that closes the attempt).
pub fn save_in_tx(
    conn: &mut AnyConnection,
    keys: &KeyRing,
    company: &CompanyId,
    change: &CredentialsChange,
    if_match: Option<i64>,
    author: audit::Author<'_>,
) -> Result<Saved, StoreError> {
    let actor = author.actor;
    let existing = load_row_for_update(conn, company.as_str())?;
    // Stamped under the lock, so the audit trail's order is the order the writes landed in.
    let now = now();
    check_version(existing.as_ref(), if_match)?;

    let old = match &existing {
        Some(row) => stored_values(keys, row, change)?,
        None => CredentialValues::default(),
    };
    let (values, changed_fields) = old.overlay(change);
    let changed = names(&changed_fields);

    let previous_state = existing
        .as_ref()
        .map(|r| r.state)
        .unwrap_or(ConnectionState::NotConfigured);

    if let (Some(row), true) = (&existing, changed.is_empty()) {
        // Nothing changed: keep version, state and cached tokens as they are.
        let credentials = open_row(keys, row.clone())?;
        return Ok(Saved {
            credentials,
            created: false,
            changed,
            previous_state,
        });
    }

    let state = domain::values::state_after_save(&values);
    let now_naive = now.naive_utc();
    let sealed = crate::secrets::seal(&values, keys, company.as_str());
    let row = CredentialsRow {
        company: company.clone(),
        application_id: values.application_id.clone(),
        key_id: sealed.key_id,
        shared_secret: sealed.shared_secret,
        refresh_token: sealed.refresh_token,
        developer_key: sealed.developer_key,
        password: sealed.password,
        auth_method: values.auth_method,
        account_id: values.account_id.clone(),
        profile_id: values.profile_id,
        version: match &existing {
            Some(r) => r.version + 1,
            None => deleted_version(conn, company)? + 1,
        },
        state,
        state_since: domain::values::state_since(
            existing.as_ref().map(|r| (r.state, r.state_since)),
            state,
            now_naive,
        ),
        created_at: existing.as_ref().map_or(now_naive, |r| r.created_at),
        updated_at: now_naive,
        updated_by: actor.to_string(),
        last_test_id: existing.as_ref().and_then(|r| r.last_test_id.clone()),
        last_success_at: existing.as_ref().and_then(|r| r.last_success_at),
        // A refresh in flight keeps its lease: it spent the stored refresh token, and the one it
        // brings back (rotated) must still be written. A remembered error is about the old
        // values, and the health check is scheduled afresh by the scheduler.
        token_lease_until: existing.as_ref().and_then(|r| r.token_lease_until),
        token_lease_owner: existing.as_ref().and_then(|r| r.token_lease_owner.clone()),
        token_error: None,
        token_error_at: None,
        token_error_version: None,
        next_check_at: None,
    };
    // New values: no instance may hand out a token or state of the old ones once this answered.
    crate::visibility::mark_visible_change();
    if existing.is_some() {
        diesel::update(credentials::table.find(company.as_str()))
            .set(&row)
            .execute(conn)?;
    } else {
        diesel::insert_into(credentials::table)
            .values(&row)
            .execute(conn)?;
    }
    let action = if existing.is_some() {
        "updated"
    } else {
        "created"
    };
    audit::record(
        conn,
        company,
        author,
        action,
        &changed,
        Some(row.version),
        now,
    )?;
    let data = serde_json::json!({"company": company.as_str(), "version": row.version, "changed": changed, "actor": actor});
    outbox::emit(
        conn,
        outbox::CREDENTIALS_UPDATED,
        Some(company.as_str()),
        data,
        None,
    )?;
    if previous_state != state {
        outbox::status_changed(
            conn,
            company.as_str(),
            previous_state,
            state,
            Value::Null,
            None,
        )?;
    }

    Ok(Saved {
        credentials: Credentials {
            company: company.clone(),
            values,
            version: row.version,
            state,
            state_since: to_utc(row.state_since),
            updated_at: now,
            updated_by: actor.to_string(),
        },
        created: existing.is_none(),
        changed,
        previous_state,
    })
}

/// The version the company's last deleted credentials had (0 when none were ever deleted), so
/// a new record continues after it: a stale `If-Match` taken before a delete never matches the
/// record saved after it.
fn deleted_version(conn: &mut AnyConnection, company: &CompanyId) -> Result<i64, StoreError> {
    Ok(credentials_deleted_versions::table
        .find(company.as_str())
        .select(credentials_deleted_versions::version)
        .first(conn)
        .optional()?
        .unwrap_or(0))
}

fn remember_deleted_version(
    conn: &mut AnyConnection,
    company: &CompanyId,
    version: i64,
) -> Result<(), StoreError> {
    // Delete and insert rather than an upsert: the same statements on both backends, inside the
    // delete's transaction (the credentials row is locked, so no other writer races this one).
    diesel::delete(credentials_deleted_versions::table.find(company.as_str())).execute(conn)?;
    diesel::insert_into(credentials_deleted_versions::table)
        .values((
            credentials_deleted_versions::company.eq(company.as_str()),
            credentials_deleted_versions::version.eq(version),
        ))
        .execute(conn)?;
    Ok(())
}

fn check_version(
    existing: Option<&CredentialsRow>,
    if_match: Option<i64>,
) -> Result<(), StoreError> {
    match (if_match, existing) {
        (None, _) => Ok(()),
        (Some(v), Some(row)) if row.version == v => Ok(()),
        (Some(_), row) => Err(StoreError::VersionConflict {
            current: row.map(|r| r.version),
        }),
    }
}

/// What a delete removed, for the audit trail and the events.
#[derive(Debug)]
pub struct Deleted {
    pub fields: Vec<&'static str>,
    pub previous_state: ConnectionState,
    pub version: i64,
}

/// Forgets a company's credentials (and, with them, its cached tokens). `NotFound` when none.
pub fn delete(
    conn: &mut AnyConnection,
    company: &CompanyId,
    if_match: Option<i64>,
    actor: &str,
) -> Result<Deleted, StoreError> {
    write_tx(conn, |conn| {
        let row = load_row_for_update(conn, company.as_str())?.ok_or(StoreError::NotFound)?;
        let now = now();
        check_version(Some(&row), if_match)?;
        let fields: Vec<&'static str> = [
            (row.application_id.is_some(), APPLICATION_ID),
            (row.shared_secret.is_some(), SHARED_SECRET),
            (row.refresh_token.is_some(), REFRESH_TOKEN),
            (row.profile_id.is_some(), PROFILE_ID),
            (row.developer_key.is_some(), DEVELOPER_KEY),
            (row.password.is_some(), PASSWORD),
            (row.account_id.is_some(), ACCOUNT_ID),
        ]
        .into_iter()
        .filter(|(set, _)| *set)
        .map(|(_, n)| n)
        .collect();
        diesel::delete(credentials::table.find(company.as_str())).execute(conn)?;
        crate::visibility::mark_visible_change();
        remember_deleted_version(conn, company, row.version)?;
        crate::connection::drop_cached_token(conn, company.as_str())?;
        audit::record(
            conn,
            company,
            audit::Author::api(actor),
            "deleted",
            &fields,
            Some(row.version),
            now,
        )?;
        let data = serde_json::json!({"company": company.as_str(), "version": row.version, "fields": fields, "actor": actor});
        outbox::emit(
            conn,
            outbox::CREDENTIALS_DELETED,
            Some(company.as_str()),
            data,
            None,
        )?;
        let previous = row.state;
        let gone = ConnectionState::NotConfigured;
        outbox::status_changed(conn, company.as_str(), previous, gone, Value::Null, None)?;
        Ok(Deleted {
            fields,
            previous_state: row.state,
            version: row.version,
        })
    })
}

/// Stored values are read through the domain types: one this build does not accept is an error
/// that names the column's type, never a silent default (`not_configured`, "missing").
#[cfg(test)]
mod tests {
    use diesel::prelude::*;

    use super::{load, save, Change, CredentialsChange};
    use crate::{CompanyId, KeyRing};

    #[test]
    fn a_stored_value_that_does_not_parse_is_an_error_naming_it() {
        let dir = tempfile::TempDir::new().unwrap();
        let db = crate::pool::test_sqlite(dir.path());
        let keys = KeyRing::parse(&KeyRing::generate_spec("k1")).unwrap();
        let mut conn = db.get().unwrap();
        let acme = CompanyId::parse("acme").unwrap();
        let change = CredentialsChange {
            application_id: Change::Set(domain::ApplicationId::parse("app-1").unwrap().unwrap()),
            ..Default::default()
        };
        save(&mut conn, &keys, &acme, &change, None, "test").unwrap();
        for (column, value, named) in [
            ("state", "'paused'", "stored connection state"),
            ("auth_method", "'oauth3'", "stored auth method"),
            ("application_id", "'has space'", "stored Application ID"),
            ("profile_id", "-4", "stored Profile ID"),
        ] {
            let put = |v: &str| {
                diesel::sql_query(format!("UPDATE credentials SET {column} = {v}"))
                    .execute(&mut *db.get().unwrap())
                    .unwrap()
            };
            put(value);
            let loaded = load(&mut conn, &keys, &acme).unwrap_err().to_string();
            assert!(loaded.contains(named), "{column}: {loaded}");
            let status = crate::connection::status(&mut conn, &acme)
                .unwrap_err()
                .to_string();
            assert!(status.contains(named), "{column}: {status}");
            let restore = match column {
                "state" => "'incomplete'",
                "auth_method" => "'refresh_token'",
                "application_id" => "'app-1'",
                _ => "NULL",
            };
            put(restore);
            assert!(load(&mut conn, &keys, &acme).is_ok(), "{column} restored");
        }
    }
}

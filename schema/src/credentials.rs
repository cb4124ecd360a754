//! Company credentials: the settings screen's data. Secrets are opened and sealed here, inside the
//! transaction that reads and writes them, so a save is all-or-nothing.

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use secrecy::{ExposeSecret, SecretString};

use crate::audit;
use crate::error::StoreError;
use crate::outbox;
use crate::pool::{write_tx, AnyConnection};
use crate::schema::{credentials, credentials_deleted_versions};
use crate::seal::KeyRing;
use crate::secrets::Secrets;
use domain::CompanyId;
use serde_json::Value;

pub const APPLICATION_ID: &str = "application_id";
pub const SHARED_SECRET: &str = "shared_secret";
pub const REFRESH_TOKEN: &str = "refresh_token";
pub const PROFILE_ID: &str = "profile_id";
pub const AUTH_METHOD: &str = "auth_method";
pub const DEVELOPER_KEY: &str = "developer_key";
pub const PASSWORD: &str = "password";
pub const ACCOUNT_ID: &str = "account_id";

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

/// A company's credentials with the secrets opened. `Debug` is redacted by `SecretString`.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub company: CompanyId,
    pub application_id: Option<ApplicationId>,
    pub shared_secret: Option<SecretString>,
    pub refresh_token: Option<SecretString>,
    pub profile_id: Option<ProfileId>,
    pub auth_method: AuthMethod,
    pub developer_key: Option<SecretString>,
    pub password: Option<SecretString>,
    pub account_id: Option<AccountId>,
    pub version: i64,
    pub state: ConnectionState,
    pub state_since: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub updated_by: String,
}

impl Credentials {
    /// The values a connection needs that are not set, in the order the screen shows them.
    pub fn missing(&self) -> Vec<&'static str> {
        missing_fields(
            self.auth_method,
            &Presence {
                application_id: self.application_id.is_some(),
                shared_secret: self.shared_secret.is_some(),
                refresh_token: self.refresh_token.is_some(),
                developer_key: self.developer_key.is_some(),
                password: self.password.is_some(),
                account_id: self.account_id.is_some(),
            },
        )
    }

    pub fn is_complete(&self) -> bool {
        self.missing().is_empty()
    }
}

/// Which values are set, whatever the method.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Presence {
    pub application_id: bool,
    pub shared_secret: bool,
    pub refresh_token: bool,
    pub developer_key: bool,
    pub password: bool,
    pub account_id: bool,
}

impl Presence {
    pub(crate) fn of_row(row: &CredentialsRow) -> Presence {
        Presence {
            application_id: row.application_id.is_some(),
            shared_secret: row.shared_secret.is_some(),
            refresh_token: row.refresh_token.is_some(),
            developer_key: row.developer_key.is_some(),
            password: row.password.is_some(),
            account_id: row.account_id.is_some(),
        }
    }
}

/// The values the method needs that are not set, in the order the screen shows them.
pub(crate) fn missing_fields(method: AuthMethod, set: &Presence) -> Vec<&'static str> {
    let common = [
        (set.application_id, APPLICATION_ID),
        (set.shared_secret, SHARED_SECRET),
    ];
    let own: &[(bool, &'static str)] = match method {
        AuthMethod::RefreshToken => &[(set.refresh_token, REFRESH_TOKEN)],
        AuthMethod::Soap => &[
            (set.developer_key, DEVELOPER_KEY),
            (set.password, PASSWORD),
            (set.account_id, ACCOUNT_ID),
        ],
    };
    common
        .iter()
        .chain(own)
        .filter(|(set, _)| !set)
        .map(|(_, name)| *name)
        .collect()
}

/// What a write does to one field: PUT sets or clears every field, PATCH may keep some.
#[derive(Debug, Clone, Default)]
pub enum Change<T> {
    #[default]
    Keep,
    Set(T),
    Clear,
}

/// A write's change to each field; `Default` keeps every field.
#[derive(Debug, Clone, Default)]
pub struct CredentialsChange {
    pub application_id: Change<ApplicationId>,
    pub shared_secret: Change<SecretString>,
    pub refresh_token: Change<SecretString>,
    pub profile_id: Change<ProfileId>,
    /// `Clear` means the default method, `refresh_token`.
    pub auth_method: Change<AuthMethod>,
    pub developer_key: Change<SecretString>,
    pub password: Change<SecretString>,
    pub account_id: Change<AccountId>,
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

pub(crate) fn open_field(
    keys: &KeyRing,
    row: &CredentialsRow,
    field: &str,
    bytes: &Option<Vec<u8>>,
) -> Option<Result<SecretString, StoreError>> {
    bytes.as_ref().map(|b| {
        let key_id = row.key_id.as_deref().unwrap_or_default();
        keys.open(row.company.as_str(), field, key_id, b)
            .map_err(StoreError::from)
    })
}

pub(crate) fn open_row(keys: &KeyRing, row: CredentialsRow) -> Result<Credentials, StoreError> {
    let secrets = Secrets::open(keys, &row)?;
    Ok(Credentials {
        auth_method: row.auth_method,
        company: row.company,
        application_id: row.application_id,
        shared_secret: secrets.shared_secret,
        refresh_token: secrets.refresh_token,
        profile_id: row.profile_id,
        developer_key: secrets.developer_key,
        password: secrets.password,
        account_id: row.account_id,
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
fn apply_secret(
    change: &Change<SecretString>,
    old: Option<Result<SecretString, StoreError>>,
) -> Result<(Option<SecretString>, bool), StoreError> {
    Ok(match change {
        Change::Keep => (old.transpose()?, false),
        Change::Clear => (None, old.is_some()),
        Change::Set(new) => {
            let same = matches!(&old, Some(Ok(o)) if o.expose_secret() == new.expose_secret());
            (Some(new.clone()), !same)
        }
    })
}

fn apply_plain<T: Clone + PartialEq>(change: &Change<T>, old: Option<T>) -> (Option<T>, bool) {
    match change {
        Change::Keep => (old, false),
        Change::Clear => (None, old.is_some()),
        Change::Set(new) => (Some(new.clone()), old.as_ref() != Some(new)),
    }
}

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

    let old_secret = |field: &str, pick: fn(&CredentialsRow) -> &Option<Vec<u8>>| {
        existing
            .as_ref()
            .and_then(|row| open_field(keys, row, field, pick(row)))
    };
    let old = existing.as_ref();
    let (application_id, app_changed) = apply_plain(
        &change.application_id,
        old.and_then(|r| r.application_id.clone()),
    );
    let (account_id, account_changed) =
        apply_plain(&change.account_id, old.and_then(|r| r.account_id.clone()));
    let (profile_id, profile_changed) = apply_plain(
        &change.profile_id,
        existing.as_ref().and_then(|r| r.profile_id),
    );
    let old_method = existing.as_ref().map(|r| r.auth_method);
    let auth_method = match &change.auth_method {
        Change::Keep => old_method.unwrap_or_default(),
        Change::Clear => AuthMethod::default(),
        Change::Set(m) => *m,
    };
    let method_changed = auth_method != old_method.unwrap_or_default();
    let (shared_secret, secret_changed) = apply_secret(
        &change.shared_secret,
        old_secret(SHARED_SECRET, |r| &r.shared_secret),
    )?;
    let (refresh_token, token_changed) = apply_secret(
        &change.refresh_token,
        old_secret(REFRESH_TOKEN, |r| &r.refresh_token),
    )?;
    let (developer_key, key_changed) = apply_secret(
        &change.developer_key,
        old_secret(DEVELOPER_KEY, |r| &r.developer_key),
    )?;
    let (password, password_changed) =
        apply_secret(&change.password, old_secret(PASSWORD, |r| &r.password))?;

    let changed: Vec<&'static str> = [
        (method_changed, AUTH_METHOD),
        (app_changed, APPLICATION_ID),
        (secret_changed, SHARED_SECRET),
        (token_changed, REFRESH_TOKEN),
        (profile_changed, PROFILE_ID),
        (key_changed, DEVELOPER_KEY),
        (password_changed, PASSWORD),
        (account_changed, ACCOUNT_ID),
    ]
    .into_iter()
    .filter(|(c, _)| *c)
    .map(|(_, n)| n)
    .collect();

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

    let secrets = Secrets {
        shared_secret,
        refresh_token,
        developer_key,
        password,
    };
    let complete = missing_fields(
        auth_method,
        &Presence {
            application_id: application_id.is_some(),
            shared_secret: secrets.shared_secret.is_some(),
            refresh_token: secrets.refresh_token.is_some(),
            developer_key: secrets.developer_key.is_some(),
            password: secrets.password.is_some(),
            account_id: account_id.is_some(),
        },
    )
    .is_empty();
    let state = if complete {
        ConnectionState::Untested
    } else {
        ConnectionState::Incomplete
    };
    let now_naive = now.naive_utc();
    let sealed = secrets.seal(keys, company.as_str());
    let row = CredentialsRow {
        company: company.clone(),
        application_id: application_id.clone(),
        key_id: sealed.key_id,
        shared_secret: sealed.shared_secret,
        refresh_token: sealed.refresh_token,
        developer_key: sealed.developer_key,
        password: sealed.password,
        auth_method,
        account_id: account_id.clone(),
        profile_id,
        version: match &existing {
            Some(r) => r.version + 1,
            None => deleted_version(conn, company)? + 1,
        },
        state,
        state_since: match &existing {
            Some(r) if r.state == state => r.state_since,
            _ => now_naive,
        },
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
            application_id,
            shared_secret: secrets.shared_secret,
            refresh_token: secrets.refresh_token,
            profile_id,
            auth_method,
            developer_key: secrets.developer_key,
            password: secrets.password,
            account_id,
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

//! Connect to ChannelAdvisor attempts (the authorization-code flow, contract §10). The `state`
//! handed to ChannelAdvisor is kept only as its SHA-256; an attempt is used at most once, lives
//! ten minutes, and is bound to the company, the caller and the Application ID it started with.

use chrono::{DateTime, Utc};
use diesel::prelude::*;

use crate::audit::{self, Author};
use crate::credentials::{now, to_utc};
use crate::error::StoreError;
use crate::pool::{write_tx, AnyConnection};
use crate::schema::connect_attempts;
use domain::CompanyId;

/// What the audit trail calls the flow (`via`).
pub const VIA: &str = "authorization_code";

/// An attempt as started: what the callback needs to finish it.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub state_hash: String,
    pub company: String,
    pub caller: String,
    pub application_id: String,
    pub redirect_uri: String,
    pub return_to: Option<String>,
    pub expires_at: DateTime<Utc>,
}

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = connect_attempts)]
struct AttemptRow {
    state_hash: String,
    company: String,
    caller: String,
    application_id: String,
    redirect_uri: String,
    return_to: Option<String>,
    created_at: chrono::NaiveDateTime,
    expires_at: chrono::NaiveDateTime,
    used_at: Option<chrono::NaiveDateTime>,
}

impl From<AttemptRow> for Attempt {
    fn from(r: AttemptRow) -> Attempt {
        Attempt {
            state_hash: r.state_hash,
            company: r.company,
            caller: r.caller,
            application_id: r.application_id,
            redirect_uri: r.redirect_uri,
            return_to: r.return_to,
            expires_at: to_utc(r.expires_at),
        }
    }
}

/// Why a `state` does not finish anything. Each one changes nothing but the attempt itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    Unknown,
    Used,
    Expired,
}

/// How long a finished or abandoned attempt row is kept (the audit trail keeps the story).
const KEEP_ROWS: chrono::Duration = chrono::Duration::days(1);

/// Records a new attempt and its audit entry ("connect_started").
pub fn start(conn: &mut AnyConnection, attempt: &Attempt) -> Result<(), StoreError> {
    let company = CompanyId::parse(&attempt.company).map_err(StoreError::Worker)?;
    write_tx(conn, |conn| {
        let now = now();
        // Old rows go with each new one: no sweeper needed for a table this small.
        diesel::delete(
            connect_attempts::table
                .filter(connect_attempts::expires_at.lt((now - KEEP_ROWS).naive_utc())),
        )
        .execute(conn)?;
        diesel::insert_into(connect_attempts::table)
            .values(AttemptRow {
                state_hash: attempt.state_hash.clone(),
                company: attempt.company.clone(),
                caller: attempt.caller.clone(),
                application_id: attempt.application_id.clone(),
                redirect_uri: attempt.redirect_uri.clone(),
                return_to: attempt.return_to.clone(),
                created_at: now.naive_utc(),
                expires_at: attempt.expires_at.naive_utc(),
                used_at: None,
            })
            .execute(conn)?;
        audit::record(
            conn,
            &company,
            author(&attempt.caller),
            "connect_started",
            &[],
            None,
            now,
        )
    })
}

fn author(caller: &str) -> Author<'_> {
    Author {
        actor: caller,
        via: Some(VIA),
    }
}

/// Takes the attempt a `state` names, marking it used in the same transaction, so of two
/// callbacks with one `state` (on any instances) exactly one gets it. An expired attempt is
/// marked used too and its expiry audited once.
pub fn take(
    conn: &mut AnyConnection,
    state_hash: &str,
) -> Result<Result<Attempt, Refused>, StoreError> {
    write_tx(conn, |conn| {
        let row = connect_attempts::table
            .find(state_hash)
            .select(AttemptRow::as_select())
            .first(conn)
            .optional()?;
        claim(conn, row)
    })
}

/// Takes the newest open attempt the caller started for the company (a code pasted by hand).
pub fn take_newest_open(
    conn: &mut AnyConnection,
    company: &CompanyId,
    caller: &str,
) -> Result<Result<Attempt, Refused>, StoreError> {
    write_tx(conn, |conn| {
        let row = connect_attempts::table
            .filter(connect_attempts::company.eq(company.as_str()))
            .filter(connect_attempts::caller.eq(caller))
            .filter(connect_attempts::used_at.is_null())
            .order(connect_attempts::created_at.desc())
            .select(AttemptRow::as_select())
            .first(conn)
            .optional()?;
        claim(conn, row)
    })
}

fn claim(
    conn: &mut AnyConnection,
    row: Option<AttemptRow>,
) -> Result<Result<Attempt, Refused>, StoreError> {
    let Some(row) = row else {
        return Ok(Err(Refused::Unknown));
    };
    let now = now();
    // The guard on `used_at` makes the claim single even where the read took no row lock.
    let claimed = diesel::update(
        connect_attempts::table
            .find(&row.state_hash)
            .filter(connect_attempts::used_at.is_null()),
    )
    .set(connect_attempts::used_at.eq(Some(now.naive_utc())))
    .execute(conn)?;
    if claimed == 0 {
        return Ok(Err(Refused::Used));
    }
    let attempt = Attempt::from(row);
    if attempt.expires_at <= now {
        finish(conn, &attempt, "connect_expired")?;
        return Ok(Err(Refused::Expired));
    }
    Ok(Ok(attempt))
}

/// Audits how a taken attempt ended (`connect_denied`, `connect_failed`, `connect_expired`);
/// a connected one is audited by the credentials save it makes.
pub fn finish(conn: &mut AnyConnection, attempt: &Attempt, action: &str) -> Result<(), StoreError> {
    let company = CompanyId::parse(&attempt.company).map_err(StoreError::Worker)?;
    audit::record(
        conn,
        &company,
        author(&attempt.caller),
        action,
        &[],
        None,
        now(),
    )
}

/// `finish` in its own transaction.
pub fn record_end(
    conn: &mut AnyConnection,
    attempt: &Attempt,
    action: &str,
) -> Result<(), StoreError> {
    write_tx(conn, |conn| finish(conn, attempt, action))
}

/// Stores the refresh token ChannelAdvisor granted as a new credentials version, by the person
/// who started the attempt (`via: authorization_code`), with the save's events and cache drop.
/// `None` (nothing stored, the attempt audited as failed) when the company's Application ID
/// changed, or its credentials went, since the attempt started: the token is another
/// application's.
pub fn store_granted(
    conn: &mut AnyConnection,
    keys: &crate::KeyRing,
    attempt: &Attempt,
    refresh_token: &secrecy::SecretString,
) -> Result<Option<crate::credentials::Saved>, StoreError> {
    use crate::credentials::{self as creds, Change, CredentialsChange};
    let company = CompanyId::parse(&attempt.company).map_err(StoreError::Worker)?;
    write_tx(conn, |conn| {
        let current = creds::load_row_for_update(conn, company.as_str())?;
        if current
            .and_then(|r| r.application_id)
            .as_ref()
            .map(domain::ApplicationId::as_str)
            != Some(attempt.application_id.as_str())
        {
            finish(conn, attempt, "connect_failed")?;
            return Ok(None);
        }
        let change = CredentialsChange {
            refresh_token: Change::Set(refresh_token.clone()),
            // A Connect sets the company on the refresh-token method (contract §10).
            auth_method: Change::Set(creds::AuthMethod::RefreshToken),
            ..Default::default()
        };
        creds::save_in_tx(conn, keys, &company, &change, None, author(&attempt.caller)).map(Some)
    })
}

//! The access-token cache for connector jobs, and the lease that makes one instance at a time
//! refresh a company's token. The lease is taken and released in short transactions; nobody holds
//! a database connection while ChannelAdvisor is being called.

use chrono::{DateTime, Duration, Utc};
use diesel::prelude::*;
use secrecy::SecretString;

use crate::company::CompanyId;
use crate::connection::{store_token, ObtainedToken, StateChange, ACCESS_TOKEN};
use crate::credentials::{
    load_row_for_update, now, open_row, to_utc, ConnectionState, Credentials,
};
use crate::error::StoreError;
use crate::pool::{write_tx, AnyConnection};
use crate::schema::{access_tokens, credentials};
use crate::seal::KeyRing;

#[derive(Debug, Clone)]
pub struct CachedToken {
    pub access_token: SecretString,
    pub expires_at: DateTime<Utc>,
}

/// The cached token of the company's current credentials, whatever its remaining life.
pub fn cached(
    conn: &mut AnyConnection,
    keys: &KeyRing,
    company: &CompanyId,
) -> Result<Option<CachedToken>, StoreError> {
    let row: Option<(String, Vec<u8>, chrono::NaiveDateTime)> = access_tokens::table
        .inner_join(credentials::table.on(credentials::company.eq(access_tokens::company)))
        .filter(access_tokens::company.eq(company.as_str()))
        .filter(access_tokens::credentials_version.eq(credentials::version))
        .select((
            access_tokens::key_id,
            access_tokens::token,
            access_tokens::expires_at,
        ))
        .load(conn)?
        .into_iter()
        .next();
    row.map(|(key_id, bytes, expires_at)| {
        Ok(CachedToken {
            access_token: keys.open(company.as_str(), ACCESS_TOKEN, &key_id, &bytes)?,
            expires_at: to_utc(expires_at),
        })
    })
    .transpose()
}

/// The version of the company's credentials, or `None` once they are deleted.
pub fn credentials_version(
    conn: &mut AnyConnection,
    company: &CompanyId,
) -> Result<Option<i64>, StoreError> {
    Ok(credentials::table
        .find(company.as_str())
        .select(credentials::version)
        .first(conn)
        .optional()?)
}

/// What a caller should do next.
#[derive(Debug)]
pub enum Begin {
    /// A token with enough life is cached (perhaps just obtained by another instance).
    Fresh(CachedToken),
    /// No credentials, or not all three values.
    NotReady {
        state: ConnectionState,
        missing: Vec<&'static str>,
    },
    /// The caller holds the lease: it must call upstream and then `finish_*`.
    Owner { credentials: Credentials },
    /// Another instance is refreshing; ask again shortly.
    Busy,
    /// A refresh failed: after the caller started waiting, or permanently and recently for
    /// these very credentials. The stored error (JSON) is the answer.
    Failed { error: String },
}

pub struct BeginRequest<'a> {
    pub company: &'a CompanyId,
    /// The least remaining life a cached token must have.
    pub need: Duration,
    pub owner: &'a str,
    /// How long the lease lasts if its owner never comes back (crash): beyond the upstream deadline.
    pub lease: Duration,
    /// Errors recorded at or after this instant are answers for this caller.
    pub waiting_since: DateTime<Utc>,
    /// A permanent rejection of the same credentials is repeated without asking upstream for this long.
    pub remember_permanent: Duration,
}

pub fn begin_refresh(
    conn: &mut AnyConnection,
    keys: &KeyRing,
    req: &BeginRequest,
) -> Result<Begin, StoreError> {
    write_tx(conn, |conn| {
        let Some(row) = load_row_for_update(conn, req.company.as_str())? else {
            return Ok(Begin::NotReady {
                state: ConnectionState::NotConfigured,
                missing: vec!["application_id", "shared_secret", "refresh_token"],
            });
        };
        let at = now();
        if let Some(token) = cached(conn, keys, req.company)? {
            if token.expires_at - at > req.need {
                return Ok(Begin::Fresh(token));
            }
        }
        if let (Some(error), Some(error_at)) = (&row.token_error, row.token_error_at.map(to_utc)) {
            let same_values = row.token_error_version == Some(row.version);
            let permanent_recently = row.state == ConnectionState::Failed.as_str()
                && at - error_at < req.remember_permanent;
            if same_values && (error_at >= req.waiting_since || permanent_recently) {
                return Ok(Begin::Failed {
                    error: error.clone(),
                });
            }
        }
        let lease_held = row
            .token_lease_until
            .map(to_utc)
            .is_some_and(|until| until > at)
            && row.token_lease_owner.as_deref() != Some(req.owner);
        if lease_held {
            return Ok(Begin::Busy);
        }
        let credentials = open_row(keys, row)?;
        if !credentials.is_complete() {
            return Ok(Begin::NotReady {
                state: credentials.state,
                missing: credentials.missing(),
            });
        }
        diesel::update(credentials::table.find(req.company.as_str()))
            .set((
                credentials::token_lease_until.eq(Some((at + req.lease).naive_utc())),
                credentials::token_lease_owner.eq(Some(req.owner)),
            ))
            .execute(conn)?;
        Ok(Begin::Owner { credentials })
    })
}

fn release(conn: &mut AnyConnection, company: &str) -> Result<(), StoreError> {
    diesel::update(credentials::table.find(company))
        .set((
            credentials::token_lease_until.eq(None::<chrono::NaiveDateTime>),
            credentials::token_lease_owner.eq(None::<String>),
        ))
        .execute(conn)?;
    Ok(())
}

/// Stores the new token (and a rotated refresh token) unless the credentials changed meanwhile;
/// releases the lease. Returns whether it was stored.
pub fn finish_ok(
    conn: &mut AnyConnection,
    keys: &KeyRing,
    company: &CompanyId,
    version: i64,
    owner: &str,
    token: &ObtainedToken,
) -> Result<bool, StoreError> {
    write_tx(conn, |conn| {
        let Some(row) = load_row_for_update(conn, company.as_str())? else {
            return Ok(false);
        };
        if row.version != version {
            // Saved or deleted while we asked upstream: a token of the old values must not be cached.
            return Ok(false);
        }
        if row.token_lease_owner.as_deref() == Some(owner) {
            release(conn, company.as_str())?;
        }
        if let Some(rotated) = &token.rotated_refresh_token {
            crate::connection::store_rotated_refresh_token(conn, keys, &row, rotated)?;
        }
        store_token(conn, keys, company.as_str(), version, token)?;
        diesel::update(credentials::table.find(company.as_str()))
            .set(credentials::token_error.eq(None::<String>))
            .execute(conn)?;
        Ok(true)
    })
}

/// Records a failed refresh for the waiters and releases the lease; a permanent rejection also
/// sets the state to `failed`. Returns the state change, if any.
pub fn finish_err(
    conn: &mut AnyConnection,
    company: &CompanyId,
    version: i64,
    owner: &str,
    error_json: &str,
    permanent: bool,
) -> Result<Option<StateChange>, StoreError> {
    write_tx(conn, |conn| {
        let Some(row) = load_row_for_update(conn, company.as_str())? else {
            return Ok(None);
        };
        if row.version != version {
            return Ok(None);
        }
        if row.token_lease_owner.as_deref() == Some(owner) {
            release(conn, company.as_str())?;
        }
        let at = now().naive_utc();
        let previous = ConnectionState::parse(&row.state);
        let current = if permanent {
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
        let error: serde_json::Value = serde_json::from_str(error_json).unwrap_or_default();
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
        }
        Ok(Some(StateChange { previous, current }))
    })
}

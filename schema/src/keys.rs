//! Which encryption keys the database uses, and re-sealing everything under the current key.

use std::collections::BTreeSet;

use diesel::prelude::*;

use crate::credentials::load_row_for_update;
use crate::error::StoreError;
use crate::pool::{write_tx, AnyConnection};
use crate::schema::{access_tokens, credentials, key_checks, webhooks};
use crate::seal::{KeyRing, SealError};

/// Every key id that sealed something in the database.
pub fn key_ids_in_use(conn: &mut AnyConnection) -> Result<BTreeSet<String>, StoreError> {
    let ids: Vec<Option<String>> = credentials::table
        .select(credentials::key_id)
        .distinct()
        .load(conn)?;
    let token_ids: Vec<String> = access_tokens::table
        .select(access_tokens::key_id)
        .distinct()
        .load(conn)?;
    let webhook_ids: Vec<String> = webhooks::table
        .select(webhooks::key_id)
        .distinct()
        .load(conn)?;
    Ok(ids
        .into_iter()
        .flatten()
        .chain(token_ids)
        .chain(webhook_ids)
        .collect())
}

/// Start-up check: a database holding a key id the ring does not have would fail later, one
/// secret at a time; refuse to start instead, naming the id.
pub fn check_key_ids(conn: &mut AnyConnection, keys: &KeyRing) -> Result<(), StoreError> {
    match key_ids_in_use(conn)?
        .into_iter()
        .find(|id| !keys.has_key(id))
    {
        Some(id) => Err(StoreError::Seal(SealError::UnknownKey(id))),
        None => Ok(()),
    }
}

/// Start-up check of the keys themselves: each configured key id's key must open the check value
/// written when that id was first used; an id seen for the first time gets its check value here.
/// A key file replaced under the same id is refused at start, naming the id, instead of every
/// read then reporting the stored secrets as altered.
pub fn check_key_values(conn: &mut AnyConnection, keys: &KeyRing) -> Result<(), StoreError> {
    for id in keys.key_ids() {
        let stored: Option<Vec<u8>> = key_checks::table
            .find(id)
            .select(key_checks::check_value)
            .first(conn)
            .optional()?;
        let stored = match stored {
            Some(bytes) => bytes,
            None => {
                let Some(value) = keys.key_check(id) else {
                    continue;
                };
                let inserted = diesel::insert_into(key_checks::table)
                    .values((
                        key_checks::key_id.eq(id),
                        key_checks::check_value.eq(&value),
                        key_checks::created_at.eq(chrono::Utc::now().naive_utc()),
                    ))
                    .execute(conn);
                match inserted {
                    Ok(_) => continue,
                    // Another instance starting at the same moment wrote its value first: check
                    // against that one.
                    Err(_) => key_checks::table
                        .find(id)
                        .select(key_checks::check_value)
                        .first(conn)?,
                }
            }
        };
        if !keys.verifies_key_check(id, &stored) {
            return Err(StoreError::Seal(SealError::WrongKey(id.to_string())));
        }
    }
    Ok(())
}

/// Cached access tokens under an old key are dropped rather than re-sealed: they are a cache
/// that lives an hour at most and is refilled on the next request.
pub fn drop_tokens_under_old_keys(
    conn: &mut AnyConnection,
    keys: &KeyRing,
) -> Result<usize, StoreError> {
    Ok(
        diesel::delete(access_tokens::table.filter(access_tokens::key_id.ne(keys.primary_id())))
            .execute(conn)?,
    )
}

/// Rows still sealed under a key other than the first.
pub fn count_to_rotate(conn: &mut AnyConnection, keys: &KeyRing) -> Result<i64, StoreError> {
    Ok(credentials::table
        .filter(credentials::key_id.is_not_null())
        .filter(credentials::key_id.ne(keys.primary_id()))
        .count()
        .get_result(conn)?)
}

#[derive(Debug, Default)]
pub struct RotationBatch {
    /// The last company looked at; the next batch starts after it. `None` when nothing was left.
    pub last: Option<String>,
    pub rotated: u64,
    /// Companies whose secrets do not open with any configured key (left as they are).
    pub failed: Vec<(String, SealError)>,
}

/// Re-seals up to `size` companies after `after` (ordered by id) in one transaction. Each row is
/// re-read under its lock, so a save by a running server either happens before (and is re-sealed
/// here) or after (and is sealed by the server itself). Safe to interrupt: a rerun skips rows that
/// already carry the first key.
pub fn rotate_batch(
    conn: &mut AnyConnection,
    keys: &KeyRing,
    after: Option<&str>,
    size: i64,
) -> Result<RotationBatch, StoreError> {
    let primary = keys.primary_id().to_string();
    write_tx(conn, |conn| {
        let mut query = credentials::table
            .select(credentials::company)
            .filter(credentials::key_id.is_not_null())
            .filter(credentials::key_id.ne(&primary))
            .order(credentials::company.asc())
            .limit(size)
            .into_boxed();
        if let Some(after) = after {
            query = query.filter(credentials::company.gt(after.to_string()));
        }
        let companies: Vec<String> = query.load(conn)?;
        let mut batch = RotationBatch {
            last: companies.last().cloned(),
            ..Default::default()
        };
        for company in companies {
            let Some(row) = load_row_for_update(conn, &company)? else {
                continue;
            };
            if row.key_id.as_deref().is_none_or(|k| k == primary) {
                continue;
            }
            match crate::secrets::open(keys, &row) {
                Ok(values) => {
                    crate::secrets::write(conn, keys, &company, &values)?;
                    batch.rotated += 1;
                }
                Err(e) => batch.failed.push((company.clone(), e)),
            }
        }
        Ok(batch)
    })
}

//! The audit trail of credential changes: actor, time, action and field names, never values.

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;

use crate::credentials::to_utc;
use crate::error::StoreError;
use crate::pool::AnyConnection;
use crate::schema::audit_entries;
use domain::CompanyId;

#[derive(Queryable, Selectable, Insertable, Debug, Clone)]
#[diesel(table_name = audit_entries)]
struct AuditRow {
    id: String,
    company: String,
    at: NaiveDateTime,
    actor: String,
    action: String,
    fields: String,
    version: Option<i64>,
    via: Option<String>,
}

#[derive(Debug, Clone)]
pub struct AuditEntry {
    pub id: String,
    pub company: String,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    pub fields: Vec<String>,
    pub version: Option<i64>,
    /// How the change was made when not by a plain API write (`authorization_code`).
    pub via: Option<String>,
}

/// Who made a change, and how when it was not a plain API write.
#[derive(Debug, Clone, Copy)]
pub struct Author<'a> {
    pub actor: &'a str,
    pub via: Option<&'a str>,
}

impl<'a> Author<'a> {
    pub fn api(actor: &'a str) -> Author<'a> {
        Author { actor, via: None }
    }
}

/// Writes one entry; called inside the transaction of the change it describes.
pub fn record(
    conn: &mut AnyConnection,
    company: &CompanyId,
    author: Author<'_>,
    action: &str,
    fields: &[&str],
    version: Option<i64>,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let row = AuditRow {
        // v7 ids sort by creation time, which keeps "newest first" stable within one instant.
        id: uuid::Uuid::now_v7().to_string(),
        company: company.to_string(),
        at: now.naive_utc(),
        actor: author.actor.to_string(),
        action: action.to_string(),
        fields: serde_json::to_string(fields).unwrap_or_else(|_| "[]".into()),
        version,
        via: author.via.map(str::to_string),
    };
    diesel::insert_into(audit_entries::table)
        .values(&row)
        .execute(conn)?;
    Ok(())
}

/// Newest first.
pub fn list(
    conn: &mut AnyConnection,
    company: &CompanyId,
    limit: i64,
) -> Result<Vec<AuditEntry>, StoreError> {
    let rows: Vec<AuditRow> = audit_entries::table
        .filter(audit_entries::company.eq(company.as_str()))
        .order((audit_entries::at.desc(), audit_entries::id.desc()))
        .limit(limit)
        .select(AuditRow::as_select())
        .load(conn)?;
    rows.into_iter()
        .map(|r| {
            let fields = serde_json::from_str(&r.fields).map_err(|e| {
                StoreError::Worker(format!("audit entry {} has unreadable fields: {e}", r.id))
            })?;
            Ok(AuditEntry {
                id: r.id,
                company: r.company,
                at: to_utc(r.at),
                actor: r.actor,
                action: r.action,
                fields,
                version: r.version,
                via: r.via,
            })
        })
        .collect()
}

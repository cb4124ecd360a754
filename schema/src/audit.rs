//! The audit trail of credential changes: actor, time, action and field names, never values.

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;

use crate::company::CompanyId;
use crate::credentials::to_utc;
use crate::error::StoreError;
use crate::pool::AnyConnection;
use crate::schema::audit_entries;

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
}

/// Writes one entry; called inside the transaction of the change it describes.
pub fn record(
    conn: &mut AnyConnection,
    company: &CompanyId,
    actor: &str,
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
        actor: actor.to_string(),
        action: action.to_string(),
        fields: serde_json::to_string(fields).unwrap_or_else(|_| "[]".into()),
        version,
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
    Ok(rows
        .into_iter()
        .map(|r| AuditEntry {
            id: r.id,
            company: r.company,
            at: to_utc(r.at),
            actor: r.actor,
            action: r.action,
            fields: serde_json::from_str(&r.fields).unwrap_or_default(),
            version: r.version,
        })
        .collect())
}

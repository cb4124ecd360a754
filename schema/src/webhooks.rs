//! Web-hook subscriptions. The signing secret is sealed under the subscription's id.

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use secrecy::SecretString;

use crate::credentials::{now, to_utc};
use crate::error::StoreError;
use crate::pool::{write_tx, AnyConnection};
use crate::schema::{webhook_attempts, webhook_audit, webhook_deliveries, webhooks};
use crate::seal::KeyRing;

pub const WEBHOOK_SECRET: &str = "webhook_secret";

#[derive(Insertable, Queryable, Selectable, Debug, Clone)]
#[diesel(table_name = webhooks)]
struct WebhookRow {
    id: String,
    url: String,
    events: String,
    companies: String,
    description: Option<String>,
    enabled: bool,
    key_id: String,
    secret: Vec<u8>,
    created_at: NaiveDateTime,
    created_by: String,
}

/// A subscription as the API shows it (never the secret).
#[derive(Debug, Clone)]
pub struct Webhook {
    pub id: String,
    pub url: String,
    pub events: Vec<String>,
    pub companies: Vec<String>,
    pub description: Option<String>,
    pub enabled: bool,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
}

/// A list column read back; one that does not parse is an error naming the subscription, never
/// an empty list (an empty company list would cover every caller).
fn list_column(id: &str, column: &str, json: &str) -> Result<Vec<String>, StoreError> {
    serde_json::from_str(json).map_err(|e| {
        StoreError::Worker(format!(
            "web-hook {id} has an unreadable {column} column: {e}"
        ))
    })
}

impl TryFrom<WebhookRow> for Webhook {
    type Error = StoreError;

    fn try_from(r: WebhookRow) -> Result<Self, StoreError> {
        Ok(Webhook {
            events: list_column(&r.id, "events", &r.events)?,
            companies: list_column(&r.id, "companies", &r.companies)?,
            id: r.id,
            url: r.url,
            description: r.description,
            enabled: r.enabled,
            created_at: to_utc(r.created_at),
            created_by: r.created_by,
        })
    }
}

pub struct NewWebhook {
    pub url: String,
    pub events: Vec<String>,
    pub companies: Vec<String>,
    pub description: Option<String>,
    pub created_by: String,
}

pub fn create(
    conn: &mut AnyConnection,
    keys: &KeyRing,
    new: NewWebhook,
    secret: &SecretString,
) -> Result<Webhook, StoreError> {
    let id = format!("wh_{}", uuid::Uuid::now_v7().simple());
    let sealed = keys.seal(&id, WEBHOOK_SECRET, secret);
    let row = WebhookRow {
        id,
        url: new.url,
        events: serde_json::to_string(&new.events).unwrap_or_else(|_| "[]".into()),
        companies: serde_json::to_string(&new.companies).unwrap_or_else(|_| "[]".into()),
        description: new.description,
        enabled: true,
        key_id: sealed.key_id,
        secret: sealed.bytes,
        created_at: now().naive_utc(),
        created_by: new.created_by,
    };
    write_tx(conn, |conn| {
        diesel::insert_into(webhooks::table)
            .values(&row)
            .execute(conn)?;
        let created = Webhook::try_from(row.clone())?;
        record(conn, &created, &created.created_by, CREATED)?;
        Ok(created)
    })
}

/// How many subscriptions `created_by` has made (and not deleted).
pub fn count_by_creator(conn: &mut AnyConnection, created_by: &str) -> Result<i64, StoreError> {
    Ok(webhooks::table
        .filter(webhooks::created_by.eq(created_by))
        .count()
        .get_result(conn)?)
}

pub fn list(conn: &mut AnyConnection) -> Result<Vec<Webhook>, StoreError> {
    let rows: Vec<WebhookRow> = webhooks::table
        .order(webhooks::created_at.asc())
        .select(WebhookRow::as_select())
        .load(conn)?;
    rows.into_iter().map(Webhook::try_from).collect()
}

pub fn get(conn: &mut AnyConnection, id: &str) -> Result<Option<Webhook>, StoreError> {
    let rows: Vec<WebhookRow> = webhooks::table
        .find(id)
        .select(WebhookRow::as_select())
        .load(conn)?;
    rows.into_iter().next().map(Webhook::try_from).transpose()
}

/// Removes the subscription and its pending deliveries; attempts and the audit stay as history.
pub fn delete(conn: &mut AnyConnection, hook: &Webhook, actor: &str) -> Result<bool, StoreError> {
    let id = hook.id.as_str();
    write_tx(conn, |conn| {
        diesel::delete(webhook_deliveries::table.filter(webhook_deliveries::webhook_id.eq(id)))
            .execute(conn)?;
        let gone = diesel::delete(webhooks::table.find(id)).execute(conn)? > 0;
        if gone {
            record(conn, hook, actor, DELETED)?;
        }
        Ok(gone)
    })
}

pub fn rotate_secret(
    conn: &mut AnyConnection,
    keys: &KeyRing,
    hook: &Webhook,
    secret: &SecretString,
    actor: &str,
) -> Result<bool, StoreError> {
    let sealed = keys.seal(&hook.id, WEBHOOK_SECRET, secret);
    write_tx(conn, |conn| {
        let rotated = diesel::update(webhooks::table.find(&hook.id))
            .set((
                webhooks::key_id.eq(&sealed.key_id),
                webhooks::secret.eq(&sealed.bytes),
            ))
            .execute(conn)?
            > 0;
        if rotated {
            record(conn, hook, actor, SECRET_ROTATED)?;
        }
        Ok(rotated)
    })
}

/// Queues a `webhook.ping` for this subscription only; answers the event id.
pub fn ping(conn: &mut AnyConnection, hook: &Webhook, actor: &str) -> Result<String, StoreError> {
    write_tx(conn, |conn| {
        let data = serde_json::json!({"company": null, "webhook_id": hook.id});
        let event = crate::outbox::emit(conn, crate::outbox::PING, None, data, Some(&hook.id))?;
        record(conn, hook, actor, PINGED)?;
        Ok(event)
    })
}

pub const CREATED: &str = "webhook_created";
pub const DELETED: &str = "webhook_deleted";
pub const SECRET_ROTATED: &str = "webhook_secret_rotated";
pub const PINGED: &str = "webhook_pinged";

#[derive(Queryable, Selectable, Insertable, Debug, Clone)]
#[diesel(table_name = webhook_audit)]
struct AuditRow {
    id: String,
    webhook_id: String,
    at: NaiveDateTime,
    actor: String,
    action: String,
    companies: String,
}

/// Who did what to which subscription, and when. Never the secret.
#[derive(Debug, Clone)]
pub struct AuditEntry {
    pub id: String,
    pub webhook_id: String,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    /// The subscription's companies at the time (who may see the entry).
    pub companies: Vec<String>,
}

/// One audit entry, in the transaction of the change it describes.
fn record(
    conn: &mut AnyConnection,
    hook: &Webhook,
    actor: &str,
    action: &str,
) -> Result<(), StoreError> {
    let row = AuditRow {
        id: uuid::Uuid::now_v7().to_string(),
        webhook_id: hook.id.clone(),
        at: now().naive_utc(),
        actor: actor.to_string(),
        action: action.to_string(),
        companies: serde_json::to_string(&hook.companies)
            .map_err(|e| StoreError::Worker(e.to_string()))?,
    };
    diesel::insert_into(webhook_audit::table)
        .values(&row)
        .execute(conn)?;
    Ok(())
}

/// Newest first, up to `limit` entries.
pub fn audit(conn: &mut AnyConnection, limit: i64) -> Result<Vec<AuditEntry>, StoreError> {
    let rows: Vec<AuditRow> = webhook_audit::table
        .order((webhook_audit::at.desc(), webhook_audit::id.desc()))
        .limit(limit)
        .select(AuditRow::as_select())
        .load(conn)?;
    rows.into_iter()
        .map(|r| {
            let companies = serde_json::from_str(&r.companies).map_err(|e| {
                StoreError::Worker(format!(
                    "web-hook audit entry {} is not readable: {e}",
                    r.id
                ))
            })?;
            Ok(AuditEntry {
                id: r.id,
                webhook_id: r.webhook_id,
                at: to_utc(r.at),
                actor: r.actor,
                action: r.action,
                companies,
            })
        })
        .collect()
}

/// Re-seals every subscription secret under the first key (small table: one transaction).
pub fn reseal_all(conn: &mut AnyConnection, keys: &KeyRing) -> Result<usize, StoreError> {
    write_tx(conn, |conn| {
        let rows: Vec<(String, String, Vec<u8>)> = webhooks::table
            .filter(webhooks::key_id.ne(keys.primary_id()))
            .select((webhooks::id, webhooks::key_id, webhooks::secret))
            .load(conn)?;
        for (id, key_id, bytes) in &rows {
            let plain = keys.open(id, WEBHOOK_SECRET, key_id, bytes)?;
            let sealed = keys.seal(id, WEBHOOK_SECRET, &plain);
            diesel::update(webhooks::table.find(id))
                .set((
                    webhooks::key_id.eq(sealed.key_id),
                    webhooks::secret.eq(sealed.bytes),
                ))
                .execute(conn)?;
        }
        Ok(rows.len())
    })
}

#[derive(Queryable, Debug, Clone)]
pub struct Attempt {
    pub id: String,
    pub event_id: String,
    pub event_type: String,
    pub attempt: i64,
    pub at: NaiveDateTime,
    pub status_code: Option<i64>,
    pub duration_ms: i64,
    pub outcome: String,
    pub error: Option<String>,
}

/// Delivery attempts of a subscription, newest first.
pub fn attempts(
    conn: &mut AnyConnection,
    webhook_id: &str,
    limit: i64,
) -> Result<Vec<Attempt>, StoreError> {
    Ok(webhook_attempts::table
        .filter(webhook_attempts::webhook_id.eq(webhook_id))
        .order((webhook_attempts::at.desc(), webhook_attempts::id.desc()))
        .limit(limit)
        .select((
            webhook_attempts::id,
            webhook_attempts::event_id,
            webhook_attempts::event_type,
            webhook_attempts::attempt,
            webhook_attempts::at,
            webhook_attempts::status_code,
            webhook_attempts::duration_ms,
            webhook_attempts::outcome,
            webhook_attempts::error,
        ))
        .load(conn)?)
}

#[cfg(test)]
mod tests {
    use secrecy::SecretString;

    use super::*;

    /// A damaged company list is an error, never an empty list: an empty list would make the
    /// subscription visible to, and manageable by, every caller.
    #[test]
    fn an_unreadable_company_list_is_an_error() {
        let dir = tempfile::TempDir::new().unwrap();
        let db = crate::pool::test_sqlite(dir.path());
        let keys = KeyRing::parse(&KeyRing::generate_spec("k1")).unwrap();
        let mut conn = db.get().unwrap();
        let new = NewWebhook {
            url: "https://erp.example/hook".into(),
            events: vec!["connection.tested".into()],
            companies: vec!["acme".into()],
            description: None,
            created_by: "test".into(),
        };
        let hook = create(&mut conn, &keys, new, &SecretString::from("whsec_x")).unwrap();
        diesel::sql_query("UPDATE webhooks SET companies = 'acme'")
            .execute(&mut conn)
            .unwrap();
        let listed = list(&mut conn).unwrap_err().to_string();
        assert!(listed.contains("unreadable companies"), "{listed}");
        assert!(get(&mut conn, &hook.id).is_err());
    }
}

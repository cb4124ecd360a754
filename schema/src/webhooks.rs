//! Web-hook subscriptions. The signing secret is sealed under the subscription's id.

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use secrecy::SecretString;

use crate::credentials::{now, to_utc};
use crate::error::StoreError;
use crate::pool::{write_tx, AnyConnection};
use crate::schema::{webhook_attempts, webhook_deliveries, webhooks};
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

impl From<WebhookRow> for Webhook {
    fn from(r: WebhookRow) -> Self {
        Webhook {
            id: r.id,
            url: r.url,
            events: serde_json::from_str(&r.events).unwrap_or_default(),
            companies: serde_json::from_str(&r.companies).unwrap_or_default(),
            description: r.description,
            enabled: r.enabled,
            created_at: to_utc(r.created_at),
            created_by: r.created_by,
        }
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
    diesel::insert_into(webhooks::table)
        .values(&row)
        .execute(conn)?;
    Ok(row.into())
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
    Ok(rows.into_iter().map(Webhook::from).collect())
}

pub fn get(conn: &mut AnyConnection, id: &str) -> Result<Option<Webhook>, StoreError> {
    let rows: Vec<WebhookRow> = webhooks::table
        .find(id)
        .select(WebhookRow::as_select())
        .load(conn)?;
    Ok(rows.into_iter().next().map(Webhook::from))
}

/// Removes the subscription and its pending deliveries; attempts stay as history.
pub fn delete(conn: &mut AnyConnection, id: &str) -> Result<bool, StoreError> {
    write_tx(conn, |conn| {
        diesel::delete(webhook_deliveries::table.filter(webhook_deliveries::webhook_id.eq(id)))
            .execute(conn)?;
        Ok(diesel::delete(webhooks::table.find(id)).execute(conn)? > 0)
    })
}

pub fn rotate_secret(
    conn: &mut AnyConnection,
    keys: &KeyRing,
    id: &str,
    secret: &SecretString,
) -> Result<bool, StoreError> {
    let sealed = keys.seal(id, WEBHOOK_SECRET, secret);
    Ok(diesel::update(webhooks::table.find(id))
        .set((
            webhooks::key_id.eq(sealed.key_id),
            webhooks::secret.eq(sealed.bytes),
        ))
        .execute(conn)?
        > 0)
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

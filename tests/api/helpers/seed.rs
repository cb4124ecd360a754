//! Many companies written straight into the store, a thousand rows an `INSERT`: what a fleet
//! already in the database looks like, for tests about what happens to it afterwards (rotating
//! its keys, a screen listing it). `credentials::save` writes each with its audit entry and
//! events, one at a time: 10,000 of those took 30 s on PostgreSQL in a debug build.

use diesel::prelude::*;
use schema::credentials::{DEVELOPER_KEY, PASSWORD, REFRESH_TOKEN, SHARED_SECRET};
use schema::schema::credentials;
use schema::{AnyConnection, KeyRing};
use secrecy::SecretString;

/// One complete company as seeded: SOAP values only where given.
pub struct Seeded {
    pub company: String,
    pub application_id: String,
    pub shared_secret: String,
    pub refresh_token: String,
    pub developer_key: Option<String>,
    pub password: Option<String>,
}

#[derive(Insertable)]
#[diesel(table_name = credentials)]
struct Row {
    company: String,
    application_id: Option<String>,
    shared_secret: Option<Vec<u8>>,
    refresh_token: Option<Vec<u8>>,
    developer_key: Option<Vec<u8>>,
    password: Option<Vec<u8>>,
    key_id: Option<String>,
    version: i64,
    state: String,
    state_since: chrono::NaiveDateTime,
    created_at: chrono::NaiveDateTime,
    updated_at: chrono::NaiveDateTime,
    updated_by: String,
}

/// Writes `companies` as complete, untested connections sealed under `keys`' current key.
pub fn seed(conn: &mut AnyConnection, keys: &KeyRing, companies: &[Seeded]) {
    let now = chrono::Utc::now().naive_utc();
    // Every value is sealed under the ring's current key.
    let key_id = keys.seal("-", "-", &SecretString::from("-")).key_id;
    for chunk in companies.chunks(1000) {
        let rows: Vec<Row> = chunk
            .iter()
            .map(|c| {
                let seal = |field: &str, value: &str| {
                    keys.seal(&c.company, field, &SecretString::from(value))
                        .bytes
                };
                Row {
                    company: c.company.clone(),
                    application_id: Some(c.application_id.clone()),
                    shared_secret: Some(seal(SHARED_SECRET, &c.shared_secret)),
                    refresh_token: Some(seal(REFRESH_TOKEN, &c.refresh_token)),
                    developer_key: c.developer_key.as_deref().map(|v| seal(DEVELOPER_KEY, v)),
                    password: c.password.as_deref().map(|v| seal(PASSWORD, v)),
                    key_id: Some(key_id.clone()),
                    version: 1,
                    state: "untested".into(),
                    state_since: now,
                    created_at: now,
                    updated_at: now,
                    updated_by: "seed".into(),
                }
            })
            .collect();
        let insert = diesel::insert_into(credentials::table).values(&rows);
        match conn {
            AnyConnection::Sqlite(c) => insert.execute(c),
            AnyConnection::Postgresql(c) => insert.execute(c),
        }
        .unwrap();
    }
}

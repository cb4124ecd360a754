//! The sealed fields of a credentials row, opened and sealed together: one key id per row, so
//! whenever one secret is sealed anew (a save, a rotated refresh token, `rotate-keys`) all are,
//! under the current key, and none is left under a key the row no longer names.

use diesel::prelude::*;
use secrecy::SecretString;

use crate::credentials::{CredentialsRow, DEVELOPER_KEY, PASSWORD, REFRESH_TOKEN, SHARED_SECRET};
use crate::error::StoreError;
use crate::schema::credentials;
use crate::seal::{KeyRing, SealError};

/// A row's secrets in the clear. `Debug` is redacted by `SecretString`.
#[derive(Debug, Clone, Default)]
pub struct Secrets {
    pub shared_secret: Option<SecretString>,
    pub refresh_token: Option<SecretString>,
    pub developer_key: Option<SecretString>,
    pub password: Option<SecretString>,
}

/// The sealed columns as written back.
#[derive(AsChangeset, Debug)]
#[diesel(table_name = credentials, treat_none_as_null = true)]
pub(crate) struct Sealed {
    pub key_id: Option<String>,
    pub shared_secret: Option<Vec<u8>>,
    pub refresh_token: Option<Vec<u8>>,
    pub developer_key: Option<Vec<u8>>,
    pub password: Option<Vec<u8>>,
}

impl Secrets {
    /// Opens every sealed field of the row (its company and each field's name are the
    /// associated data); the first that does not open is the error.
    pub(crate) fn open(keys: &KeyRing, row: &CredentialsRow) -> Result<Secrets, SealError> {
        let key_id = row.key_id.as_deref().unwrap_or_default();
        let open = |field: &str, bytes: &Option<Vec<u8>>| {
            bytes
                .as_ref()
                .map(|b| keys.open(row.company.as_str(), field, key_id, b))
                .transpose()
        };
        Ok(Secrets {
            shared_secret: open(SHARED_SECRET, &row.shared_secret)?,
            refresh_token: open(REFRESH_TOKEN, &row.refresh_token)?,
            developer_key: open(DEVELOPER_KEY, &row.developer_key)?,
            password: open(PASSWORD, &row.password)?,
        })
    }

    /// Seals every set field under the current key.
    pub(crate) fn seal(&self, keys: &KeyRing, company: &str) -> Sealed {
        let any = [
            &self.shared_secret,
            &self.refresh_token,
            &self.developer_key,
            &self.password,
        ]
        .iter()
        .any(|f| f.is_some());
        let seal = |field: &str, value: &Option<SecretString>| {
            value.as_ref().map(|v| keys.seal(company, field, v).bytes)
        };
        Sealed {
            key_id: any.then(|| keys.primary_id().to_string()),
            shared_secret: seal(SHARED_SECRET, &self.shared_secret),
            refresh_token: seal(REFRESH_TOKEN, &self.refresh_token),
            developer_key: seal(DEVELOPER_KEY, &self.developer_key),
            password: seal(PASSWORD, &self.password),
        }
    }
}

/// Writes a row's secrets sealed anew under the current key.
pub(crate) fn write(
    conn: &mut crate::AnyConnection,
    keys: &KeyRing,
    company: &str,
    secrets: &Secrets,
) -> Result<(), StoreError> {
    diesel::update(credentials::table.find(company))
        .set(&secrets.seal(keys, company))
        .execute(conn)?;
    Ok(())
}

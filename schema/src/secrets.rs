//! The sealed fields of a credentials row, opened and sealed together: one key id per row, so
//! whenever one secret is sealed anew (a save, a rotated refresh token, `rotate-keys`) all are,
//! under the current key, and none is left under a key the row no longer names. The values are
//! the domain's `CredentialValues`; which fields are secret is `CredentialField::SECRETS`.

use diesel::prelude::*;
use domain::values::{CredentialField, CredentialValues};

use crate::credentials::CredentialsRow;
use crate::error::StoreError;
use crate::schema::credentials;
use crate::seal::{KeyRing, SealError};

/// The sealed columns as written back.
#[derive(AsChangeset, Debug, Default)]
#[diesel(table_name = credentials, treat_none_as_null = true)]
pub(crate) struct Sealed {
    pub key_id: Option<String>,
    pub shared_secret: Option<Vec<u8>>,
    pub refresh_token: Option<Vec<u8>>,
    pub developer_key: Option<Vec<u8>>,
    pub password: Option<Vec<u8>>,
}

impl Sealed {
    /// The column a secret field is sealed into (`None` for a field that is not secret).
    fn column(&mut self, field: CredentialField) -> Option<&mut Option<Vec<u8>>> {
        match field {
            CredentialField::SharedSecret => Some(&mut self.shared_secret),
            CredentialField::RefreshToken => Some(&mut self.refresh_token),
            CredentialField::DeveloperKey => Some(&mut self.developer_key),
            CredentialField::Password => Some(&mut self.password),
            _ => None,
        }
    }
}

/// The row's sealed bytes of a secret field (`None` when not set or not secret).
fn sealed_bytes(row: &CredentialsRow, field: CredentialField) -> Option<&Vec<u8>> {
    match field {
        CredentialField::SharedSecret => row.shared_secret.as_ref(),
        CredentialField::RefreshToken => row.refresh_token.as_ref(),
        CredentialField::DeveloperKey => row.developer_key.as_ref(),
        CredentialField::Password => row.password.as_ref(),
        _ => None,
    }
}

/// The row's values with every sealed field opened (its company and each field's name are the
/// associated data); the first that does not open is the error.
pub(crate) fn open(keys: &KeyRing, row: &CredentialsRow) -> Result<CredentialValues, SealError> {
    open_with(keys, row, |_| true)
}

/// `open`, except that a field for which `must_open` is false and that does not open counts as
/// set, to a value unlike any other (so a change that sets or clears it is a change).
pub(crate) fn open_with(
    keys: &KeyRing,
    row: &CredentialsRow,
    must_open: impl Fn(CredentialField) -> bool,
) -> Result<CredentialValues, SealError> {
    let key_id = row.key_id.as_deref().unwrap_or_default();
    let mut values = CredentialValues {
        application_id: row.application_id.clone(),
        profile_id: row.profile_id,
        auth_method: row.auth_method,
        account_id: row.account_id.clone(),
        ..Default::default()
    };
    for field in CredentialField::SECRETS {
        let opened = match sealed_bytes(row, field) {
            None => None,
            Some(b) => match keys.open(row.company.as_str(), field.as_str(), key_id, b) {
                Ok(value) => Some(value),
                Err(e) if must_open(field) => return Err(e),
                Err(_) => Some(secrecy::SecretString::from("\u{0}unreadable")),
            },
        };
        if let Some(slot) = values.secret_mut(field) {
            *slot = opened;
        }
    }
    Ok(values)
}

/// Seals every set secret field under the current key.
pub(crate) fn seal(values: &CredentialValues, keys: &KeyRing, company: &str) -> Sealed {
    let mut sealed = Sealed::default();
    for field in CredentialField::SECRETS {
        if let (Some(value), Some(column)) = (values.secret(field), sealed.column(field)) {
            *column = Some(keys.seal(company, field.as_str(), value).bytes);
            sealed.key_id = Some(keys.primary_id().to_string());
        }
    }
    sealed
}

/// Writes a row's secrets sealed anew under the current key.
pub(crate) fn write(
    conn: &mut crate::AnyConnection,
    keys: &KeyRing,
    company: &str,
    values: &CredentialValues,
) -> Result<(), StoreError> {
    diesel::update(credentials::table.find(company))
        .set(&seal(values, keys, company))
        .execute(conn)?;
    Ok(())
}

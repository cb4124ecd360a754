//! One company's credentials as the product sees them: the eight fields named once
//! (`CredentialField`), their values with the secrets open (`CredentialValues`), a change to them
//! (`CredentialsChange`), one `overlay` that applies a change (a save, or a test's candidate
//! values), and the rules a save follows for the connection's state. The store seals and writes
//! what these say; the tests run on what `overlay` gives.

use secrecy::{ExposeSecret, SecretString};

use crate::credentials::{AccountId, ApplicationId, AuthMethod, ProfileId};
use crate::state::ConnectionState;

/// The fields of a company's credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CredentialField {
    AuthMethod,
    ApplicationId,
    SharedSecret,
    RefreshToken,
    ProfileId,
    DeveloperKey,
    Password,
    AccountId,
}

impl CredentialField {
    /// Every field, in the order a change lists them.
    pub const ALL: [CredentialField; 8] = [
        CredentialField::AuthMethod,
        CredentialField::ApplicationId,
        CredentialField::SharedSecret,
        CredentialField::RefreshToken,
        CredentialField::ProfileId,
        CredentialField::DeveloperKey,
        CredentialField::Password,
        CredentialField::AccountId,
    ];

    /// The fields sealed at rest.
    pub const SECRETS: [CredentialField; 4] = [
        CredentialField::SharedSecret,
        CredentialField::RefreshToken,
        CredentialField::DeveloperKey,
        CredentialField::Password,
    ];

    /// The field's name in the API, the audit trail, events, and the sealed value's associated
    /// data (so it never changes).
    pub const fn as_str(self) -> &'static str {
        match self {
            CredentialField::AuthMethod => "auth_method",
            CredentialField::ApplicationId => "application_id",
            CredentialField::SharedSecret => "shared_secret",
            CredentialField::RefreshToken => "refresh_token",
            CredentialField::ProfileId => "profile_id",
            CredentialField::DeveloperKey => "developer_key",
            CredentialField::Password => "password",
            CredentialField::AccountId => "account_id",
        }
    }
}

/// What a write does to one field: PUT sets or clears every field, PATCH may keep some.
#[derive(Debug, Clone, Default)]
pub enum Change<T> {
    #[default]
    Keep,
    Set(T),
    Clear,
}

/// A write's change to each field; `Default` keeps every field.
#[derive(Debug, Clone, Default)]
pub struct CredentialsChange {
    pub application_id: Change<ApplicationId>,
    pub shared_secret: Change<SecretString>,
    pub refresh_token: Change<SecretString>,
    pub profile_id: Change<ProfileId>,
    /// `Clear` means the default method, `refresh_token`.
    pub auth_method: Change<AuthMethod>,
    pub developer_key: Change<SecretString>,
    pub password: Change<SecretString>,
    pub account_id: Change<AccountId>,
}

impl CredentialsChange {
    /// What the change does to a secret field (`None` for a field that is not secret).
    pub fn secret(&self, field: CredentialField) -> Option<&Change<SecretString>> {
        match field {
            CredentialField::SharedSecret => Some(&self.shared_secret),
            CredentialField::RefreshToken => Some(&self.refresh_token),
            CredentialField::DeveloperKey => Some(&self.developer_key),
            CredentialField::Password => Some(&self.password),
            _ => None,
        }
    }
}

/// One company's values, secrets open. `Debug` is redacted by `SecretString`.
#[derive(Debug, Clone, Default)]
pub struct CredentialValues {
    pub application_id: Option<ApplicationId>,
    pub shared_secret: Option<SecretString>,
    pub refresh_token: Option<SecretString>,
    pub profile_id: Option<ProfileId>,
    pub auth_method: AuthMethod,
    pub developer_key: Option<SecretString>,
    pub password: Option<SecretString>,
    pub account_id: Option<AccountId>,
}

impl CredentialValues {
    /// These values with `change` laid over them, and the fields whose value it changed (in
    /// `CredentialField::ALL`'s order).
    pub fn overlay(&self, change: &CredentialsChange) -> (CredentialValues, Vec<CredentialField>) {
        let mut changed = Vec::new();
        let mut note = |field, did: bool| {
            if did {
                changed.push(field);
            }
        };
        let auth_method = match &change.auth_method {
            Change::Keep => self.auth_method,
            Change::Clear => AuthMethod::default(),
            Change::Set(m) => *m,
        };
        note(CredentialField::AuthMethod, auth_method != self.auth_method);
        let (application_id, did) = plain(&change.application_id, &self.application_id);
        note(CredentialField::ApplicationId, did);
        let (shared_secret, did) = secret(&change.shared_secret, &self.shared_secret);
        note(CredentialField::SharedSecret, did);
        let (refresh_token, did) = secret(&change.refresh_token, &self.refresh_token);
        note(CredentialField::RefreshToken, did);
        let (profile_id, did) = plain(&change.profile_id, &self.profile_id);
        note(CredentialField::ProfileId, did);
        let (developer_key, did) = secret(&change.developer_key, &self.developer_key);
        note(CredentialField::DeveloperKey, did);
        let (password, did) = secret(&change.password, &self.password);
        note(CredentialField::Password, did);
        let (account_id, did) = plain(&change.account_id, &self.account_id);
        note(CredentialField::AccountId, did);
        let values = CredentialValues {
            application_id,
            shared_secret,
            refresh_token,
            profile_id,
            auth_method,
            developer_key,
            password,
            account_id,
        };
        (values, changed)
    }

    /// The values the method needs that are not set, in the order the screen shows them.
    pub fn missing(&self) -> Vec<CredentialField> {
        missing(self.auth_method, |field| self.is_set(field))
    }

    /// A secret field's value (`None` for a field that is not secret, or not set).
    pub fn secret(&self, field: CredentialField) -> Option<&SecretString> {
        match field {
            CredentialField::SharedSecret => self.shared_secret.as_ref(),
            CredentialField::RefreshToken => self.refresh_token.as_ref(),
            CredentialField::DeveloperKey => self.developer_key.as_ref(),
            CredentialField::Password => self.password.as_ref(),
            _ => None,
        }
    }

    /// Where a secret field's value is kept (`None` for a field that is not secret).
    pub fn secret_mut(&mut self, field: CredentialField) -> Option<&mut Option<SecretString>> {
        match field {
            CredentialField::SharedSecret => Some(&mut self.shared_secret),
            CredentialField::RefreshToken => Some(&mut self.refresh_token),
            CredentialField::DeveloperKey => Some(&mut self.developer_key),
            CredentialField::Password => Some(&mut self.password),
            _ => None,
        }
    }

    /// Whether the field holds a value.
    pub fn is_set(&self, field: CredentialField) -> bool {
        match field {
            CredentialField::AuthMethod => true,
            CredentialField::ApplicationId => self.application_id.is_some(),
            CredentialField::SharedSecret => self.shared_secret.is_some(),
            CredentialField::RefreshToken => self.refresh_token.is_some(),
            CredentialField::ProfileId => self.profile_id.is_some(),
            CredentialField::DeveloperKey => self.developer_key.is_some(),
            CredentialField::Password => self.password.is_some(),
            CredentialField::AccountId => self.account_id.is_some(),
        }
    }

    pub fn is_complete(&self) -> bool {
        self.missing().is_empty()
    }
}

/// The values `method` needs that `is_set` says are not set, in the order the screen shows them
/// (contract §3: complete means every one of them is set; the Profile ID is optional).
pub fn missing(
    method: AuthMethod,
    is_set: impl Fn(CredentialField) -> bool,
) -> Vec<CredentialField> {
    let own: &[CredentialField] = match method {
        AuthMethod::RefreshToken => &[CredentialField::RefreshToken],
        AuthMethod::Soap => &[
            CredentialField::DeveloperKey,
            CredentialField::Password,
            CredentialField::AccountId,
        ],
    };
    [
        CredentialField::ApplicationId,
        CredentialField::SharedSecret,
    ]
    .iter()
    .chain(own)
    .copied()
    .filter(|field| !is_set(*field))
    .collect()
}

fn plain<T: Clone + PartialEq>(change: &Change<T>, old: &Option<T>) -> (Option<T>, bool) {
    match change {
        Change::Keep => (old.clone(), false),
        Change::Clear => (None, old.is_some()),
        Change::Set(new) => (Some(new.clone()), old.as_ref() != Some(new)),
    }
}

fn secret(
    change: &Change<SecretString>,
    old: &Option<SecretString>,
) -> (Option<SecretString>, bool) {
    match change {
        Change::Keep => (old.clone(), false),
        Change::Clear => (None, old.is_some()),
        Change::Set(new) => {
            let same = old
                .as_ref()
                .is_some_and(|o| o.expose_secret() == new.expose_secret());
            (Some(new.clone()), !same)
        }
    }
}

/// The state a save that changed something leaves the connection in (contract §4): complete
/// values are untested until a test or a job's refresh says otherwise; anything less is
/// incomplete.
pub fn state_after_save(values: &CredentialValues) -> ConnectionState {
    if values.is_complete() {
        ConnectionState::Untested
    } else {
        ConnectionState::Incomplete
    }
}

/// When the connection entered `state`: a save that leaves the state as it was keeps the moment
/// it began (`since`); a new state begins `now`.
pub fn state_since<T>(previous: Option<(ConnectionState, T)>, state: ConnectionState, now: T) -> T {
    match previous {
        Some((was, since)) if was == state => since,
        _ => now,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> SecretString {
        SecretString::from(v.to_string())
    }

    fn complete() -> CredentialValues {
        CredentialValues {
            application_id: ApplicationId::parse("app").unwrap(),
            shared_secret: Some(s("secret")),
            refresh_token: Some(s("refresh")),
            ..Default::default()
        }
    }

    #[test]
    fn overlay_keeps_sets_and_clears_and_names_what_changed() {
        let old = complete();
        let change = CredentialsChange {
            shared_secret: Change::Set(s("secret")), // the same value: not a change
            refresh_token: Change::Set(s("another")),
            profile_id: Change::Set(ProfileId::parse(7).unwrap()),
            application_id: Change::Clear,
            ..Default::default()
        };
        let (new, changed) = old.overlay(&change);
        assert_eq!(
            changed,
            [
                CredentialField::ApplicationId,
                CredentialField::RefreshToken,
                CredentialField::ProfileId
            ]
        );
        assert!(new.application_id.is_none());
        assert_eq!(new.refresh_token.unwrap().expose_secret(), "another");
        assert_eq!(new.shared_secret.unwrap().expose_secret(), "secret");
        let (same, nothing) = old.overlay(&CredentialsChange::default());
        assert!(nothing.is_empty());
        assert_eq!(same.refresh_token.unwrap().expose_secret(), "refresh");
    }

    #[test]
    fn what_is_missing_depends_on_the_method() {
        assert!(complete().is_complete());
        let soap = complete()
            .overlay(&CredentialsChange {
                auth_method: Change::Set(AuthMethod::Soap),
                ..Default::default()
            })
            .0;
        assert_eq!(
            soap.missing(),
            [
                CredentialField::DeveloperKey,
                CredentialField::Password,
                CredentialField::AccountId
            ]
        );
        assert_eq!(
            CredentialValues::default().missing(),
            [
                CredentialField::ApplicationId,
                CredentialField::SharedSecret,
                CredentialField::RefreshToken
            ]
        );
    }

    #[test]
    fn a_save_leaves_complete_values_untested_and_keeps_an_unchanged_state_s_start() {
        assert_eq!(state_after_save(&complete()), ConnectionState::Untested);
        assert_eq!(
            state_after_save(&CredentialValues::default()),
            ConnectionState::Incomplete
        );
        let since = state_since(
            Some((ConnectionState::Untested, 1)),
            ConnectionState::Untested,
            9,
        );
        assert_eq!(since, 1);
        let since = state_since(
            Some((ConnectionState::Connected, 1)),
            ConnectionState::Untested,
            9,
        );
        assert_eq!(since, 9);
        assert_eq!(state_since(None, ConnectionState::Incomplete, 9), 9);
    }
}

//! The values from ChannelAdvisor's Developer Console, parsed once at the edge. Secrets stay in
//! `SecretString` from the request until they are sealed or sent upstream.

use secrecy::{ExposeSecret, SecretString};
use thiserror::Error;

/// Why a pasted value is refused; the message names the rule, never the value.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum CredentialError {
    #[error("must not contain spaces, tabs, line breaks or other control characters")]
    InnerWhitespace,
    #[error("must be at most {0} characters")]
    TooLong(usize),
    #[error("must be a positive whole number")]
    NotPositive,
    #[error("must be the SOAP account's GUID (like 0a1b2c3d-4e5f-6789-abcd-ef0123456789)")]
    NotAGuid,
    #[error("must be refresh_token or soap")]
    UnknownAuthMethod,
}

/// Trims a pasted value; `None` for an empty one (the same as clearing the field).
fn clean(raw: &str, max: usize) -> Result<Option<&str>, CredentialError> {
    let value = raw.trim();
    if value.is_empty() {
        return Ok(None);
    }
    if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(CredentialError::InnerWhitespace);
    }
    if value.chars().count() > max {
        return Err(CredentialError::TooLong(max));
    }
    Ok(Some(value))
}

/// The Application ID (OAuth client id). Not secret: the settings screen shows it in full.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "diesel", derive(diesel::AsExpression, diesel::FromSqlRow))]
#[cfg_attr(feature = "diesel", diesel(sql_type = diesel::sql_types::Text))]
pub struct ApplicationId(String);

impl ApplicationId {
    pub const MAX_CHARS: usize = 128;

    pub fn parse(raw: &str) -> Result<Option<Self>, CredentialError> {
        Ok(clean(raw, Self::MAX_CHARS)?.map(|v| ApplicationId(v.to_string())))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

macro_rules! secret_value {
    ($(#[$doc:meta])* $name:ident, $max:expr) => {
        $(#[$doc])*
        #[derive(Clone)]
        pub struct $name(SecretString);

        impl $name {
            pub const MAX_CHARS: usize = $max;

            pub fn parse(raw: &str) -> Result<Option<Self>, CredentialError> {
                Ok(clean(raw, Self::MAX_CHARS)?.map(|v| $name(SecretString::from(v.to_string()))))
            }

            pub fn from_secret(secret: SecretString) -> Self {
                $name(secret)
            }

            pub fn secret(&self) -> &SecretString {
                &self.0
            }

            /// The last four characters, shown so an admin can tell which value is stored;
            /// `None` for values shorter than 12, where four would give away too much.
            pub fn last4(&self) -> Option<String> {
                last4(&self.0)
            }
        }

        impl From<$name> for SecretString {
            fn from(value: $name) -> SecretString {
                value.0
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(concat!(stringify!($name), "([REDACTED])"))
            }
        }
    };
}

secret_value!(
    /// The Shared Secret (OAuth client secret).
    SharedSecret,
    256
);
secret_value!(
    /// The Refresh Token from "Request Tokens"; reusable, shown once in the Developer Console.
    RefreshToken,
    2048
);

secret_value!(
    /// The SOAP Developer Key (SOAP Credentials flow).
    DeveloperKey,
    256
);
secret_value!(
    /// The SOAP password that goes with the Developer Key.
    SoapPassword,
    256
);

/// The SOAP account GUID (ChannelAdvisor's `account_id`). Not secret: shown in full.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "diesel", derive(diesel::AsExpression, diesel::FromSqlRow))]
#[cfg_attr(feature = "diesel", diesel(sql_type = diesel::sql_types::Text))]
pub struct AccountId(String);

impl AccountId {
    pub fn parse(raw: &str) -> Result<Option<Self>, CredentialError> {
        let Some(value) = clean(raw, 38)? else {
            return Ok(None);
        };
        // Pasted with or without braces; kept in the canonical lowercase hyphenated form.
        let bare = value.trim_start_matches('{').trim_end_matches('}');
        let groups: Vec<&str> = bare.split('-').collect();
        let shape = groups.iter().map(|g| g.len()).collect::<Vec<_>>() == [8, 4, 4, 4, 12];
        if !shape
            || !groups
                .iter()
                .all(|g| g.chars().all(|c| c.is_ascii_hexdigit()))
        {
            return Err(CredentialError::NotAGuid);
        }
        Ok(Some(AccountId(bare.to_ascii_lowercase())))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Which of ChannelAdvisor's ways to obtain access a company uses (contract §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "diesel", derive(diesel::AsExpression, diesel::FromSqlRow))]
#[cfg_attr(feature = "diesel", diesel(sql_type = diesel::sql_types::Text))]
pub enum AuthMethod {
    /// The Developer Console's Refresh Token (pasted, or obtained by Connect).
    #[default]
    RefreshToken,
    /// SOAP Credentials: Developer Key, password and account GUID; no refresh token.
    Soap,
}

impl AuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::RefreshToken => "refresh_token",
            AuthMethod::Soap => "soap",
        }
    }

    pub fn parse(raw: &str) -> Result<Option<Self>, CredentialError> {
        match raw.trim() {
            "" => Ok(None),
            "refresh_token" => Ok(Some(AuthMethod::RefreshToken)),
            "soap" => Ok(Some(AuthMethod::Soap)),
            _ => Err(CredentialError::UnknownAuthMethod),
        }
    }
}

/// The last four characters of a secret, or `None` when it has fewer than 12.
pub fn last4(secret: &SecretString) -> Option<String> {
    let chars: Vec<char> = secret.expose_secret().chars().collect();
    (chars.len() >= 12).then(|| chars[chars.len() - 4..].iter().collect())
}

/// The optional ChannelAdvisor Profile ID the connection must have access to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "diesel", derive(diesel::AsExpression, diesel::FromSqlRow))]
#[cfg_attr(feature = "diesel", diesel(sql_type = diesel::sql_types::BigInt))]
pub struct ProfileId(i64);

impl AsRef<i64> for ProfileId {
    fn as_ref(&self) -> &i64 {
        &self.0
    }
}

impl ProfileId {
    pub fn parse(raw: i64) -> Result<Self, CredentialError> {
        if raw > 0 {
            Ok(ProfileId(raw))
        } else {
            Err(CredentialError::NotPositive)
        }
    }

    pub fn get(self) -> i64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_ids_are_guids() {
        let id = AccountId::parse(" {0A1B2C3D-4E5F-6789-ABCD-EF0123456789} ")
            .unwrap()
            .unwrap();
        assert_eq!(id.as_str(), "0a1b2c3d-4e5f-6789-abcd-ef0123456789");
        for bad in [
            "12345",
            "0a1b2c3d-4e5f-6789-abcd-ef012345678g",
            "0a1b2c3d4e5f6789abcdef0123456789",
        ] {
            assert_eq!(
                AccountId::parse(bad).unwrap_err(),
                CredentialError::NotAGuid,
                "{bad}"
            );
        }
        assert_eq!(AuthMethod::parse("soap").unwrap(), Some(AuthMethod::Soap));
        assert!(AuthMethod::parse("password").is_err());
    }

    #[test]
    fn trims_pasted_values_and_treats_empty_as_absent() {
        assert_eq!(
            ApplicationId::parse("  abc\n").unwrap().unwrap().as_str(),
            "abc"
        );
        assert!(ApplicationId::parse(" \t ").unwrap().is_none());
        let token = RefreshToken::parse("\ttok-1234567890\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(token.secret().expose_secret(), "tok-1234567890");
    }

    #[test]
    fn refuses_inner_whitespace_control_and_length() {
        assert_eq!(
            SharedSecret::parse("ab cd").unwrap_err(),
            CredentialError::InnerWhitespace
        );
        assert_eq!(
            SharedSecret::parse("ab\u{7}cd").unwrap_err(),
            CredentialError::InnerWhitespace
        );
        assert!(ApplicationId::parse(&"a".repeat(128)).is_ok());
        assert_eq!(
            ApplicationId::parse(&"a".repeat(129)).unwrap_err(),
            CredentialError::TooLong(128)
        );
        assert!(
            RefreshToken::parse(&"é".repeat(2048)).is_ok(),
            "limits count characters"
        );
        assert!(
            ProfileId::parse(0).is_err()
                && ProfileId::parse(-3).is_err()
                && ProfileId::parse(1).is_ok()
        );
    }

    #[test]
    fn debug_and_last4_do_not_leak() {
        let s = SharedSecret::parse("supersecretvalue9").unwrap().unwrap();
        assert_eq!(format!("{s:?}"), "SharedSecret([REDACTED])");
        assert_eq!(s.last4().as_deref(), Some("lue9"));
        assert_eq!(SharedSecret::parse("short").unwrap().unwrap().last4(), None);
    }
}

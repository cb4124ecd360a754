//! Column mappings: each value is written as its canonical text (or number) and read back through
//! its own `parse`, so a stored value this build does not accept is an error naming the column's
//! type and the rule, never a silent default such as "missing" or `not_configured`.

use diesel::backend::Backend;
use diesel::deserialize::{self, FromSql};
use diesel::serialize::{self, Output, ToSql};
use diesel::sql_types::{BigInt, Text};

use crate::{AccountId, ApplicationId, AuthMethod, CompanyId, ConnectionState, ProfileId};

/// A stored value that does not parse: the message names what it should have been.
fn unreadable(what: &str, why: impl std::fmt::Display) -> Box<dyn std::error::Error + Send + Sync> {
    format!("stored {what} is not valid: {why}").into()
}

macro_rules! text_column {
    ($ty:ty, $what:literal, |$raw:ident| $parse:expr) => {
        impl<DB: Backend> FromSql<Text, DB> for $ty
        where
            String: FromSql<Text, DB>,
        {
            fn from_sql(bytes: DB::RawValue<'_>) -> deserialize::Result<Self> {
                let $raw = String::from_sql(bytes)?;
                $parse.map_err(|why| unreadable($what, why))
            }
        }

        impl<DB: Backend> ToSql<Text, DB> for $ty
        where
            str: ToSql<Text, DB>,
        {
            fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, DB>) -> serialize::Result {
                self.as_str().to_sql(out)
            }
        }
    };
}

/// A pasted-value type read back: stored values are already trimmed, so an empty one is damage.
fn required<T, E: std::fmt::Display>(parsed: Result<Option<T>, E>) -> Result<T, String> {
    match parsed {
        Ok(Some(value)) => Ok(value),
        Ok(None) => Err("it is empty".to_string()),
        Err(e) => Err(e.to_string()),
    }
}

text_column!(CompanyId, "company id", |raw| CompanyId::parse(&raw));
text_column!(ConnectionState, "connection state", |raw| {
    ConnectionState::parse(&raw)
});
text_column!(AuthMethod, "auth method", |raw| required(
    AuthMethod::parse(&raw)
));
text_column!(ApplicationId, "Application ID", |raw| required(
    ApplicationId::parse(&raw)
));
text_column!(AccountId, "SOAP account id", |raw| required(
    AccountId::parse(&raw)
));

impl<DB: Backend> FromSql<BigInt, DB> for ProfileId
where
    i64: FromSql<BigInt, DB>,
{
    fn from_sql(bytes: DB::RawValue<'_>) -> deserialize::Result<Self> {
        let raw = i64::from_sql(bytes)?;
        ProfileId::parse(raw).map_err(|why| unreadable("Profile ID", why))
    }
}

impl<DB: Backend> ToSql<BigInt, DB> for ProfileId
where
    i64: ToSql<BigInt, DB>,
{
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, DB>) -> serialize::Result {
        self.as_ref().to_sql(out)
    }
}

//! The credentials body of PUT, PATCH and a candidate Test Connection. PUT replaces every field
//! (absent = cleared), PATCH is an RFC 7396 merge patch (absent = unchanged, null = cleared).
//! Pasted strings are trimmed and an empty string means null. The limits declared here for
//! OpenAPI are the domain types' own (`MAX_CHARS`), checked again by their `parse`.

use connector::{
    AccountId, ApplicationId, AuthMethod, CredentialError, DeveloperKey, ProfileId, RefreshToken,
    SharedSecret, SoapPassword,
};
use schema::credentials::{
    Change, CredentialsChange, ACCOUNT_ID, APPLICATION_ID, AUTH_METHOD, DEVELOPER_KEY, PASSWORD,
    PROFILE_ID, REFRESH_TOKEN, SHARED_SECRET,
};
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::http::problem::ApiError;
use crate::http::routes::input::{self, Field, Problems};

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Replace,
    Merge,
}

/// The credentials fields; each optional and nullable (null or "" clears it). Values may carry
/// surrounding white space (it is trimmed) but none inside.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CredentialsInput {
    /// refresh_token (the default) or soap
    #[serde(default)]
    #[schema(value_type = Option<String>, nullable, pattern = "^(|refresh_token|soap)$")]
    auth_method: Field<String>,
    #[serde(default)]
    #[schema(value_type = Option<String>, nullable, pattern = r"^[^\s\x00-\x1f\x7f-\x9f]{0,128}$")]
    application_id: Field<String>,
    /// secret: write-only
    #[serde(default)]
    #[schema(value_type = Option<String>, nullable, pattern = r"^[^\s\x00-\x1f\x7f-\x9f]{0,256}$")]
    shared_secret: Field<String>,
    /// secret: write-only
    #[serde(default)]
    #[schema(value_type = Option<String>, nullable, pattern = r"^[^\s\x00-\x1f\x7f-\x9f]{0,2048}$")]
    refresh_token: Field<String>,
    /// The ChannelAdvisor profile the connection must reach (a number; a pasted string of digits
    /// is accepted too)
    #[serde(default)]
    #[schema(value_type = Option<i64>, nullable, minimum = 1, maximum = 9_000_000_000_000_000_i64)]
    profile_id: Field<Value>,
    /// SOAP Developer Key (secret: write-only)
    #[serde(default)]
    #[schema(value_type = Option<String>, nullable, pattern = r"^[^\s\x00-\x1f\x7f-\x9f]{0,256}$")]
    developer_key: Field<String>,
    /// SOAP password (secret: write-only)
    #[serde(default)]
    #[schema(value_type = Option<String>, nullable, pattern = r"^[^\s\x00-\x1f\x7f-\x9f]{0,256}$")]
    password: Field<String>,
    /// SOAP account GUID, with or without braces
    #[serde(default)]
    #[schema(value_type = Option<String>, nullable,
        pattern = r"^(|\{?[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}\}?)$")]
    account_id: Field<String>,
}

type Parse<T> = fn(&str) -> Result<Option<T>, CredentialError>;

/// One text field into a change: absent keeps (PATCH) or clears (PUT), null and "" clear.
fn text<T>(
    field: Field<String>,
    name: &str,
    mode: Mode,
    parse: Parse<T>,
    problems: &mut Problems,
) -> Change<T> {
    match field {
        Field::Absent if mode == Mode::Merge => Change::Keep,
        Field::Absent | Field::Null => Change::Clear,
        Field::Given(raw) => match parse(&raw) {
            Ok(Some(v)) => Change::Set(v),
            Ok(None) => Change::Clear,
            Err(e) => {
                problems.add(name, e.to_string());
                Change::Keep
            }
        },
        Field::Wrong => {
            problems.add(name, "must be a string or null");
            Change::Keep
        }
    }
}

/// A secret field: from here on only a `SecretString`.
fn secret<T: Into<SecretString>>(
    field: Field<String>,
    name: &str,
    mode: Mode,
    parse: Parse<T>,
    problems: &mut Problems,
) -> Change<SecretString> {
    match text(field, name, mode, parse, problems) {
        Change::Set(v) => Change::Set(v.into()),
        Change::Keep => Change::Keep,
        Change::Clear => Change::Clear,
    }
}

fn profile(field: Field<Value>, mode: Mode, problems: &mut Problems) -> Change<ProfileId> {
    let parsed = match field {
        Field::Absent if mode == Mode::Merge => return Change::Keep,
        Field::Absent | Field::Null => return Change::Clear,
        Field::Given(Value::String(s)) if s.trim().is_empty() => return Change::Clear,
        // A pasted number may arrive as a string.
        Field::Given(Value::String(s)) => s.trim().parse::<i64>().ok(),
        // JSON has one number type: 12.0 is the whole number 12.
        Field::Given(Value::Number(n)) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() <= 9.0e15)
                .map(|f| f as i64)
        }),
        Field::Given(_) | Field::Wrong => None,
    };
    match parsed.map(ProfileId::parse) {
        Some(Ok(p)) => Change::Set(p),
        _ => {
            problems.add(PROFILE_ID, "must be a positive whole number or null");
            Change::Keep
        }
    }
}

impl CredentialsInput {
    /// The typed change this body asks for, or one 422 naming every bad field.
    pub fn into_change(
        self,
        mode: Mode,
        mut problems: Problems,
    ) -> Result<CredentialsChange, ApiError> {
        let p = &mut problems;
        let change = CredentialsChange {
            auth_method: text(self.auth_method, AUTH_METHOD, mode, AuthMethod::parse, p),
            application_id: text(
                self.application_id,
                APPLICATION_ID,
                mode,
                ApplicationId::parse,
                p,
            ),
            account_id: text(self.account_id, ACCOUNT_ID, mode, AccountId::parse, p),
            shared_secret: secret(
                self.shared_secret,
                SHARED_SECRET,
                mode,
                SharedSecret::parse,
                p,
            ),
            refresh_token: secret(
                self.refresh_token,
                REFRESH_TOKEN,
                mode,
                RefreshToken::parse,
                p,
            ),
            developer_key: secret(
                self.developer_key,
                DEVELOPER_KEY,
                mode,
                DeveloperKey::parse,
                p,
            ),
            password: secret(self.password, PASSWORD, mode, SoapPassword::parse, p),
            profile_id: profile(self.profile_id, mode, p),
        };
        problems.finish(change)
    }
}

/// A whole body (`None` when the request had none) into a change.
pub fn parse(body: Option<Value>, mode: Mode) -> Result<CredentialsChange, ApiError> {
    let (input, problems) = input::object::<CredentialsInput>(body)?;
    input.into_change(mode, problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lengths OpenAPI declares are the domain types' own: a limit changed in one place
    /// only would make the document promise what the service refuses (or the reverse).
    #[test]
    fn declared_lengths_are_the_domain_limits() {
        use utoipa::PartialSchema;
        let schema = serde_json::to_value(CredentialsInput::schema()).unwrap();
        for (field, max) in [
            (APPLICATION_ID, ApplicationId::MAX_CHARS),
            (SHARED_SECRET, SharedSecret::MAX_CHARS),
            (REFRESH_TOKEN, RefreshToken::MAX_CHARS),
            (DEVELOPER_KEY, DeveloperKey::MAX_CHARS),
            (PASSWORD, SoapPassword::MAX_CHARS),
        ] {
            let pattern = schema["properties"][field]["pattern"].as_str().unwrap();
            assert!(
                pattern.ends_with(&format!("{{0,{max}}}$")),
                "{field}: {pattern}"
            );
        }
    }

    /// JSON has one number type: a whole number written with `.0` is that number, also where the
    /// default float parser would be one unit off (hence serde_json's `float_roundtrip`).
    #[test]
    fn whole_numbers_written_as_floats_are_profile_ids() {
        for (raw, want) in [("12.0", 12), ("4288506285096170.0", 4_288_506_285_096_170)] {
            let body = serde_json::from_str(&format!(r#"{{"profile_id": {raw}}}"#)).unwrap();
            match parse(Some(body), Mode::Merge).unwrap().profile_id {
                Change::Set(p) => assert_eq!(p.get(), want, "{raw}"),
                _ => panic!("{raw} not taken"),
            }
        }
        let body = serde_json::from_str(r#"{"profile_id": 12.5}"#).unwrap();
        assert!(parse(Some(body), Mode::Merge).is_err());
    }
}

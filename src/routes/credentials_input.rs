//! Parses a credentials body into typed values: PUT replaces every field (absent = cleared),
//! PATCH is an RFC 7396 merge patch (absent = unchanged, null = cleared). Pasted strings are
//! trimmed and an empty string means null. Every bad field is reported, not just the first.

use connector::{
    AccountId, ApplicationId, AuthMethod, DeveloperKey, ProfileId, RefreshToken, SharedSecret,
    SoapPassword,
};
use schema::credentials::{
    Change, CredentialsChange, ACCOUNT_ID, APPLICATION_ID, AUTH_METHOD, DEVELOPER_KEY, PASSWORD,
    PROFILE_ID, REFRESH_TOKEN, SHARED_SECRET,
};
use serde_json::Value;

use crate::problem::ApiError;

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Replace,
    Merge,
}

const FIELDS: [&str; 8] = [
    AUTH_METHOD,
    APPLICATION_ID,
    SHARED_SECRET,
    REFRESH_TOKEN,
    PROFILE_ID,
    DEVELOPER_KEY,
    PASSWORD,
    ACCOUNT_ID,
];

type Errors = Vec<(String, String)>;

fn text<T>(
    obj: &serde_json::Map<String, Value>,
    field: &str,
    mode: Mode,
    parse: impl Fn(&str) -> Result<Option<T>, connector::CredentialError>,
    errors: &mut Errors,
) -> Change<T> {
    match obj.get(field) {
        None if mode == Mode::Merge => Change::Keep,
        None | Some(Value::Null) => Change::Clear,
        Some(Value::String(s)) => match parse(s) {
            Ok(Some(v)) => Change::Set(v),
            Ok(None) => Change::Clear,
            Err(e) => {
                errors.push((field.to_string(), e.to_string()));
                Change::Keep
            }
        },
        Some(_) => {
            errors.push((field.to_string(), "must be a string or null".into()));
            Change::Keep
        }
    }
}

/// A secret field: parsed by its type's rules, kept as a `SecretString` from here on.
fn secret<T: Into<secrecy::SecretString>>(
    obj: &serde_json::Map<String, Value>,
    field: &str,
    mode: Mode,
    parse: impl Fn(&str) -> Result<Option<T>, connector::CredentialError>,
    errors: &mut Errors,
) -> Change<secrecy::SecretString> {
    match text(obj, field, mode, parse, errors) {
        Change::Set(v) => Change::Set(v.into()),
        Change::Keep => Change::Keep,
        Change::Clear => Change::Clear,
    }
}

fn profile(obj: &serde_json::Map<String, Value>, mode: Mode, errors: &mut Errors) -> Change<i64> {
    let parsed = match obj.get(PROFILE_ID) {
        None if mode == Mode::Merge => return Change::Keep,
        None | Some(Value::Null) => return Change::Clear,
        Some(Value::String(s)) if s.trim().is_empty() => return Change::Clear,
        // A pasted number may arrive as a string.
        Some(Value::String(s)) => s.trim().parse::<i64>().ok(),
        Some(Value::Number(n)) => n.as_i64(),
        Some(_) => None,
    };
    match parsed.map(ProfileId::parse) {
        Some(Ok(p)) => Change::Set(p.get()),
        _ => {
            errors.push((
                PROFILE_ID.to_string(),
                "must be a positive whole number or null".into(),
            ));
            Change::Keep
        }
    }
}

pub fn parse(body: Option<Value>, mode: Mode) -> Result<CredentialsChange, ApiError> {
    let Some(Value::Object(obj)) = body else {
        return Err(ApiError::validation(vec![(
            "body".into(),
            "must be a JSON object".into(),
        )]));
    };
    let mut errors: Errors = obj
        .keys()
        .filter(|k| !FIELDS.contains(&k.as_str()))
        .map(|k| {
            (
                k.clone(),
                format!(
                    "unknown field; the accepted fields are {}",
                    FIELDS.join(", ")
                ),
            )
        })
        .collect();
    let app_id = |s: &str| Ok(ApplicationId::parse(s)?.map(|v| v.as_str().to_string()));
    let account = |s: &str| Ok(AccountId::parse(s)?.map(|v| v.as_str().to_string()));
    let change = CredentialsChange {
        auth_method: text(&obj, AUTH_METHOD, mode, AuthMethod::parse, &mut errors),
        application_id: text(&obj, APPLICATION_ID, mode, app_id, &mut errors),
        account_id: text(&obj, ACCOUNT_ID, mode, account, &mut errors),
        shared_secret: secret(&obj, SHARED_SECRET, mode, SharedSecret::parse, &mut errors),
        refresh_token: secret(&obj, REFRESH_TOKEN, mode, RefreshToken::parse, &mut errors),
        developer_key: secret(&obj, DEVELOPER_KEY, mode, DeveloperKey::parse, &mut errors),
        password: secret(&obj, PASSWORD, mode, SoapPassword::parse, &mut errors),
        profile_id: profile(&obj, mode, &mut errors),
    };
    if errors.is_empty() {
        Ok(change)
    } else {
        Err(ApiError::validation(errors))
    }
}

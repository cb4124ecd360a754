//! Request bodies as serde structs. The struct that parses a body is the struct OpenAPI shows, so
//! the document cannot drift from what is accepted. Each field is a [`Field`], which keeps a value
//! of the wrong type instead of failing the whole body: every bad field is then reported in one
//! 422 `validation_failed`, as a person fixing a form expects, not one per round trip.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::Value;
use utoipa::openapi::{RefOr, Schema};
use utoipa::PartialSchema;

use crate::http::problem::ApiError;

/// One member of a JSON object as it was sent. A merge patch needs all three of absent (keep),
/// null (clear) and a value (set); `Wrong` is a value of another JSON type, reported later.
#[derive(Debug, Default)]
pub enum Field<T> {
    #[default]
    Absent,
    Null,
    Given(T),
    Wrong,
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for Field<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(match Value::deserialize(deserializer)? {
            Value::Null => Field::Null,
            value => serde_json::from_value(value).map_or(Field::Wrong, Field::Given),
        })
    }
}

/// The field errors of one body, collected across all its fields.
#[derive(Default)]
pub struct Problems(Vec<(String, String)>);

impl Problems {
    pub fn add(&mut self, field: &str, message: impl Into<String>) {
        self.0.push((field.to_string(), message.into()));
    }

    pub fn has(&self, field: &str) -> bool {
        self.0.iter().any(|(f, _)| f == field)
    }

    /// `value` when nothing was wrong, else the one 422 naming every bad field.
    pub fn finish<T>(self, value: T) -> Result<T, ApiError> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(ApiError::validation(self.0))
        }
    }
}

/// The member names a body struct declares, read from its own OpenAPI schema.
fn declared_fields<T: PartialSchema>() -> Vec<String> {
    match T::schema() {
        RefOr::T(Schema::Object(object)) => object.properties.keys().cloned().collect(),
        _ => Vec::new(),
    }
}

/// Parses a JSON object body into `T`. Unknown members are refused with the accepted ones listed
/// (a typo in a field name must not be silently ignored); they come back as the first problems,
/// for the caller to add the rest of the body's to.
pub fn object<T: DeserializeOwned + PartialSchema>(
    body: Option<Value>,
) -> Result<(T, Problems), ApiError> {
    let Some(Value::Object(mut members)) = body else {
        return Err(ApiError::validation(vec![(
            "body".into(),
            "must be a JSON object".into(),
        )]));
    };
    let accepted = declared_fields::<T>();
    let unknown: Vec<String> = members
        .keys()
        .filter(|k| !accepted.contains(k))
        .cloned()
        .collect();
    let mut problems = Problems::default();
    for name in unknown {
        members.remove(&name);
        let message = format!(
            "unknown field; the accepted fields are {}",
            accepted.join(", ")
        );
        problems.add(&name, message);
    }
    // Every member is a `Field`, which accepts any JSON value: what is left to fail is a
    // required member that is missing, which serde names.
    let parsed = serde_json::from_value(Value::Object(members)).map_err(|e| {
        let message = e.to_string();
        let field = message
            .strip_prefix("missing field `")
            .and_then(|rest| rest.split('`').next())
            .unwrap_or("body")
            .to_string();
        problems.add(&field, "is required");
        ApiError::validation(std::mem::take(&mut problems.0))
    })?;
    Ok((parsed, problems))
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use utoipa::ToSchema;

    use super::*;

    #[derive(Debug, Deserialize, ToSchema)]
    #[serde(deny_unknown_fields)]
    struct Sample {
        #[serde(default)]
        #[schema(value_type = Option<String>)]
        name: Field<String>,
        #[serde(default)]
        #[schema(value_type = Option<i64>)]
        count: Field<i64>,
    }

    fn parse(raw: &str) -> Result<Sample, ApiError> {
        let (sample, problems) = object(Some(serde_json::from_str(raw).unwrap()))?;
        problems.finish(sample)
    }

    #[test]
    fn absent_null_given_and_wrong_are_told_apart() {
        let s = parse(r#"{"name": null, "count": "x"}"#).unwrap();
        assert!(matches!(s.name, Field::Null));
        assert!(matches!(s.count, Field::Wrong));
        let s = parse(r#"{"count": 3}"#).unwrap();
        assert!(matches!(s.name, Field::Absent));
        assert!(matches!(s.count, Field::Given(3)));
    }

    #[test]
    fn every_unknown_member_is_named() {
        let e = parse(r#"{"nmae": "a", "cuont": 1, "name": "b"}"#).unwrap_err();
        assert_eq!(e.status.as_u16(), 422);
        let text = e.to_string();
        assert!(text.contains("nmae") && text.contains("cuont"), "{text}");
        assert!(parse("[]").is_err());
    }
}

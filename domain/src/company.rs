use std::fmt;

/// A company (ERP tenant) id: 1–64 characters of `A-Z a-z 0-9 _ . -`, starting with a letter or
/// digit. Case-sensitive. Parsing is the only way to get one, so every store call is tenant-safe.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "diesel", derive(diesel::AsExpression, diesel::FromSqlRow))]
#[cfg_attr(feature = "diesel", diesel(sql_type = diesel::sql_types::Text))]
pub struct CompanyId(String);

impl CompanyId {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let first_ok = raw
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric());
        let all_ok = raw
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if raw.is_empty() || raw.len() > 64 || !first_ok || !all_ok {
            return Err(
                "a company id is 1-64 characters of A-Z a-z 0-9 _ . - starting with a letter or digit"
                    .to_string(),
            );
        }
        Ok(CompanyId(raw.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CompanyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::CompanyId;

    #[test]
    fn accepts_and_rejects() {
        for ok in ["acme", "A", "9x", "a.b-c_d", &"a".repeat(64)] {
            assert!(CompanyId::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", ".a", "a b", "a/b", "ä", &"a".repeat(65)] {
            assert!(CompanyId::parse(bad).is_err(), "{bad}");
        }
    }
}

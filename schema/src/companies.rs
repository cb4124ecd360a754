//! The company list of a fleet (contract §3): a page at a time by the primary key (keyset paging:
//! `company > after ORDER BY company LIMIT n`), narrowed by state (the `(state, company)` index) or
//! by part of the id, and the number of companies in each state by `GROUP BY`. Nothing here reads
//! every row into memory.

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::dsl::count_star;
use diesel::prelude::*;
use diesel::sql_types::Text;

use crate::credentials::to_utc;
use crate::error::StoreError;
use crate::pool::AnyConnection;
use crate::schema::{connection_counts, credentials};
use domain::{CompanyId, ConnectionState};

type AnyBackend = <AnyConnection as diesel::Connection>::Backend;

diesel::define_sql_function!(fn lower(x: Text) -> Text);

/// A company's state as the company list shows it.
#[derive(Debug, Clone)]
pub struct CompanyState {
    pub company: String,
    pub state: ConnectionState,
    /// `None` for a company the caller names that has no credentials.
    pub since: Option<DateTime<Utc>>,
}

/// Which companies a page holds.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only this state.
    pub state: Option<ConnectionState>,
    /// Only ids holding this text, ignoring case.
    pub text: Option<String>,
}

impl Filter {
    fn matches(&self, c: &CompanyState) -> bool {
        self.state.is_none_or(|s| s == c.state)
            && self
                .text
                .as_ref()
                .is_none_or(|t| c.company.to_lowercase().contains(&t.to_lowercase()))
    }
}

#[derive(Debug, Clone, Default)]
pub struct Page {
    pub companies: Vec<CompanyState>,
    /// The id to pass as `after` for the next page; `None` on the last one.
    pub next: Option<String>,
}

/// Companies in each state, in `ConnectionState::ALL` order.
pub type Counts = [(ConnectionState, i64); 5];

/// Which companies the caller sees: every one that has credentials, or those its token names
/// (each of them, those without credentials as `not_configured`).
#[derive(Debug, Clone, Copy)]
pub enum Visible<'a> {
    All,
    Named(&'a [CompanyId]),
}

/// One page of the companies the caller sees, after `after`, at most `limit`.
pub fn page(
    conn: &mut AnyConnection,
    visible: Visible,
    filter: &Filter,
    after: Option<&str>,
    limit: i64,
) -> Result<Page, StoreError> {
    let rows = match visible {
        Visible::All => {
            let mut query = filtered(filter)
                .select((
                    credentials::company,
                    credentials::state,
                    credentials::state_since,
                ))
                .order(credentials::company.asc())
                .limit(limit + 1);
            if let Some(after) = after {
                query = query.filter(credentials::company.gt(after.to_string()));
            }
            let rows: Vec<(String, ConnectionState, NaiveDateTime)> = query.load(conn)?;
            rows.into_iter()
                .map(|(company, state, since)| CompanyState {
                    company,
                    state,
                    since: Some(to_utc(since)),
                })
                .collect()
        }
        // A token names at most as many companies as fit in its header: these are read by key.
        Visible::Named(ids) => named(conn, ids)?
            .into_iter()
            .filter(|c| filter.matches(c) && after.is_none_or(|a| c.company.as_str() > a))
            .take(limit as usize + 1)
            .collect(),
    };
    Ok(cut(rows, limit))
}

/// How many companies the caller sees in each state (the `state` filter aside).
pub fn counts(
    conn: &mut AnyConnection,
    visible: Visible,
    text: Option<&str>,
) -> Result<Counts, StoreError> {
    let mut counts = ConnectionState::ALL.map(|s| (s, 0));
    let filter = Filter {
        state: None,
        text: text.map(str::to_string),
    };
    let mut add = |state: ConnectionState, n: i64| {
        if let Some(slot) = counts.iter_mut().find(|(s, _)| *s == state) {
            slot.1 += n;
        }
    };
    match visible {
        Visible::All => {
            let by_state = credentials::table.group_by(credentials::state);
            let rows: Vec<(ConnectionState, i64)> = match &filter.text {
                // Kept by triggers in every transaction that changes a state: five rows, not a
                // count of every company.
                None => connection_counts::table
                    .select((connection_counts::state, connection_counts::companies))
                    .load(conn)?,
                Some(text) => by_state
                    .filter(containing(text))
                    .select((credentials::state, count_star()))
                    .load(conn)?,
            };
            for (state, n) in rows {
                add(state, n);
            }
        }
        Visible::Named(ids) => {
            for c in named(conn, ids)?.iter().filter(|c| filter.matches(c)) {
                add(c.state, 1);
            }
        }
    }
    Ok(counts)
}

/// The rows a filter lets through, as a query to page or count.
fn filtered(filter: &Filter) -> credentials::BoxedQuery<'static, AnyBackend> {
    let mut query = credentials::table.into_boxed();
    if let Some(state) = filter.state {
        query = query.filter(credentials::state.eq(state.as_str()));
    }
    if let Some(text) = &filter.text {
        query = query.filter(containing(text));
    }
    query
}

/// Company ids holding `text`, ignoring case (`lower` and `LIKE … ESCAPE` on both backends).
fn containing(
    text: &str,
) -> diesel::dsl::Escape<diesel::dsl::Like<lower<credentials::company>, String>> {
    lower(credentials::company)
        .like(format!("%{}%", escape_like(&text.to_lowercase())))
        .escape('\\')
}

/// `text` matched literally inside a LIKE pattern.
fn escape_like(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The named companies, by id, each with its stored state or `not_configured`.
fn named(conn: &mut AnyConnection, ids: &[CompanyId]) -> Result<Vec<CompanyState>, StoreError> {
    let keys: Vec<&str> = ids.iter().map(|c| c.as_str()).collect();
    let stored: Vec<(String, ConnectionState, NaiveDateTime)> = credentials::table
        .filter(credentials::company.eq_any(&keys))
        .select((
            credentials::company,
            credentials::state,
            credentials::state_since,
        ))
        .load(conn)?;
    let mut all: Vec<CompanyState> = stored
        .into_iter()
        .map(|(company, state, since)| CompanyState {
            company,
            state,
            since: Some(to_utc(since)),
        })
        .collect();
    for id in keys {
        if !all.iter().any(|c| c.company == id) {
            all.push(CompanyState {
                company: id.to_string(),
                state: ConnectionState::NotConfigured,
                since: None,
            });
        }
    }
    all.sort_by(|a, b| a.company.cmp(&b.company));
    all.dedup_by(|a, b| a.company == b.company);
    Ok(all)
}

/// The first `limit` rows, and the cursor to the next page when one more row was read.
fn cut(mut rows: Vec<CompanyState>, limit: i64) -> Page {
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next = more
        .then(|| rows.last().map(|c| c.company.clone()))
        .flatten();
    Page {
        companies: rows,
        next,
    }
}

#[cfg(test)]
mod tests {
    use super::escape_like;

    #[test]
    fn like_wildcards_in_the_text_match_themselves() {
        assert_eq!(escape_like("a_b%c\\d"), "a\\_b\\%c\\\\d");
        assert_eq!(escape_like("acme"), "acme");
    }
}

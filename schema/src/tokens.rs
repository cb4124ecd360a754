//! The access-token cache for connector jobs, and the lease that makes one instance at a time
//! refresh a company's token. The lease is taken and released in short transactions; nobody holds
//! a database connection while ChannelAdvisor is being called.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Duration, Utc};
use connector::TestError;
use diesel::prelude::*;
use secrecy::SecretString;

use crate::connection::{store_token, ObtainedToken, StateChange, ACCESS_TOKEN};
use crate::credentials::{
    load_row_for_update, load_rows_for_update, now, open_row, to_utc, ConnectionState, Credentials,
    CredentialsRow,
};
use crate::error::StoreError;
use crate::pool::{on_backend, write_tx, AnyConnection};
use crate::schema::{access_tokens, credentials};
use crate::seal::KeyRing;
use domain::CompanyId;

#[derive(Debug, Clone)]
pub struct CachedToken {
    pub access_token: SecretString,
    pub expires_at: DateTime<Utc>,
}

/// The cached token of the company's current credentials, whatever its remaining life.
pub fn cached(
    conn: &mut AnyConnection,
    keys: &KeyRing,
    company: &CompanyId,
) -> Result<Option<CachedToken>, StoreError> {
    Ok(cached_many(conn, keys, &[company.as_str()])?.remove(company.as_str()))
}

/// What a caller should do next.
#[derive(Debug)]
pub enum Begin {
    /// A token with enough life is cached (perhaps just obtained by another instance).
    Fresh(CachedToken),
    /// No credentials, or not all three values.
    NotReady {
        state: ConnectionState,
        missing: Vec<&'static str>,
    },
    /// The caller holds the lease: it must call upstream and then `finish_*`.
    Owner { credentials: Credentials },
    /// Another instance is refreshing; ask again shortly.
    Busy,
    /// A refresh failed: after the caller started waiting, or permanently and recently for
    /// these very credentials. The remembered error is the answer.
    Failed { error: TestError },
}

pub struct BeginRequest {
    pub company: CompanyId,
    /// The least remaining life a cached token must have.
    pub need: Duration,
    pub owner: String,
    /// How long the lease lasts if its owner never comes back (crash): beyond the upstream deadline.
    pub lease: Duration,
    /// Errors recorded at or after this instant are answers for this caller.
    pub waiting_since: DateTime<Utc>,
    /// A permanent rejection of the same credentials is repeated without asking upstream for this long.
    pub remember_permanent: Duration,
}

impl BeginRequest {
    /// Whether a cached token has, at `at`, the life this caller needs.
    fn will_do(&self, token: &CachedToken, at: DateTime<Utc>) -> bool {
        token.expires_at - at > self.need
    }
}

pub fn begin_refresh(
    conn: &mut AnyConnection,
    keys: &KeyRing,
    req: &BeginRequest,
) -> Result<Begin, StoreError> {
    let mut begins = begin_refresh_many(conn, keys, &[req])?;
    begins
        .pop()
        .ok_or_else(|| StoreError::Worker("no answer for the lease request".into()))
}

/// `begin_refresh` for several companies in one transaction of a few statements, whatever their
/// number: on PostgreSQL each statement crosses the network, and a burst's hundred leases taken
/// one transaction each waited for one another on the pool. The rows are locked in company order
/// (PostgreSQL), so two instances locking overlapping sets cannot deadlock; the cached tokens are
/// read after the locks, so a token another instance stored meanwhile is found. A company asked
/// for twice in one call is answered `Busy` the second time.
pub fn begin_refresh_many(
    conn: &mut AnyConnection,
    keys: &KeyRing,
    reqs: &[&BeginRequest],
) -> Result<Vec<Begin>, StoreError> {
    write_tx(conn, |conn| {
        let companies: Vec<&str> = reqs.iter().map(|r| r.company.as_str()).collect();
        let mut rows: HashMap<String, CredentialsRow> = load_rows_for_update(conn, &companies)?
            .into_iter()
            .map(|row| (row.company.to_string(), row))
            .collect();
        let mut tokens = cached_many(conn, keys, &companies)?;
        let at = now();
        let mut leases: BTreeMap<(&str, DateTime<Utc>), Vec<&str>> = BTreeMap::new();
        let mut begins = Vec::with_capacity(reqs.len());
        let mut answered = HashSet::new();
        for req in reqs {
            let company = req.company.as_str();
            if !answered.insert(company) {
                begins.push(Begin::Busy);
                continue;
            }
            let Some(row) = rows.remove(company) else {
                begins.push(Begin::NotReady {
                    state: ConnectionState::NotConfigured,
                    missing: vec!["application_id", "shared_secret", "refresh_token"],
                });
                continue;
            };
            let begin = decide(keys, req, row, tokens.remove(company), at)?;
            if matches!(begin, Begin::Owner { .. }) {
                leases
                    .entry((req.owner.as_str(), at + req.lease))
                    .or_default()
                    .push(company);
            }
            begins.push(begin);
        }
        // One statement per owner and lease end: in practice one for the whole call.
        for ((owner, until), companies) in leases {
            let lease = (
                credentials::token_lease_until.eq(Some(until.naive_utc())),
                credentials::token_lease_owner.eq(Some(owner)),
            );
            match companies.as_slice() {
                [one] => on_backend!(conn, |c| diesel::update(credentials::table.find(*one))
                    .set(lease)
                    .execute(c))?,
                many => on_backend!(conn, |c| diesel::update(
                    credentials::table.filter(credentials::company.eq_any(many))
                )
                .set(lease)
                .execute(c))?,
            };
        }
        Ok(begins)
    })
}

/// `begin_refresh_many` after a plain read: the companies whose cached token will do are answered
/// from it, without a write transaction. Every local commit makes this process forget what it
/// remembered (`memo`), so a lease transaction for a token that was there all along cost the
/// next callers their memory: under load, ten times the transactions and a third of the
/// cached-token throughput on PostgreSQL.
pub fn begin_refresh_batch(
    conn: &mut AnyConnection,
    keys: &KeyRing,
    reqs: &[BeginRequest],
) -> Result<Vec<Begin>, StoreError> {
    let companies: Vec<&str> = reqs.iter().map(|r| r.company.as_str()).collect();
    let tokens = cached_many(conn, keys, &companies)?;
    let at = now();
    let mut begins: Vec<Option<Begin>> = reqs
        .iter()
        .map(|req| {
            tokens
                .get(req.company.as_str())
                .filter(|token| req.will_do(token, at))
                .map(|token| Begin::Fresh(token.clone()))
        })
        .collect();
    let rest: Vec<&BeginRequest> = reqs
        .iter()
        .zip(&begins)
        .filter(|(_, begin)| begin.is_none())
        .map(|(req, _)| req)
        .collect();
    if !rest.is_empty() {
        let mut leased = begin_refresh_many(conn, keys, &rest)?.into_iter();
        for begin in begins.iter_mut().filter(|b| b.is_none()) {
            *begin = leased.next();
        }
    }
    begins
        .into_iter()
        .map(|b| b.ok_or_else(|| StoreError::Worker("no answer for a lease request".into())))
        .collect()
}

/// What one company's caller should do, from its locked row and cached token.
fn decide(
    keys: &KeyRing,
    req: &BeginRequest,
    row: CredentialsRow,
    token: Option<CachedToken>,
    at: DateTime<Utc>,
) -> Result<Begin, StoreError> {
    if let Some(token) = token.filter(|t| req.will_do(t, at)) {
        return Ok(Begin::Fresh(token));
    }
    if let (Some(error), Some(error_at)) = (&row.token_error, row.token_error_at.map(to_utc)) {
        let same_values = row.token_error_version == Some(row.version);
        let permanent_recently =
            row.state == ConnectionState::Failed && at - error_at < req.remember_permanent;
        if same_values && (error_at >= req.waiting_since || permanent_recently) {
            // Written by `finish_err` from a `TestError`; one that does not read is an error.
            let error = serde_json::from_str(error).map_err(|e| {
                StoreError::Worker(format!(
                    "company '{}' has an unreadable remembered token error: {e}",
                    row.company
                ))
            })?;
            return Ok(Begin::Failed { error });
        }
    }
    let lease_held = row
        .token_lease_until
        .map(to_utc)
        .is_some_and(|until| until > at)
        && row.token_lease_owner.as_deref() != Some(req.owner.as_str());
    if lease_held {
        return Ok(Begin::Busy);
    }
    let credentials = open_row(keys, row)?;
    if !credentials.is_complete() {
        return Ok(Begin::NotReady {
            state: credentials.state,
            missing: credentials.missing(),
        });
    }
    Ok(Begin::Owner { credentials })
}

/// The cached tokens of the companies' current credentials, by company.
fn cached_many(
    conn: &mut AnyConnection,
    keys: &KeyRing,
    companies: &[&str],
) -> Result<HashMap<String, CachedToken>, StoreError> {
    let query = access_tokens::table
        .inner_join(credentials::table.on(credentials::company.eq(access_tokens::company)))
        .filter(access_tokens::credentials_version.eq(credentials::version))
        .select((
            access_tokens::company,
            access_tokens::key_id,
            access_tokens::token,
            access_tokens::expires_at,
        ));
    let rows: Vec<(String, String, Vec<u8>, chrono::NaiveDateTime)> = match companies {
        [one] => on_backend!(conn, |c| query
            .filter(access_tokens::company.eq(*one))
            .load(c))?,
        many => on_backend!(conn, |c| query
            .filter(access_tokens::company.eq_any(many))
            .load(c))?,
    };
    rows.into_iter()
        .map(|(company, key_id, bytes, expires_at)| {
            let token = CachedToken {
                access_token: keys.open(&company, ACCESS_TOKEN, &key_id, &bytes)?,
                expires_at: to_utc(expires_at),
            };
            Ok((company, token))
        })
        .collect()
}

fn release(conn: &mut AnyConnection, company: &str) -> Result<(), StoreError> {
    diesel::update(credentials::table.find(company))
        .set((
            credentials::token_lease_until.eq(None::<chrono::NaiveDateTime>),
            credentials::token_lease_owner.eq(None::<String>),
        ))
        .execute(conn)?;
    Ok(())
}

/// Stores the new token (and a rotated refresh token) unless the credentials changed meanwhile;
/// releases the lease. Returns whether it was stored.
pub fn finish_ok(
    conn: &mut AnyConnection,
    keys: &KeyRing,
    company: &CompanyId,
    version: i64,
    owner: &str,
    token: &ObtainedToken,
) -> Result<bool, StoreError> {
    write_tx(conn, |conn| {
        let Some(row) = load_row_for_update(conn, company.as_str())? else {
            return Ok(false);
        };
        if row.version != version {
            // Saved or deleted while we asked upstream: a token of the old values must not be cached.
            return Ok(false);
        }
        if row.token_lease_owner.as_deref() == Some(owner) {
            release(conn, company.as_str())?;
        }
        if let Some(rotated) = &token.rotated_refresh_token {
            crate::connection::store_rotated_refresh_token(conn, keys, &row, rotated)?;
        }
        store_token(conn, keys, company.as_str(), version, token)?;
        diesel::update(credentials::table.find(company.as_str()))
            .set(credentials::token_error.eq(None::<String>))
            .execute(conn)?;
        Ok(true)
    })
}

/// Records a failed refresh for the waiters and releases the lease; a permanent rejection also
/// sets the state to `failed`. Returns the state change, if any.
pub fn finish_err(
    conn: &mut AnyConnection,
    company: &CompanyId,
    version: i64,
    owner: &str,
    error: &TestError,
) -> Result<Option<StateChange>, StoreError> {
    let permanent = error.code.is_permanent();
    let error_json = serde_json::to_string(error).map_err(|e| StoreError::Worker(e.to_string()))?;
    let error_json = error_json.as_str();
    write_tx(conn, |conn| {
        let Some(row) = load_row_for_update(conn, company.as_str())? else {
            return Ok(None);
        };
        if row.version != version {
            return Ok(None);
        }
        if row.token_lease_owner.as_deref() == Some(owner) {
            release(conn, company.as_str())?;
        }
        let at = now().naive_utc();
        let previous = row.state;
        let current = if permanent {
            ConnectionState::Failed
        } else {
            previous
        };
        diesel::update(credentials::table.find(company.as_str()))
            .set((
                credentials::token_error.eq(Some(error_json)),
                credentials::token_error_at.eq(Some(at)),
                credentials::token_error_version.eq(Some(version)),
                credentials::state.eq(current.as_str()),
                credentials::state_since.eq(if current == previous {
                    row.state_since
                } else {
                    at
                }),
            ))
            .execute(conn)?;
        if permanent {
            crate::connection::drop_cached_token(conn, company.as_str())?;
        }
        let error = serde_json::to_value(error).unwrap_or_default();
        let data = serde_json::json!({"company": company.as_str(), "error": error, "permanent": permanent, "state": current.as_str()});
        crate::outbox::emit(
            conn,
            crate::outbox::REFRESH_FAILED,
            Some(company.as_str()),
            data,
            None,
        )?;
        if current != previous {
            crate::outbox::status_changed(conn, company.as_str(), previous, current, error, None)?;
        }
        Ok(Some(StateChange { previous, current }))
    })
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;
    use crate::credentials::{Change, CredentialsChange};
    use crate::Database;

    fn request(company: &str, owner: &str) -> BeginRequest {
        BeginRequest {
            company: CompanyId::parse(company).unwrap(),
            need: Duration::seconds(300),
            owner: owner.to_string(),
            lease: Duration::seconds(20),
            waiting_since: now(),
            remember_permanent: Duration::seconds(60),
        }
    }

    fn save(conn: &mut AnyConnection, keys: &KeyRing, company: &str, complete: bool) {
        let secret = |v: &str| Change::Set(SecretString::from(v.to_string()));
        let change = CredentialsChange {
            application_id: Change::Set(domain::ApplicationId::parse("app-1").unwrap().unwrap()),
            shared_secret: if complete {
                secret("secret-value-1")
            } else {
                Change::Keep
            },
            refresh_token: if complete {
                secret("refresh-value-1")
            } else {
                Change::Keep
            },
            profile_id: Change::Keep,
            ..Default::default()
        };
        let id = CompanyId::parse(company).unwrap();
        crate::credentials::save(conn, keys, &id, &change, None, "test").unwrap();
    }

    fn sqlite_database(dir: &tempfile::TempDir) -> Database {
        crate::pool::test_sqlite(dir.path())
    }

    /// A new PostgreSQL database on the server of TEST_DATABASE_URL; `None` when it is not set.
    fn postgres_database() -> Option<Database> {
        let admin = std::env::var("TEST_DATABASE_URL")
            .ok()
            .filter(|u| !u.is_empty())?;
        let name = format!("t_{}", uuid::Uuid::new_v4().simple());
        let mut conn = diesel::PgConnection::establish(&admin).unwrap();
        diesel::sql_query(format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .unwrap();
        // The same server and options, the new database's name as the path.
        let (base, options) = admin.split_once('?').unwrap_or((&admin, ""));
        let server = &base[..base.rfind('/').unwrap()];
        let db = Database::connect(&format!("{server}/{name}?{options}"), 2).unwrap();
        db.migrate().unwrap();
        Some(db)
    }

    fn describe(begins: &[Begin]) -> Vec<String> {
        begins
            .iter()
            .map(|b| match b {
                Begin::Fresh(t) => format!("fresh {}", t.access_token.expose_secret()),
                Begin::Owner { credentials } => format!("owner {}", credentials.company),
                Begin::Busy => "busy".into(),
                Begin::NotReady { state, .. } => format!("not ready {}", state.as_str()),
                Begin::Failed { .. } => "failed".into(),
            })
            .collect()
    }

    /// One batch answers each company as `begin_refresh` alone would and leases only the
    /// companies it hands to this owner.
    fn a_batch_answers_each_company(db: &Database, keys: &KeyRing) {
        let mut conn = db.get().unwrap();
        for (company, complete) in [
            ("fresh", true),
            ("owned", true),
            ("busy", true),
            ("half", false),
        ] {
            save(&mut conn, keys, company, complete);
        }
        // `fresh` gets a cached token; another instance holds `busy`'s lease.
        let Begin::Owner { credentials } =
            begin_refresh(&mut conn, keys, &request("fresh", "me")).unwrap()
        else {
            panic!("fresh: expected the lease")
        };
        let token = ObtainedToken {
            access_token: SecretString::from("token-of-fresh".to_string()),
            expires_at: now() + Duration::hours(1),
            rotated_refresh_token: None,
        };
        let id = CompanyId::parse("fresh").unwrap();
        assert!(finish_ok(&mut conn, keys, &id, credentials.version, "me", &token).unwrap());
        assert!(matches!(
            begin_refresh(&mut conn, keys, &request("busy", "other")).unwrap(),
            Begin::Owner { .. }
        ));

        let reqs: Vec<_> = ["fresh", "owned", "busy", "half", "absent", "owned"]
            .into_iter()
            .map(|c| request(c, "me"))
            .collect();
        let expected = [
            "fresh token-of-fresh",
            "owner owned",
            "busy",
            "not ready incomplete",
            "not ready not_configured",
            "busy",
        ];
        // The lease step alone (no plain read before it) and the batch give the same answers.
        let all: Vec<&BeginRequest> = reqs.iter().collect();
        assert_eq!(
            describe(&begin_refresh_many(&mut conn, keys, &all).unwrap()),
            expected
        );
        assert_eq!(
            describe(&begin_refresh_batch(&mut conn, keys, &reqs).unwrap()),
            expected
        );
        // `owned` is leased to "me" now: another instance finds it busy.
        assert!(matches!(
            begin_refresh(&mut conn, keys, &request("owned", "other")).unwrap(),
            Begin::Busy
        ));
        // `half` and `fresh` were not left leased to "me": another instance is answered as if
        // "me" had never asked (a caller that needs more life than `fresh`'s token has leases it).
        assert!(matches!(
            begin_refresh(&mut conn, keys, &request("half", "other")).unwrap(),
            Begin::NotReady { .. }
        ));
        let mut longer = request("fresh", "other");
        longer.need = Duration::hours(2);
        assert!(matches!(
            begin_refresh(&mut conn, keys, &longer).unwrap(),
            Begin::Owner { .. }
        ));
    }

    fn test_keys() -> KeyRing {
        KeyRing::parse(&SecretString::from(format!("k1:{}", "A".repeat(43) + "="))).unwrap()
    }

    #[test]
    fn a_batch_answers_each_company_and_leases_only_its_owners_on_postgres() {
        match postgres_database() {
            Some(db) => a_batch_answers_each_company(&db, &test_keys()),
            // In CI a skip would read as a pass: there it fails instead.
            None if std::env::var("CI").is_ok_and(|v| v == "true")
                || std::env::var("REQUIRE_POSTGRES").is_ok_and(|v| v == "1") =>
            {
                panic!("this test needs PostgreSQL and the run requires it: set TEST_DATABASE_URL")
            }
            None => {
                use std::io::Write;
                // Straight to stderr: the test harness captures eprintln! of a passing test.
                let _ = writeln!(
                    std::io::stderr(),
                    "1 PostgreSQL test skipped (schema::tokens): set TEST_DATABASE_URL to run it"
                );
            }
        }
    }

    /// On SQLite also: a batch of cached tokens only is no write at all.
    #[test]
    fn a_batch_answers_each_company_and_leases_only_its_owners() {
        let dir = tempfile::TempDir::new().unwrap();
        let db = sqlite_database(&dir);
        let keys = test_keys();
        a_batch_answers_each_company(&db, &keys);
        let mut conn = db.get().unwrap();
        // Only cached tokens asked for: answered by a read, even while another connection holds
        // the write lock (this one gives up on a lock at once).
        diesel::sql_query("PRAGMA busy_timeout = 0")
            .execute(&mut conn)
            .unwrap();
        let mut writer = db.get().unwrap();
        diesel::sql_query("BEGIN IMMEDIATE")
            .execute(&mut writer)
            .unwrap();
        let begins = begin_refresh_batch(&mut conn, &keys, &[request("fresh", "me")]).unwrap();
        assert!(matches!(begins[..], [Begin::Fresh(_)]));
        assert!(begin_refresh_batch(&mut conn, &keys, &[request("owned", "me")]).is_err());
        diesel::sql_query("ROLLBACK").execute(&mut writer).unwrap();
    }
}

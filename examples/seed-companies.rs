//! Seeds N companies with complete credentials sealed under the given key, for benchmarks.
//! Usage: seed-companies DATABASE_URL KEY_SPEC N [APPS]
//! With APPS, company i gets Application ID `bench-app-{i % APPS}` with the Shared Secret and
//! a refresh token of its own (`bench-refresh-{i}`) that `ca-sim --any-app` accepts; without,
//! unique values per company.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test and measuring code: a panic is a failed run

use connector::ApplicationId;
use diesel::Connection;
use schema::credentials::{self, Change, CredentialsChange};
use schema::{CompanyId, Database, KeyRing};
use secrecy::SecretString;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (url, spec, n, apps) = match args.as_slice() {
        [_, url, spec, n] => (url, spec, n, None),
        [_, url, spec, n, apps] => (url, spec, n, Some(apps.parse::<usize>()?)),
        _ => return Err("usage: seed-companies DATABASE_URL KEY_SPEC N [APPS]".into()),
    };
    let keys = KeyRing::parse(&SecretString::from(spec.clone()))?;
    let n: usize = n.parse()?;
    let db = Database::connect(url, 1)?;
    db.migrate()?;
    let mut conn = db.get()?;
    // A thousand companies a transaction: each save also counts the company in its state's row of
    // `connection_counts`, and PostgreSQL walks that row's versions made by the same transaction.
    for batch in (0..n).collect::<Vec<_>>().chunks(1000) {
        conn.transaction(|c| {
            for &i in batch {
                let change = match apps {
                    None => CredentialsChange {
                        application_id: Change::Set(
                            ApplicationId::parse(&format!("app-{i}")).unwrap().unwrap(),
                        ),
                        shared_secret: Change::Set(SecretString::from(format!(
                            "secret-{i:06}-abcdefgh"
                        ))),
                        refresh_token: Change::Set(SecretString::from(format!(
                            "refresh-{i:06}-abcdefgh"
                        ))),
                        profile_id: Change::Keep,
                        ..Default::default()
                    },
                    Some(apps) => CredentialsChange {
                        application_id: Change::Set(
                            ApplicationId::parse(&format!("bench-app-{}", i % apps))
                                .unwrap()
                                .unwrap(),
                        ),
                        shared_secret: Change::Set(SecretString::from(format!(
                            "bench-app-{}-secret",
                            i % apps
                        ))),
                        // Each company is its own ChannelAdvisor account: a refresh token of its own.
                        refresh_token: Change::Set(SecretString::from(format!(
                            "bench-refresh-{i:06}"
                        ))),
                        profile_id: Change::Keep,
                        ..Default::default()
                    },
                };
                let company =
                    CompanyId::parse(&format!("c{i:06}")).map_err(schema::StoreError::Worker)?;
                credentials::save(c, &keys, &company, &change, None, "seed")?;
            }
            Ok::<_, schema::StoreError>(())
        })?;
    }
    Ok(())
}

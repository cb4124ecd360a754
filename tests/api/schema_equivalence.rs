//! The two migration folders must build the same schema: tables, columns, types, nullability.

use std::collections::BTreeMap;

use diesel::prelude::*;
use diesel::sql_types::{Integer, Text};

use crate::helpers::Backend;

/// table -> column -> (type family, nullable)
type Shape = BTreeMap<String, BTreeMap<String, (String, bool)>>;

fn family(declared: &str) -> String {
    let t = declared.to_ascii_lowercase();
    match t.as_str() {
        "text" => "text",
        "bigint" => "bigint",
        "blob" | "bytea" => "binary",
        "boolean" => "bool",
        "timestamp" | "timestamp without time zone" => "timestamp",
        other => return format!("unknown:{other}"),
    }
    .to_string()
}

#[derive(QueryableByName)]
struct SqliteColumn {
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Text)]
    r#type: String,
    #[diesel(sql_type = Integer)]
    notnull: i32,
}

#[derive(QueryableByName)]
struct Name {
    #[diesel(sql_type = Text)]
    name: String,
}

#[derive(QueryableByName)]
struct PgColumn {
    #[diesel(sql_type = Text)]
    table_name: String,
    #[diesel(sql_type = Text)]
    column_name: String,
    #[diesel(sql_type = Text)]
    data_type: String,
    #[diesel(sql_type = Text)]
    is_nullable: String,
}

fn sqlite_shape(url: &str) -> Shape {
    let mut conn = SqliteConnection::establish(url.trim_start_matches("sqlite://")).unwrap();
    let tables: Vec<Name> = diesel::sql_query(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name <> '__diesel_schema_migrations'",
    )
    .load(&mut conn)
    .unwrap();
    let mut shape = Shape::new();
    for t in tables {
        let cols: Vec<SqliteColumn> = diesel::sql_query(format!("PRAGMA table_info({})", t.name))
            .load(&mut conn)
            .unwrap();
        let entry = shape.entry(t.name).or_default();
        for c in cols {
            entry.insert(c.name, (family(&c.r#type), c.notnull == 0));
        }
    }
    shape
}

fn postgres_shape(url: &str) -> Shape {
    schema::pool::init_tls();
    let mut conn = PgConnection::establish(url).unwrap();
    let cols: Vec<PgColumn> = diesel::sql_query(
        "SELECT table_name::text, column_name::text, data_type::text, is_nullable::text FROM information_schema.columns \
         WHERE table_schema = 'public' AND table_name <> '__diesel_schema_migrations'",
    )
    .load(&mut conn)
    .unwrap();
    let mut shape = Shape::new();
    for c in cols {
        shape.entry(c.table_name).or_default().insert(
            c.column_name,
            (family(&c.data_type), c.is_nullable == "YES"),
        );
    }
    shape
}

#[tokio::test]
async fn sqlite_and_postgres_migrations_build_the_same_schema() {
    let dir = tempfile::TempDir::new().unwrap();
    let sqlite_url = Backend::Sqlite.fresh_database(dir.path());
    schema::Database::connect(&sqlite_url, 1)
        .unwrap()
        .migrate()
        .unwrap();
    let sqlite = sqlite_shape(&sqlite_url);
    assert!(
        sqlite.contains_key("credentials") && sqlite.contains_key("audit_entries"),
        "{sqlite:?}"
    );
    for (table, cols) in &sqlite {
        for (col, (ty, _)) in cols {
            assert!(
                !ty.starts_with("unknown"),
                "{table}.{col} uses a type both backends do not share: {ty}"
            );
        }
    }
    let Some(pg) = Backend::postgres("sqlite_and_postgres_migrations_build_the_same_schema") else {
        return;
    };
    let pg_url = pg.fresh_database(dir.path());
    schema::Database::connect(&pg_url, 1)
        .unwrap()
        .migrate()
        .unwrap();
    let postgres = postgres_shape(&pg_url);
    assert_eq!(
        sqlite, postgres,
        "migrations/sqlite and migrations/postgres drifted apart"
    );
}

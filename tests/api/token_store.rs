//! Contract §6's storage promises: a refresh token ChannelAdvisor rotated is stored in the same
//! transaction as the refresh's outcome (both or neither), and `min_ttl` up to the 3,300 s an
//! hour's token can meet is accepted.

use diesel::RunQueryDsl;
use serde_json::json;

use crate::connection::{app_against, sim, APP, SECRET};
use crate::helpers::{Backend, TestApp};
use crate::on_both_backends;
use crate::tokens::issue;

on_both_backends!(
    a_rotated_refresh_token_is_kept_only_with_its_outcome,
    min_ttl_up_to_3300_is_accepted,
);

/// Makes every write of an access token fail, as a full disk or a lost connection would at
/// that moment.
fn refuse_access_token_writes(app: &TestApp, backend: &Backend) {
    let statements: &[&str] = match backend {
        Backend::Sqlite => &[
            "CREATE TRIGGER refuse_tokens BEFORE INSERT ON access_tokens \
             BEGIN SELECT RAISE(ABORT, 'refused by the test'); END",
        ],
        Backend::Postgres(_) => &[
            "CREATE FUNCTION refuse_tokens() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN RAISE EXCEPTION 'refused by the test'; END $$",
            "CREATE TRIGGER refuse_tokens BEFORE INSERT ON access_tokens \
             FOR EACH ROW EXECUTE FUNCTION refuse_tokens()",
        ],
    };
    let db = app.database();
    let mut conn = db.get().unwrap();
    for sql in statements {
        diesel::sql_query(*sql).execute(&mut *conn).unwrap();
    }
}

#[derive(diesel::QueryableByName, PartialEq, Debug)]
struct Stored {
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Binary>)]
    refresh_token: Option<Vec<u8>>,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    audit_entries: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    access_tokens: i64,
}

fn stored(app: &TestApp) -> Stored {
    let db = app.database();
    let mut conn = db.get().unwrap();
    diesel::sql_query(
        "SELECT refresh_token, \
           (SELECT COUNT(*) FROM audit_entries) AS audit_entries, \
           (SELECT COUNT(*) FROM access_tokens) AS access_tokens \
         FROM credentials WHERE company = 'acme'",
    )
    .get_result(&mut *conn)
    .unwrap()
}

async fn a_rotated_refresh_token_is_kept_only_with_its_outcome(backend: Backend) {
    let sim = sim(0);
    let app = app_against(&backend, &sim.url(), &[]).await;
    let rotating = json!({"application_id": APP, "shared_secret": SECRET, "refresh_token": "sim-fault-rotate"});
    app.put_credentials("acme", &rotating).await;
    let before = stored(&app);
    refuse_access_token_writes(&app, &backend);

    // ChannelAdvisor answers with a token and a rotated refresh token; storing the outcome fails.
    // An unexpected store error: the job is told so, handed no token that was never kept.
    crate::helpers::assert_problem(issue(&app, "acme", "").await, 500, "internal_error").await;
    assert_eq!(sim.token_calls(), 1, "ChannelAdvisor did rotate it");
    assert_eq!(
        stored(&app),
        before,
        "the rotated refresh token (and its audit entry) went with the outcome that failed"
    );

    // The same refresh with nothing refusing: the rotated token and the access token together.
    // (A simulator of its own: the first one remembers that grant as spent.)
    let sim = crate::connection::sim(0);
    let app = app_against(&backend, &sim.url(), &[]).await;
    app.put_credentials("acme", &rotating).await;
    let before = stored(&app);
    assert_eq!(issue(&app, "acme", "").await.status(), 200);
    let after = stored(&app);
    assert_ne!(after.refresh_token, before.refresh_token, "rotated");
    assert_eq!(after.audit_entries, before.audit_entries + 1, "audited");
    assert_eq!(after.access_tokens, 1, "and the access token kept with it");
}

async fn min_ttl_up_to_3300_is_accepted(backend: Backend) {
    let sim = sim(0);
    let app = app_against(&backend, &sim.url(), &[]).await;
    app.put_credentials("acme", &crate::connection::valid())
        .await;
    let res = issue(&app, "acme", "?min_ttl=3300").await;
    assert_eq!(res.status(), 200);
    let body: serde_json::Value = res.json().await.unwrap();
    assert!(body["expires_in"].as_i64().unwrap() > 3300, "{body}");
    let over = issue(&app, "acme", "?min_ttl=3301").await;
    crate::helpers::assert_problem(over, 400, "invalid_query").await;
}

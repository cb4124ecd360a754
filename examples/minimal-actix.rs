//! The baseline of the throughput benchmarks: the smallest useful actix-web handler, a JSON
//! answer, served by the same actix-web version and worker count as ca-connector.
//! Usage: minimal-actix ADDRESS

#![allow(clippy::unwrap_used, clippy::expect_used)] // test and measuring code: a panic is a failed run

use actix_web::{web, App, HttpResponse, HttpServer};

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let address = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:19091".into());
    HttpServer::new(|| {
        App::new().route(
            "/",
            web::get().to(|| async { HttpResponse::Ok().json(serde_json::json!({"ok": true})) }),
        )
    })
    .bind(address)?
    .run()
    .await
}

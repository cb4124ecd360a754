//! What every handler shares: the service's parts, built once by `startup`.

use std::sync::Arc;

use actix_web::web;
use schema::{Database, KeyRing};

use crate::connection_test::TestRunner;
use crate::http::auth::Authenticator;
use crate::service::metrics::Metrics;
use crate::service::settings::Config;
use crate::tokens::read_cache::ReadCache;
use crate::tokens::TokenBroker;
use connector::ChannelAdvisorClient;

/// What every handler shares.
pub struct AppState {
    pub db: Database,
    pub keys: Arc<KeyRing>,
    pub auth: Authenticator,
    pub metrics: Arc<Metrics>,
    pub upstream: ChannelAdvisorClient,
    pub tests: Arc<TestRunner>,
    /// Connect to ChannelAdvisor (§10), with the handles it uses.
    pub connect: crate::connect::flow::ConnectFlow,
    pub tokens: Arc<TokenBroker>,
    /// Connection status bodies read moments ago (see `read_cache`).
    pub statuses: ReadCache<web::Bytes, crate::http::problem::ApiError>,
    /// Follows the event log for this instance's live streams (§11).
    pub events: crate::service::live_events::EventHub,
    pub config: Config,
}

impl AppState {
    /// Runs Test Connection with this instance's database, keys and upstream client.
    pub async fn test_connection(
        &self,
        request: crate::connection_test::TestRequest,
    ) -> Result<crate::connection_test::Tested, crate::fault::Fault> {
        self.tests.run(request).await
    }
}

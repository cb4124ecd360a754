//! Prometheus metrics, one registry per running app (so tests that start several apps in one
//! process see their own counts). Labels are route templates, never paths with ids or values.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder,
};

/// Buckets of `token_refresh_seconds`: 10–50 % apart between 50 ms and 1 s, where ChannelAdvisor's
/// token endpoint answers, so a quantile read off them (as `histogram_quantile` does, and the
/// fan-in benchmark) is within a few milliseconds rather than "somewhere in 100–250 ms".
pub const REFRESH_BUCKETS: [f64; 18] = [
    0.01, 0.025, 0.05, 0.075, 0.1, 0.11, 0.125, 0.15, 0.175, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1.0,
    2.5, 15.0,
];

pub struct Metrics {
    registry: Registry,
    pub http_requests: IntCounterVec,
    pub http_duration: HistogramVec,
    /// Access-token requests by outcome: cache_hit, refreshed, failed.
    pub token_requests: IntCounterVec,
    /// Time of one upstream refresh-token grant for a job token.
    pub token_refresh_seconds: Histogram,
    /// Upstream token refreshes by what caused them: job, ahead, test, health_check.
    pub token_refreshes: IntCounterVec,
    /// Scheduled health checks by outcome: connected, failed.
    pub health_checks: IntCounterVec,
    /// How far behind its schedule the oldest due health check is, in seconds.
    pub health_check_lag: prometheus::Gauge,
    /// Every company by state, read from the store when `/metrics` is scraped.
    pub connections: prometheus::IntGaugeVec,
    pub webhooks: web_hooks::worker::WorkerMetrics,
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new_custom(Some("ca_connector".into()), None)?;
        let http_requests = IntCounterVec::new(
            Opts::new(
                "http_requests_total",
                "HTTP requests by route, method and status",
            ),
            &["route", "method", "status"],
        )?;
        let http_duration = HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "HTTP request latency by route, method and status",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0, 30.0,
            ]),
            &["route", "method", "status"],
        )?;
        let token_requests = IntCounterVec::new(
            Opts::new(
                "token_requests_total",
                "Access-token requests by outcome (cache_hit, refreshed, failed)",
            ),
            &["outcome"],
        )?;
        let token_refresh_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "token_refresh_seconds",
                "Latency of one upstream token refresh",
            )
            .buckets(REFRESH_BUCKETS.to_vec()),
        )?;
        let health_checks = IntCounterVec::new(
            Opts::new(
                "health_checks_total",
                "Scheduled health checks by outcome (connected, failed)",
            ),
            &["outcome"],
        )?;
        let token_refreshes = IntCounterVec::new(
            Opts::new(
                "token_refreshes_total",
                "Upstream token refreshes by cause (job, ahead, test, health_check)",
            ),
            &["cause"],
        )?;
        let health_check_lag = prometheus::Gauge::new(
            "health_check_lag_seconds",
            "How far behind its schedule the oldest due health check is, in seconds",
        )?;
        let connections = prometheus::IntGaugeVec::new(
            Opts::new("connections", "Companies by connection state"),
            &["state"],
        )?;
        registry.register(Box::new(token_refreshes.clone()))?;
        registry.register(Box::new(health_check_lag.clone()))?;
        registry.register(Box::new(connections.clone()))?;
        registry.register(Box::new(http_requests.clone()))?;
        registry.register(Box::new(http_duration.clone()))?;
        registry.register(Box::new(token_requests.clone()))?;
        registry.register(Box::new(token_refresh_seconds.clone()))?;
        registry.register(Box::new(health_checks.clone()))?;
        let webhooks = web_hooks::worker::WorkerMetrics {
            deliveries: IntCounterVec::new(
                Opts::new(
                    "webhook_deliveries_total",
                    "Web-hook delivery attempts by result (delivered, retry, failed)",
                ),
                &["result"],
            )?,
            outbox_depth: prometheus::IntGauge::new(
                "webhook_outbox_depth",
                "Web-hook deliveries not yet delivered or failed",
            )?,
            oldest_undelivered_seconds: prometheus::Gauge::new(
                "webhook_oldest_undelivered_seconds",
                "Age of the oldest undelivered web-hook event, in seconds",
            )?,
        };
        registry.register(Box::new(webhooks.deliveries.clone()))?;
        registry.register(Box::new(webhooks.outbox_depth.clone()))?;
        registry.register(Box::new(webhooks.oldest_undelivered_seconds.clone()))?;
        Ok(Metrics {
            registry,
            http_requests,
            http_duration,
            token_requests,
            token_refresh_seconds,
            token_refreshes,
            health_checks,
            health_check_lag,
            connections,
            webhooks,
        })
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    pub fn render(&self) -> String {
        let mut out = Vec::new();
        // Encoding our own well-formed families into a Vec cannot fail.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

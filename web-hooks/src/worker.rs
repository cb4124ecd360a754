//! The delivery worker: claims due deliveries from the outbox (with a lease, so instances never
//! deliver the same attempt at once), POSTs them signed, and records every attempt. A 2xx answer
//! within 10 s delivers; anything else is retried on the schedule, then recorded as failed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus::{Gauge, IntCounterVec, IntGauge};
use schema::outbox::{AttemptResult, Claimed};
use schema::{Database, KeyRing};
use tokio::sync::{mpsc, Notify, OwnedSemaphorePermit, Semaphore};

use crate::signing::sign;
use crate::target::TargetPolicy;

/// The deadline of one attempt.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// A claimed delivery stays with its worker this long past the attempt's deadline; if the worker's
/// instance dies mid-attempt, another (or the restarted one) takes the delivery over after that.
pub const LEASE_MARGIN: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct WorkerMetrics {
    /// Attempts by result: delivered, retry, failed (the last attempt failed).
    pub deliveries: IntCounterVec,
    /// Deliveries not yet delivered or failed.
    pub outbox_depth: IntGauge,
    /// Age in seconds of the oldest undelivered event (0 when none).
    pub oldest_undelivered_seconds: Gauge,
}

#[derive(Clone)]
pub struct WorkerConfig {
    /// Seconds before each attempt: the first counted from the event, each next from the previous attempt.
    pub schedule: Vec<u64>,
    pub policy: TargetPolicy,
    /// Host names pinned to addresses (`--webhook-resolve`).
    pub pinned: crate::target::Pinned,
    /// This instance, for the leases.
    pub owner: String,
    /// Deliveries in flight at once (each on its own task).
    pub max_in_flight: usize,
    /// How often to look for due deliveries when not woken.
    pub poll: Duration,
}

pub struct Worker {
    db: Database,
    keys: Arc<KeyRing>,
    http: reqwest::Client,
    config: WorkerConfig,
    metrics: WorkerMetrics,
    /// Wakes the claim loop when recorded attempts may have made more deliveries due.
    wake: Arc<Notify>,
}

impl Worker {
    pub fn new(
        db: Database,
        keys: Arc<KeyRing>,
        config: WorkerConfig,
        metrics: WorkerMetrics,
    ) -> Result<Self, String> {
        let http =
            crate::target::delivery_client(config.policy, config.pinned.clone(), ATTEMPT_TIMEOUT)?;
        Ok(Worker {
            db,
            keys,
            http,
            config,
            metrics,
            wake: Arc::default(),
        })
    }

    pub fn spawn(self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(Arc::new(self).run())
    }

    /// Claims due deliveries while a slot is free and sends each on its own task: a slow target
    /// holds one slot for its attempt's deadline, never the deliveries of other targets. Finished
    /// attempts go to one recorder, which writes all that have finished in one transaction.
    async fn run(self: Arc<Self>) {
        let (finished, to_record) = mpsc::unbounded_channel();
        tokio::spawn(self.clone().record_finished(to_record));
        let first =
            chrono::Duration::seconds(self.config.schedule.first().copied().unwrap_or(0) as i64);
        let lease = chrono::Duration::from_std(ATTEMPT_TIMEOUT + LEASE_MARGIN)
            .unwrap_or(chrono::Duration::seconds(30));
        let slots = Arc::new(Semaphore::new(self.config.max_in_flight.max(1)));
        // Claims are taken in groups (a claim is a write transaction): wait for a quarter of the
        // slots, then take every slot free at that moment. Only this loop takes slots.
        let group = u32::try_from(self.config.max_in_flight / 4)
            .unwrap_or(u32::MAX)
            .max(1);
        let mut gauges_at = Instant::now() - Duration::from_secs(10);
        loop {
            if gauges_at.elapsed() >= Duration::from_secs(1) {
                gauges_at = Instant::now();
                self.update_gauges().await;
            }
            let Ok(mut held) = slots.clone().acquire_many_owned(group).await else {
                return;
            };
            let more = u32::try_from(slots.available_permits()).unwrap_or(0);
            if let Ok(extra) = slots.clone().try_acquire_many_owned(more) {
                held.merge(extra);
            }
            let free = held.num_permits() as i64;
            let (keys, owner) = (self.keys.clone(), self.config.owner.clone());
            // Armed before the claim looks: events committed by this process while it looks
            // wake the next claim at once (no writer has to remember to wake this worker).
            let events_committed = schema::pool::event_wake().notified();
            tokio::pin!(events_committed);
            events_committed.as_mut().enable();
            let claimed = match self
                .db
                .run(move |conn| schema::outbox::claim(conn, &keys, &owner, first, lease, free))
                .await
            {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "web-hook outbox claim failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            if claimed.is_empty() {
                drop(held);
                tokio::select! {
                    _ = events_committed => {}
                    _ = self.wake.notified() => {}
                    _ = tokio::time::sleep(self.config.poll) => {}
                }
                continue;
            }
            for delivery in claimed {
                // One slot each; the claim took at most as many as were held.
                let Some(slot) = held.split(1) else {
                    break;
                };
                let (worker, finished) = (self.clone(), finished.clone());
                tokio::spawn(async move {
                    let result = worker.attempt(&delivery).await;
                    // The slot is given back once the attempt is recorded.
                    let _ = finished.send(Finished {
                        delivery,
                        result,
                        _slot: slot,
                    });
                });
            }
        }
    }

    async fn update_gauges(&self) {
        if let Ok((depth, oldest)) = self.db.run(schema::outbox::depth).await {
            self.metrics.outbox_depth.set(depth);
            let age = oldest
                .map(|t| (chrono::Utc::now() - t).num_milliseconds() as f64 / 1000.0)
                .unwrap_or(0.0);
            self.metrics.oldest_undelivered_seconds.set(age.max(0.0));
        }
    }

    async fn attempt(&self, claimed: &Claimed) -> AttemptResult {
        let started = Instant::now();
        let failed = |status: Option<u16>, error: String| AttemptResult {
            delivered: false,
            status_code: status,
            duration_ms: started.elapsed().as_millis() as u64,
            error: Some(error.chars().take(200).collect()),
        };
        let url = match crate::target::check_url(&claimed.url, self.config.policy) {
            Ok(url) => url,
            Err(e) => return failed(None, format!("target refused: {e}")),
        };
        let timestamp = chrono::Utc::now().timestamp();
        let Some(secret) = &claimed.secret else {
            return failed(
                None,
                "the subscription's signing secret cannot be decrypted (altered, or sealed with a key no longer configured): rotate its secret".into(),
            );
        };
        let signature = sign(secret, &claimed.event_id, timestamp, &claimed.body);
        let sent = self
            .http
            .post(url)
            .header("content-type", "application/json")
            .header("webhook-id", &claimed.event_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(claimed.body.clone())
            .send()
            .await;
        match sent {
            Ok(res) if res.status().is_success() => AttemptResult {
                delivered: true,
                status_code: Some(res.status().as_u16()),
                duration_ms: started.elapsed().as_millis() as u64,
                error: None,
            },
            Ok(res) => failed(
                Some(res.status().as_u16()),
                format!("answered HTTP {}", res.status().as_u16()),
            ),
            Err(e) if crate::target::refused_by_resolver(&e) => failed(
                None,
                format!("target refused: {}", crate::target::NonPublicTarget),
            ),
            Err(e) if e.is_timeout() => failed(None, "no answer within 10 s".into()),
            Err(e) if e.is_connect() => failed(None, "connection failed".into()),
            Err(_) => failed(None, "request failed".into()),
        }
    }

    /// Records finished attempts: waits for one, takes every other that has finished meanwhile,
    /// and writes them in one transaction (only those whose lease this instance still holds).
    async fn record_finished(self: Arc<Self>, mut to_record: mpsc::UnboundedReceiver<Finished>) {
        while let Some(first) = to_record.recv().await {
            let mut batch = vec![first];
            while let Ok(next) = to_record.try_recv() {
                batch.push(next);
            }
            let recorded: Vec<(Claimed, AttemptResult)> = batch
                .iter()
                .map(|f| (f.delivery.clone(), f.result.clone()))
                .collect();
            let schedule = self.config.schedule.clone();
            match self
                .db
                .run(move |conn| schema::outbox::record_all(conn, &recorded, &schedule))
                .await
            {
                Ok(statuses) => {
                    for (f, status) in batch.iter().zip(statuses) {
                        self.note(&f.delivery, &f.result, status);
                    }
                }
                // The leases run out and the attempts are made again: at least once, never lost.
                Err(e) => tracing::error!(error = %e, "recording web-hook attempts failed"),
            }
            drop(batch);
            // The next events of these subscriptions may be due now.
            self.wake.notify_one();
        }
    }

    fn note(&self, claimed: &Claimed, result: &AttemptResult, status: &str) {
        if status == schema::outbox::SUPERSEDED {
            tracing::warn!(webhook = %claimed.webhook_id, event = %claimed.event_id, "web-hook attempt not recorded: its lease ran out and another instance holds the delivery");
            return;
        }
        let label = match status {
            "delivered" => "delivered",
            "failed" => "failed",
            _ => "retry",
        };
        self.metrics.deliveries.with_label_values(&[label]).inc();
        if status == "failed" {
            tracing::warn!(webhook = %claimed.webhook_id, event = %claimed.event_id, attempts = claimed.attempt, "web-hook delivery failed for good");
        } else if !result.delivered {
            tracing::info!(webhook = %claimed.webhook_id, event = %claimed.event_id, attempt = claimed.attempt, error = result.error.as_deref().unwrap_or(""), "web-hook attempt failed; will retry");
        }
    }
}

/// An attempt that has ended, waiting to be recorded.
struct Finished {
    delivery: Claimed,
    result: AttemptResult,
    /// Its slot: dropped (given back) once the attempt is recorded.
    _slot: OwnedSemaphorePermit,
}

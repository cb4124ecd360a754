//! `GET /api/v1/events`: live events as Server-Sent Events (contract §11), for the companies the
//! token covers (narrowed by `?companies=`), resumable with `Last-Event-ID`.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::web::Bytes;
use actix_web::{web, HttpRequest, HttpResponse};
use schema::events::LoggedEvent;
use schema::{CompanyId, Database};
use serde::Deserialize;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::time::Instant;

use crate::http::auth::{Caller, Scope};
use crate::http::problem::ApiError;
use crate::http::state::AppState;
use crate::service::live_events::{StreamSlot, STREAMS_PER_CALLER};

/// A comment this often keeps proxies from closing an idle stream.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Events read from the log per query when replaying: one page per stream in memory at a time.
const REPLAY_PAGE: i64 = 8;
/// Says that events after the resume point are gone: start again from the current state.
const RESET: &[u8] = b"event: reset\ndata: {}\n\n";

#[derive(Deserialize)]
pub struct EventsQuery {
    companies: Option<String>,
    last_event_id: Option<String>,
}

/// Which companies' events a stream carries: `None` for every company.
struct Filter(Option<HashSet<String>>);

impl Filter {
    fn wants(&self, event: &LoggedEvent) -> bool {
        if event.event_type == schema::outbox::PING {
            return false;
        }
        match (&self.0, &event.company) {
            (_, None) => false,
            (None, Some(_)) => true,
            (Some(set), Some(company)) => set.contains(company),
        }
    }
}

fn frame(event: &LoggedEvent) -> Bytes {
    Bytes::from(format!(
        "id: {}\nevent: {}\ndata: {}\n\n",
        event.seq, event.event_type, event.body
    ))
}

fn filter_for(caller: &Caller, narrowed: Option<&str>) -> Result<Filter, ApiError> {
    let Some(list) = narrowed.filter(|l| !l.trim().is_empty()) else {
        return Ok(Filter(
            (!caller.covers_all()).then(|| caller.companies().iter().cloned().collect()),
        ));
    };
    let mut set = HashSet::new();
    for raw in list.split(',').map(str::trim).filter(|c| !c.is_empty()) {
        let company = CompanyId::parse(raw)
            .map_err(|msg| ApiError::new(StatusCode::BAD_REQUEST, "invalid_company", msg))?;
        if !caller.may_access(company.as_str()) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "company_forbidden",
                format!("This token does not cover company '{company}'."),
            ));
        }
        set.insert(company.to_string());
    }
    Ok(Filter(Some(set)))
}

fn last_event_id(req: &HttpRequest, query: &EventsQuery) -> Result<Option<i64>, ApiError> {
    let raw = req
        .headers()
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| query.last_event_id.clone());
    match raw.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(id) => id.parse::<i64>().map(Some).map_err(|_| {
            ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", "Last-Event-ID must be the id of an event this stream sent (a whole number).")
                .with("errors", serde_json::json!([{"field": "last_event_id", "message": "must be a whole number"}]))
        }),
    }
}

/// One open stream: what it still has to send, and where it is in the log.
struct Live {
    events: broadcast::Receiver<Arc<LoggedEvent>>,
    filter: Filter,
    last: i64,
    /// Frames ready to send: at most one page of the log, so a reader that does not read holds
    /// no more than that (and actix's write buffer) however long the log is.
    queue: VecDeque<Bytes>,
    /// Reading the log after `last` a page at a time as the reader takes them: a resume, or a
    /// stream that fell behind the broadcast.
    replaying: bool,
    ends: Instant,
    keep_alive: Instant,
    db: Database,
    closing: tokio::sync::watch::Receiver<bool>,
    /// This caller's share of streams, given back when the stream ends; a newer stream of the
    /// same caller past the bound ends this one.
    slot: StreamSlot,
}

impl Live {
    /// Queues the next page of the log after `last`. A hole after `last` (events swept by
    /// retention while older ones are kept for web-hook deliveries) is said with `reset`, and
    /// the stream goes on live from the newest event: what it missed is gone.
    async fn next_page(&mut self) -> Result<(), schema::StoreError> {
        let after = self.last;
        let page = self
            .db
            .run(move |conn| schema::events::after(conn, after, REPLAY_PAGE))
            .await?;
        self.replaying = page.len() as i64 == REPLAY_PAGE;
        if page.first().is_some_and(|e| e.seq > after + 1) {
            self.queue.push_back(Bytes::from_static(RESET));
            self.replaying = false;
            let bounds = self.db.run(schema::events::bounds).await?;
            self.last = bounds.map_or(after, |(_, newest)| newest);
            return Ok(());
        }
        for event in page {
            self.last = event.seq;
            if self.filter.wants(&event) {
                self.queue.push_back(frame(&event));
            }
        }
        Ok(())
    }

    async fn next(mut self) -> Option<(Result<Bytes, actix_web::Error>, Live)> {
        loop {
            if let Some(bytes) = self.queue.pop_front() {
                self.keep_alive = Instant::now() + KEEP_ALIVE;
                return Some((Ok(bytes), self));
            }
            if *self.closing.borrow() || Instant::now() >= self.ends {
                return None;
            }
            if self.replaying {
                if self.next_page().await.is_err() {
                    return None;
                }
                continue;
            }
            let mut closing = self.closing.clone();
            let ended = self.slot.ended.clone();
            tokio::select! {
                _ = tokio::time::sleep_until(self.ends) => return None,
                _ = ended.notified() => return None,
                _ = closing.wait_for(|closing| *closing) => return None,
                _ = tokio::time::sleep_until(self.keep_alive) => {
                    self.keep_alive = Instant::now() + KEEP_ALIVE;
                    return Some((Ok(Bytes::from_static(b": keep-alive\n\n")), self));
                }
                got = self.events.recv() => match got {
                    Ok(event) if event.seq > self.last => {
                        self.last = event.seq;
                        if self.filter.wants(&event) {
                            self.queue.push_back(frame(&event));
                        }
                    }
                    Ok(_) => {}
                    Err(RecvError::Lagged(_)) => self.replaying = true,
                    Err(RecvError::Closed) => return None,
                },
            }
        }
    }
}

#[utoipa::path(get, path = "/api/v1/events", tag = "events", security(("bearer" = [])),
    params(("companies" = Option<String>, Query, description = "comma-separated company ids, each covered by the token"),
           ("last_event_id" = Option<String>, Query, description = "resume after this id (or the Last-Event-ID header)"),
           ("Last-Event-ID" = Option<String>, Header)),
    responses((status = 200, description = "Server-Sent Events: id, event (the type), data (the web-hook JSON)", content_type = "text/event-stream"),
              (status = 406, description = "not_acceptable: the request does not accept text/event-stream")))]
pub async fn stream(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    query: web::Query<EventsQuery>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::ConnectionRead)?;
    let accepts = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/event-stream"));
    if !accepts {
        return Err(ApiError::new(
            StatusCode::NOT_ACCEPTABLE,
            "not_acceptable",
            "This is a Server-Sent Events stream: send Accept: text/event-stream (an EventSource does).",
        ));
    }
    let filter = filter_for(&caller, query.companies.as_deref())?;
    let resume = last_event_id(&req, &query)?;
    let slot = state.events.open_stream(&caller.sub).ok_or_else(|| {
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_streams",
            format!("This caller ({}) holds {} live event streams on this instance that are not being read; close them (one stream carries many companies: ?companies=a,b) and try again.", caller.sub, 2 * STREAMS_PER_CALLER),
        )
        .header(header::RETRY_AFTER, "15")
        .with("retry_after_seconds", serde_json::json!(15))
    })?;
    // Subscribed before the log is read, so nothing committed in between is missed.
    let events = state.events.subscribe();
    let bounds = state.db.run(schema::events::bounds).await?;
    let newest = bounds.map_or(0, |(_, n)| n);
    let remaining = caller.exp - chrono::Utc::now().timestamp();
    let mut live = Live {
        events,
        filter,
        last: newest,
        queue: VecDeque::from([Bytes::from_static(b": connected\n\n")]),
        ends: Instant::now() + Duration::from_secs(remaining.max(0) as u64),
        keep_alive: Instant::now() + KEEP_ALIVE,
        db: state.db.clone(),
        closing: state.events.closing(),
        replaying: false,
        slot,
    };
    if let Some(id) = resume {
        // The log numbers events without gaps, so events after `id` are all there exactly when
        // the oldest kept is at most `id + 1` (and `id` is not from the future); a hole further
        // on is found while replaying.
        let retained = bounds.is_some_and(|(oldest, newest)| oldest <= id + 1 && id <= newest);
        if retained {
            live.last = id;
            live.replaying = true;
        } else {
            live.queue.push_back(Bytes::from_static(RESET));
        }
    }
    let stream = futures_util::stream::unfold(live, Live::next);
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(stream))
}

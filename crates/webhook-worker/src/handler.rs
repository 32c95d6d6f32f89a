//! One delivery: load it, send it signed, book the attempt.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pipeline_ops::messages::DeliveryMessage;
use pipeline_runner::{Failure, FailureLog, FailureRecord, Handler, Settled};
use pipeline_store::Actor;
use pipeline_store::webhooks::{self, Attempt, Mark};
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, HeaderMap, LOCATION, RETRY_AFTER};
use scrape_worker::guard::{AddressPolicy, Blocked, GuardedResolver};
use sqlx::PgPool;
use url::Url;
use uuid::Uuid;
use work_queue::Delivery;

use crate::sign;

/// Who books the worker's events.
pub const ACTOR: Actor = Actor::WebhookWorker;

/// How deliveries are sent.
#[derive(Debug, Clone)]
pub struct SendOptions {
    /// One request's whole time (connect, send, answer).
    pub timeout: Duration,
    /// Hosts or addresses allowed although not public.
    pub allow_private_hosts: Vec<String>,
    /// Most bytes of an answer kept in the trail.
    pub max_response_bytes: usize,
}

/// Sends deliveries of the `webhooks` queue.
pub struct WebhookHandler {
    db: PgPool,
    client: reqwest::Client,
    /// A client per port that an allow-list entry names (`localhost:9000`): its resolver
    /// applies that port's entries, which a client for any port cannot.
    port_clients: HashMap<u16, reqwest::Client>,
    policy: Arc<AddressPolicy>,
    max_response_bytes: usize,
    ledger: WebhookLedger,
}

impl WebhookHandler {
    /// A handler over `db` sending with `opts`.
    ///
    /// # Errors
    /// When the HTTP client cannot be built.
    pub fn new(db: PgPool, opts: &SendOptions) -> anyhow::Result<Self> {
        // Idempotent; a process that did not install it yet (a test, a tool) would panic at
        // the first request.
        pipeline_core::install_crypto_provider();
        let policy = Arc::new(AddressPolicy::new(&opts.allow_private_hosts));
        let build = |resolver: GuardedResolver| {
            reqwest::Client::builder()
                .user_agent(concat!("pipeline-webhooks/", env!("CARGO_PKG_VERSION")))
                .timeout(opts.timeout)
                .connect_timeout(opts.timeout.min(Duration::from_secs(5)))
                // A redirect would send the signed body to a URL nobody registered.
                .redirect(reqwest::redirect::Policy::none())
                // A proxy would resolve names itself, bypassing the address check.
                .no_proxy()
                .dns_resolver(Arc::new(resolver))
                .build()
        };
        let client = build(GuardedResolver::new(policy.clone()))?;
        let port_clients = policy
            .ports()
            .into_iter()
            .map(|port| Ok((port, build(GuardedResolver::at_port(policy.clone(), port))?)))
            .collect::<Result<_, reqwest::Error>>()?;
        Ok(Self {
            ledger: WebhookLedger { db: db.clone() },
            db,
            client,
            port_clients,
            policy,
            max_response_bytes: opts.max_response_bytes,
        })
    }

    async fn deliver(&self, id: Uuid) -> Result<(), Failure> {
        let work = webhooks::for_delivery(&self.db, id)
            .await
            .map_err(|e| Failure::transient(format!("loading the delivery: {e}")))?;
        // Removed with its endpoint, or already settled (a duplicate message, a redrive
        // that raced a replay): nothing to send.
        let Some(work) = work else { return Ok(()) };
        match work.status.as_str() {
            "delivered" | "cancelled" => return Ok(()),
            // A message for a dead-lettered or parked delivery was redriven from the DLQ,
            // and the redrive's booking did not land (the redriving process died, or
            // Postgres refused): book it now and send, rather than drop it.
            "dead_lettered" | "parked" => {
                webhooks::mark(&self.db, Mark::Redriven, &[id], &[None], ACTOR)
                    .await
                    .map_err(|e| Failure::transient(format!("booking the redrive: {e}")))?;
            }
            _ => {}
        }
        if !work.enabled {
            webhooks::mark(
                &self.db,
                Mark::Cancelled,
                &[id],
                &[Some("endpoint disabled".into())],
                ACTOR,
            )
            .await
            .map_err(|e| Failure::transient(format!("booking the cancel: {e}")))?;
            return Ok(());
        }
        let attempt = work.attempts + 1;
        let started = Instant::now();
        let sent = self.send(&work).await;
        let latency_ms = i32::try_from(started.elapsed().as_millis()).unwrap_or(i32::MAX);
        let (http_status, error, failure) = match sent {
            Ok(status) => (Some(status), None, None),
            Err(f) => (f.status, Some(f.error.clone()), Some(f)),
        };
        let booked = webhooks::record_attempt(
            &self.db,
            id,
            &Attempt {
                attempt,
                http_status: http_status.map(i32::from),
                latency_ms,
                error: error.as_deref(),
                actor: ACTOR,
            },
        )
        .await;
        metrics::counter!("pipeline_webhook_attempts_total",
            "outcome" => if failure.is_none() { "delivered" } else { "failed" })
        .increment(1);
        metrics::histogram!("pipeline_webhook_attempt_seconds")
            .record(f64::from(latency_ms) / 1000.0);
        match (failure, booked) {
            // Sent but not booked: retrying sends it again with the same id (receivers
            // dedupe on it); acking would leave it `pending` for the reconciliation to
            // send again anyway.
            (None, Err(e)) => Err(Failure::transient(format!(
                "delivered, but booking it failed: {e}"
            ))),
            (None, Ok(_)) => Ok(()),
            (Some(f), _) => Err(f.into_failure()),
        }
    }

    /// One signed POST: the 2xx status it was answered with, or why it did not count as
    /// delivered.
    async fn send(&self, work: &webhooks::DeliveryWork) -> Result<u16, SendFailure> {
        let url = Url::parse(&work.url).map_err(|e| {
            SendFailure::permanent(None, format!("invalid endpoint URL {:?}: {e}", work.url))
        })?;
        self.policy
            .check_url(&url)
            .map_err(|e| SendFailure::permanent(None, e.to_string()))?;
        let body = serde_json::to_vec(&work.payload).expect("a JSON value always serialises");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let client = url
            .port_or_known_default()
            .and_then(|port| self.port_clients.get(&port))
            .unwrap_or(&self.client);
        let resp = client
            .post(url)
            .header(CONTENT_TYPE, "application/json")
            .header(sign::DELIVERY_HEADER, work.id.to_string())
            .header(sign::EVENT_HEADER, &work.event)
            .header(sign::TIMESTAMP_HEADER, now.to_string())
            .header(
                sign::SIGNATURE_HEADER,
                sign::signature(&work.secret, now, &body),
            )
            .body(body)
            .send()
            .await
            .map_err(|e| {
                // The URL may carry a receiver's token: it stays out of the trail and logs.
                let e = e.without_url();
                if is_blocked(&e) {
                    SendFailure::permanent(None, error_chain(&e))
                } else {
                    SendFailure::transient(None, error_chain(&e), None)
                }
            })?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let answer = self.read_capped(resp).await;
        if status.is_success() {
            return Ok(status.as_u16());
        }
        let code = Some(status.as_u16());
        let said = if answer.is_empty() {
            String::new()
        } else {
            format!(": {answer}")
        };
        if status.is_redirection() {
            let to = headers
                .get(LOCATION)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("?");
            return Err(SendFailure::permanent(
                code,
                format!(
                    "HTTP {status} to {to}: redirects are not followed (register the final URL)"
                ),
            ));
        }
        if status == StatusCode::REQUEST_TIMEOUT
            || status == StatusCode::TOO_MANY_REQUESTS
            || status.is_server_error()
        {
            return Err(SendFailure::transient(
                code,
                format!("HTTP {status}{said}"),
                retry_after(&headers),
            ));
        }
        Err(SendFailure::permanent(code, format!("HTTP {status}{said}")))
    }

    /// Up to `max_response_bytes` of the answer, as text (lossy), for the trail.
    async fn read_capped(&self, mut resp: reqwest::Response) -> String {
        let mut kept = Vec::new();
        while kept.len() < self.max_response_bytes {
            match resp.chunk().await {
                Ok(Some(chunk)) => {
                    let room = self.max_response_bytes - kept.len();
                    kept.extend_from_slice(&chunk[..chunk.len().min(room)]);
                }
                Ok(None) | Err(_) => break,
            }
        }
        String::from_utf8_lossy(&kept).trim().to_owned()
    }
}

/// Why an attempt did not deliver.
#[derive(Debug, Clone)]
struct SendFailure {
    status: Option<u16>,
    error: String,
    transient: bool,
    retry_after: Option<Duration>,
}

impl SendFailure {
    fn permanent(status: Option<u16>, error: String) -> Self {
        Self {
            status,
            error,
            transient: false,
            retry_after: None,
        }
    }

    fn transient(status: Option<u16>, error: String, retry_after: Option<Duration>) -> Self {
        Self {
            status,
            error,
            transient: true,
            retry_after,
        }
    }

    fn into_failure(self) -> Failure {
        if self.transient {
            Failure::Transient {
                message: self.error,
                retry_after: self.retry_after,
            }
        } else {
            Failure::permanent(self.error)
        }
    }
}

/// `Retry-After` in seconds or as an HTTP date, capped at an hour.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    let wait = match v.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => httpdate::parse_http_date(v)
            .ok()?
            .duration_since(std::time::SystemTime::now())
            .unwrap_or_default(),
    };
    Some(wait.min(Duration::from_secs(3600)))
}

fn is_blocked(e: &reqwest::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.downcast_ref::<Blocked>().is_some() {
            return true;
        }
        source = s.source();
    }
    false
}

/// The error and its causes, joined: reqwest's own message hides the cause.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !out.contains(&s_text) {
            out.push_str(": ");
            out.push_str(&s_text);
        }
        source = s.source();
    }
    out
}

impl Handler for WebhookHandler {
    type Message = DeliveryMessage;

    async fn handle(&self, _delivery: &Delivery, msg: DeliveryMessage) -> Result<(), Failure> {
        self.deliver(msg.delivery_id).await
    }

    fn failure_log(&self) -> &dyn FailureLog {
        &self.ledger
    }
}

/// Books dead-letters of the `webhooks` family on the delivery (each attempt is booked by
/// the handler itself, with its status and latency).
pub struct WebhookLedger {
    db: PgPool,
}

impl FailureLog for WebhookLedger {
    fn record<'a>(&'a self, r: FailureRecord<'a>) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        Box::pin(async move {
            if !matches!(r.settled, Settled::DeadLettered { .. }) {
                return;
            }
            let id = match r.ids {
                Some((id, _)) => Some(id),
                None => Uuid::parse_str(r.message_id).ok(),
            };
            let Some(id) = id else {
                tracing::warn!(
                    error = r.failure.message(),
                    "failed webhook message names no delivery; only the DLQ holds it"
                );
                return;
            };
            if let Err(e) = webhooks::mark(
                &self.db,
                Mark::DeadLettered,
                &[id],
                &[Some(r.failure.message().to_owned())],
                ACTOR,
            )
            .await
            {
                tracing::error!(error = %e, delivery_id = %id, "booking a dead-lettered delivery failed");
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn retry_after_reads_seconds_and_dates_and_is_capped() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        h.insert(RETRY_AFTER, HeaderValue::from_static("999999"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3600)));
        let later =
            httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(120));
        h.insert(RETRY_AFTER, HeaderValue::from_str(&later).unwrap());
        let wait = retry_after(&h).unwrap();
        assert!(wait > Duration::from_secs(100) && wait <= Duration::from_secs(120));
        h.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h), None);
    }
}

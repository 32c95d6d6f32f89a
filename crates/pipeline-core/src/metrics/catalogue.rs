//! Every series the pipeline exports, in one place: name, meaning, labels, and which
//! processes export it. `/metrics` takes its `# HELP` lines from here, start-up registers
//! the counters at zero from here, and tests hold the code, `docs/metrics.md`, the Grafana
//! dashboard and the alert rules to it.

/// The processes that serve `/metrics`, by binary name (the `process` label of
/// `pipeline_build_info`).
pub const PROCESSES: [&str; 6] = [SCRAPE, EXTRACTION, FACTS, WEBHOOKS, REQUEUE, API];

const SCRAPE: &str = "scrape-worker";
const EXTRACTION: &str = "extraction-worker";
const FACTS: &str = "facts-worker";
const WEBHOOKS: &str = "webhook-worker";
const REQUEUE: &str = "requeue-daemon";
const API: &str = "pipeline-api";
const WORKERS: &[&str] = &[SCRAPE, EXTRACTION, FACTS, WEBHOOKS];

/// The queue families, as their `family` label reads (`pipeline_ops::Family::ALL`).
pub const FAMILIES: [&str; 4] = ["scrape", "extraction", "facts", "webhooks"];

/// A series of the `metrics` recorder.
#[derive(Debug)]
pub struct Metric {
    /// Its name (`pipeline_` and a word for the area).
    pub name: &'static str,
    /// What it means (its `# HELP` line).
    pub help: &'static str,
    /// Its labels, with the values a counter takes.
    pub labels: &'static [(&'static str, Values)],
    /// The processes that export it.
    pub exported_by: &'static [&'static str],
}

/// The values a label takes. A counter is registered at zero at start-up for every
/// combination of its labels' values, unless one of them is [`Values::Open`].
#[derive(Debug, Clone, Copy)]
pub enum Values {
    /// Exactly these.
    Fixed(&'static [&'static str]),
    /// Every queue family ([`FAMILIES`]).
    Families,
    /// The families the process works on: its own in a worker, every one elsewhere.
    OwnFamily,
    /// Not known before the process sees them (routes and statuses, say).
    Open,
}

/// Delivery outcomes of the worker runner (`pipeline_runner`).
pub const MESSAGE_OUTCOMES: &[&str] = &[
    "succeeded",
    "lease_lost",
    "ack_failed",
    "retry_scheduled",
    "dead_lettered",
    "settle_failed",
];

/// A page fetch's outcome: `ok`, `not_modified` (a recrawl's 304), `skipped` (already past
/// scraping), or the failure reason of `scrape_worker::FetchError::reason`.
const FETCH_OUTCOMES: &[&str] = &[
    "ok",
    "not_modified",
    "skipped",
    "invalid_url",
    "blocked_address",
    "robots_disallowed",
    "too_many_redirects",
    "http_5xx",
    "http_429",
    "http_4xx",
    "content_type",
    "too_large",
    "timeout",
    "connect",
    "host_busy",
    "malformed_response",
    "client",
];

/// A link read from a crawled page: `admitted` (a new page of the crawl), `unusable` (not a
/// URL), or why it was skipped (`pipeline_ops::crawl::SkipReason`).
const LINK_OUTCOMES: &[&str] = &[
    "admitted", "unusable", "scope", "pattern", "depth", "limit", "trap", "nofollow",
];

const FAMILY: (&str, Values) = ("family", Values::Families);
const OWN_FAMILY: (&str, Values) = ("family", Values::OwnFamily);
/// Labels of the API's request series.
const HTTP_LABELS: &[(&str, Values)] = &[
    ("method", Values::Open),
    ("route", Values::Open),
    ("status", Values::Open),
];

/// Counters.
pub const COUNTERS: &[Metric] = &[
    Metric {
        name: "pipeline_messages_total",
        help: "Deliveries processed, by family and outcome (succeeded, retry_scheduled, dead_lettered, lease_lost, ack_failed, settle_failed)",
        labels: &[OWN_FAMILY, ("outcome", Values::Fixed(MESSAGE_OUTCOMES))],
        exported_by: WORKERS,
    },
    Metric {
        name: "pipeline_submitted_sources_total",
        help: "Sources enqueued by submissions to the API",
        labels: &[],
        exported_by: &[API],
    },
    Metric {
        name: "pipeline_dlq_redriven_total",
        help: "DLQ items redriven by a person, by family and by where it was asked (api, console)",
        labels: &[FAMILY, ("by", Values::Fixed(&["api", "console"]))],
        exported_by: &[API],
    },
    Metric {
        name: "pipeline_scrape_fetches_total",
        help: "Page fetches, by outcome (ok, not_modified, skipped, or the failure reason)",
        labels: &[("outcome", Values::Fixed(FETCH_OUTCOMES))],
        exported_by: &[SCRAPE],
    },
    Metric {
        name: "pipeline_scrape_revisits_total",
        help: "Pages fetched again for a recrawl, by content (unchanged, changed)",
        labels: &[("content", Values::Fixed(&["unchanged", "changed"]))],
        exported_by: &[SCRAPE],
    },
    Metric {
        name: "pipeline_scrape_politeness_waits_total",
        help: "Fetches that waited for a host's politeness slot",
        labels: &[],
        exported_by: &[SCRAPE],
    },
    Metric {
        name: "pipeline_crawl_links_total",
        help: "Links read from crawled pages, by outcome (admitted, unusable, or the skip reason)",
        labels: &[("outcome", Values::Fixed(LINK_OUTCOMES))],
        exported_by: &[SCRAPE],
    },
    Metric {
        name: "pipeline_crawl_sitemap_files_total",
        help: "Sitemap files read for crawls, by outcome (urlset, index, not_a_sitemap, failed)",
        labels: &[(
            "outcome",
            Values::Fixed(&["urlset", "index", "not_a_sitemap", "failed"]),
        )],
        exported_by: &[SCRAPE],
    },
    Metric {
        name: "pipeline_render_requests_total",
        help: "Requests of rendered pages the guard proxy let through (CONNECTs and forwarded http requests)",
        labels: &[],
        exported_by: &[SCRAPE],
    },
    Metric {
        name: "pipeline_render_requests_refused_total",
        help: "Requests of rendered pages the guard proxy refused, by reason (address, port, scheme, budget, idle)",
        labels: &[(
            "reason",
            Values::Fixed(&["address", "port", "scheme", "budget", "idle"]),
        )],
        exported_by: &[SCRAPE],
    },
    Metric {
        name: "pipeline_render_pages_total",
        help: "Pages the render decision chose, by outcome (rendered, failed, disabled)",
        labels: &[(
            "outcome",
            Values::Fixed(&["rendered", "failed", "disabled"]),
        )],
        exported_by: &[SCRAPE],
    },
    Metric {
        name: "pipeline_render_browser_launches_total",
        help: "Browser processes started (the first and every replacement)",
        labels: &[],
        exported_by: &[SCRAPE],
    },
    Metric {
        name: "pipeline_render_browser_restarts_total",
        help: "Browsers replaced, by reason (failed: crashed, hung or over a page's deadline; recycled: after render.recycle_after_pages)",
        labels: &[("reason", Values::Fixed(&["failed", "recycled"]))],
        exported_by: &[SCRAPE],
    },
    Metric {
        name: "pipeline_render_renderers_stopped_total",
        help: "Renderer processes stopped over the page memory budget",
        labels: &[],
        exported_by: &[SCRAPE],
    },
    Metric {
        name: "pipeline_entities_status_total",
        help: "Entity extraction outcomes, by status (complete, partial, failed)",
        labels: &[("status", Values::Fixed(&["complete", "partial", "failed"]))],
        exported_by: &[EXTRACTION],
    },
    Metric {
        name: "pipeline_extraction_too_expensive_total",
        help: "Pages refused as too expensive to extract (over a size, node or time budget)",
        labels: &[],
        exported_by: &[EXTRACTION],
    },
    Metric {
        name: "pipeline_extraction_abandoned_total",
        help: "Extractions given up while their thread still ran (budget + grace passed)",
        labels: &[],
        exported_by: &[EXTRACTION],
    },
    Metric {
        name: "pipeline_extraction_abandoned_waits_total",
        help: "Times an extraction delivery waited for abandoned parser threads to finish",
        labels: &[],
        exported_by: &[EXTRACTION],
    },
    Metric {
        name: "pipeline_facts_values_total",
        help: "Values the schema stage stored, by backend and whether their quote is in the page",
        labels: &[
            ("backend", Values::Fixed(&["markup", "llm"])),
            ("grounded", Values::Fixed(&["true", "false"])),
        ],
        exported_by: &[FACTS],
    },
    Metric {
        name: "pipeline_facts_dropped_values_total",
        help: "Values found but not usable (not of the field's type), by backend",
        labels: &[("backend", Values::Fixed(&["markup", "llm"]))],
        exported_by: &[FACTS],
    },
    Metric {
        name: "pipeline_facts_model_answers_total",
        help: "Model server answers, by outcome (conforming, nonconforming, malformed, transient, refused)",
        labels: &[(
            "outcome",
            Values::Fixed(&[
                "conforming",
                "nonconforming",
                "malformed",
                "transient",
                "refused",
            ]),
        )],
        exported_by: &[FACTS],
    },
    Metric {
        name: "pipeline_facts_model_tokens_total",
        help: "Model tokens spent by the schema stage, by kind (prompt, completion)",
        labels: &[("kind", Values::Fixed(&["prompt", "completion"]))],
        exported_by: &[FACTS],
    },
    Metric {
        name: "pipeline_webhook_attempts_total",
        help: "HTTP requests of webhook deliveries, by outcome (delivered, failed)",
        labels: &[("outcome", Values::Fixed(&["delivered", "failed"]))],
        exported_by: &[WEBHOOKS],
    },
    Metric {
        name: "pipeline_webhook_relayed_total",
        help: "Webhook deliveries put on the webhooks queue by the relay",
        labels: &[],
        exported_by: &[WEBHOOKS],
    },
    Metric {
        name: "pipeline_webhook_reconciled_total",
        help: "Pending webhook deliveries queued again because no queue or DLQ held them",
        labels: &[],
        exported_by: &[WEBHOOKS],
    },
    Metric {
        name: "pipeline_embedding_failures_total",
        help: "Failed embedding calls, by kind (transient, permanent)",
        labels: &[("kind", Values::Fixed(&["transient", "permanent"]))],
        exported_by: &[EXTRACTION],
    },
    Metric {
        name: "pipeline_embedding_cache_total",
        help: "Chunk texts looked up in the embedding cache, by outcome (hit, miss)",
        labels: &[("outcome", Values::Fixed(&["hit", "miss"]))],
        exported_by: &[EXTRACTION],
    },
    Metric {
        name: "pipeline_embedding_cache_evicted_total",
        help: "Least recently used embedding cache rows deleted to keep embedding.cache.max_entries",
        labels: &[],
        exported_by: &[EXTRACTION],
    },
    Metric {
        name: "pipeline_embedding_batch_duplicates_total",
        help: "Texts of an embedding batch that repeated another text of the batch (embedded once)",
        labels: &[],
        exported_by: &[EXTRACTION],
    },
    Metric {
        name: "pipeline_embedding_truncated_total",
        help: "Texts cut at the in-process model's window (embedding.minilm.max_tokens)",
        labels: &[],
        exported_by: &[EXTRACTION],
    },
    Metric {
        name: "pipeline_requeue_redriven_total",
        help: "DLQ items redriven automatically, by family",
        labels: &[FAMILY],
        exported_by: &[REQUEUE],
    },
    Metric {
        name: "pipeline_requeue_parked_total",
        help: "DLQ items parked after their last automatic redrive, by family",
        labels: &[FAMILY],
        exported_by: &[REQUEUE],
    },
    Metric {
        name: "pipeline_requeue_reconciled_total",
        help: "Sources Redis had forgotten, enqueued again from Postgres, by family",
        labels: &[FAMILY],
        exported_by: &[REQUEUE],
    },
    Metric {
        name: "pipeline_requeue_bookkeeping_failures_total",
        help: "Redrive batches whose Postgres record failed, by family",
        labels: &[FAMILY],
        exported_by: &[REQUEUE],
    },
    Metric {
        name: "pipeline_event_partitions_total",
        help: "Event-trail partitions created or dropped by the maintenance, by change",
        labels: &[("change", Values::Fixed(&["created", "dropped"]))],
        exported_by: &[REQUEUE],
    },
    Metric {
        name: "pipeline_scheduled_recrawls_total",
        help: "Recrawls started by their schedule (crawl_schedules)",
        labels: &[],
        exported_by: &[REQUEUE],
    },
    Metric {
        name: "pipeline_queue_enqueued_total",
        help: "Messages enqueued, by family",
        labels: &[FAMILY],
        exported_by: &[API, SCRAPE, REQUEUE],
    },
    Metric {
        name: "pipeline_queue_reserved_total",
        help: "Messages reserved (leased), by family",
        labels: &[OWN_FAMILY],
        exported_by: WORKERS,
    },
    Metric {
        name: "pipeline_queue_acked_total",
        help: "Messages acked, by family",
        labels: &[OWN_FAMILY],
        exported_by: WORKERS,
    },
    Metric {
        name: "pipeline_queue_retried_total",
        help: "Messages scheduled for another attempt, by family",
        labels: &[OWN_FAMILY],
        exported_by: WORKERS,
    },
    Metric {
        name: "pipeline_queue_dead_lettered_total",
        help: "Messages moved to the DLQ, by family",
        labels: &[OWN_FAMILY],
        exported_by: WORKERS,
    },
    Metric {
        name: "pipeline_queue_lease_lost_total",
        help: "Acks or settles refused because the lease had passed to another worker, by family",
        labels: &[OWN_FAMILY],
        exported_by: WORKERS,
    },
    Metric {
        name: "pipeline_queue_leases_expired_total",
        help: "Leases that expired and put their message back, by family",
        labels: &[OWN_FAMILY],
        exported_by: WORKERS,
    },
    Metric {
        name: "pipeline_queue_orphans_dropped_total",
        help: "Queue entries without a message hash, dropped, by family",
        labels: &[OWN_FAMILY],
        exported_by: WORKERS,
    },
    Metric {
        name: "pipeline_api_connections_evicted_total",
        help: "Idle API connections closed to make room under the connection cap",
        labels: &[],
        exported_by: &[API],
    },
    Metric {
        name: "pipeline_api_connections_refused_total",
        help: "API connections refused with 503 because every connection was busy",
        labels: &[],
        exported_by: &[API],
    },
    Metric {
        name: "pipeline_http_requests_total",
        help: "API requests answered, by method, matched route template and status",
        labels: HTTP_LABELS,
        exported_by: &[API],
    },
];

/// Gauges.
pub const GAUGES: &[Metric] = &[
    Metric {
        name: "pipeline_render_browser_rss_bytes",
        help: "Resident memory of the worker's browser processes (every process of their groups)",
        labels: &[],
        exported_by: &[SCRAPE],
    },
    Metric {
        name: "pipeline_build_info",
        help: "Always 1; the labels name the version and the process (binary)",
        labels: &[("version", Values::Open), ("process", Values::Open)],
        exported_by: &PROCESSES,
    },
    Metric {
        name: "pipeline_in_flight",
        help: "Deliveries being processed now, by family",
        labels: &[OWN_FAMILY],
        exported_by: WORKERS,
    },
    Metric {
        name: "pipeline_queue_depth",
        help: "Messages in a family's work queue, by state (ready, leased, delayed); cluster-wide, read by the requeue daemon (aggregate with max, not sum)",
        labels: &[
            FAMILY,
            ("state", Values::Fixed(&["ready", "leased", "delayed"])),
        ],
        exported_by: &[REQUEUE],
    },
    Metric {
        name: "pipeline_dlq_items",
        help: "Items in a family's DLQ, by state (transient, permanent, parked); cluster-wide, read by the requeue daemon (aggregate with max, not sum)",
        labels: &[
            FAMILY,
            (
                "state",
                Values::Fixed(&["transient", "permanent", "parked"]),
            ),
        ],
        exported_by: &[REQUEUE],
    },
    Metric {
        name: "pipeline_family_paused",
        help: "1 while a family's workers are paused, else 0; cluster-wide, read by the requeue daemon (aggregate with max, not sum)",
        labels: &[FAMILY],
        exported_by: &[REQUEUE],
    },
    Metric {
        name: "pipeline_scrape_fetches_in_flight",
        help: "Page fetches running now",
        labels: &[],
        exported_by: &[SCRAPE],
    },
    Metric {
        name: "pipeline_extraction_waiting_on_abandoned",
        help: "Extraction deliveries waiting because abandoned parser threads are at their bound",
        labels: &[],
        exported_by: &[EXTRACTION],
    },
    Metric {
        name: "pipeline_extraction_abandoned_running",
        help: "Given-up extraction threads still running",
        labels: &[],
        exported_by: &[EXTRACTION],
    },
    Metric {
        name: "pipeline_api_connections_open",
        help: "Connections open to the API",
        labels: &[],
        exported_by: &[API],
    },
];

/// Histograms (`*_seconds` in seconds).
pub const HISTOGRAMS: &[Metric] = &[
    Metric {
        name: "pipeline_render_duration_seconds",
        help: "Time to render one page, navigation to settled DOM",
        labels: &[],
        exported_by: &[SCRAPE],
    },
    Metric {
        name: "pipeline_webhook_attempt_seconds",
        help: "Time of one webhook delivery request, answer included",
        labels: &[],
        exported_by: &[WEBHOOKS],
    },
    Metric {
        name: "pipeline_message_duration_seconds",
        help: "Time from handler start to settled, by family",
        labels: &[OWN_FAMILY],
        exported_by: WORKERS,
    },
    Metric {
        name: "pipeline_scrape_fetch_duration_seconds",
        help: "Page fetch time, redirects and body included",
        labels: &[],
        exported_by: &[SCRAPE],
    },
    Metric {
        name: "pipeline_extractions_per_source",
        help: "Chunks (extraction rows) per extracted source",
        labels: &[],
        exported_by: &[EXTRACTION],
    },
    Metric {
        name: "pipeline_embedding_seconds",
        help: "Embedding time of one source's missing chunks",
        labels: &[],
        exported_by: &[EXTRACTION],
    },
    Metric {
        name: "pipeline_embedding_batch_seconds",
        help: "Time of one embedding batch request, by outcome (ok, error)",
        labels: &[("outcome", Values::Fixed(&["ok", "error"]))],
        exported_by: &[EXTRACTION],
    },
    Metric {
        name: "pipeline_embedding_batch_size",
        help: "Texts per embedding batch",
        labels: &[],
        exported_by: &[EXTRACTION],
    },
    Metric {
        name: "pipeline_http_request_duration_seconds",
        help: "API request time until the answer's head, by method, matched route template and status",
        labels: HTTP_LABELS,
        exported_by: &[API],
    },
];

/// A `process_*` series, read from `/proc` at scrape time (see [`super::process`]).
#[derive(Debug)]
pub struct ProcessMetric {
    /// Its name.
    pub name: &'static str,
    /// `counter` or `gauge`.
    pub kind: &'static str,
    /// What it means.
    pub help: &'static str,
}

/// The `process_*` series every process exports (on Linux).
pub const PROCESS: &[ProcessMetric] = &[
    ProcessMetric {
        name: "process_cpu_seconds_total",
        kind: "counter",
        help: "User and system CPU time spent, in seconds",
    },
    ProcessMetric {
        name: "process_resident_memory_bytes",
        kind: "gauge",
        help: "Resident memory size, in bytes",
    },
    ProcessMetric {
        name: "process_virtual_memory_bytes",
        kind: "gauge",
        help: "Virtual memory size, in bytes",
    },
    ProcessMetric {
        name: "process_open_fds",
        kind: "gauge",
        help: "Open file descriptors",
    },
    ProcessMetric {
        name: "process_max_fds",
        kind: "gauge",
        help: "Most open file descriptors allowed (the soft limit)",
    },
    ProcessMetric {
        name: "process_start_time_seconds",
        kind: "gauge",
        help: "When the process started, in seconds since the Unix epoch",
    },
    ProcessMetric {
        name: "process_threads",
        kind: "gauge",
        help: "OS threads in the process",
    },
];

/// The families `process` works on: its own in a worker, every one elsewhere.
pub(super) fn own_families(process: &str) -> &'static [&'static str] {
    match process {
        SCRAPE => &["scrape"],
        EXTRACTION => &["extraction"],
        FACTS => &["facts"],
        WEBHOOKS => &["webhooks"],
        _ => &FAMILIES,
    }
}

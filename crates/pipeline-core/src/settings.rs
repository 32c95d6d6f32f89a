//! Layered configuration.
//!
//! Layers, later wins:
//! 1. `config/default.toml`, compiled into every binary so the base is always complete;
//! 2. the file named by `PIPELINE_CONFIG`, when set;
//! 3. environment variables `PIPELINE__SECTION__KEY` (double underscore between parts);
//! 4. `DATABASE_URL` and `REDIS_URL`, which override `database.url` and `redis.url`.
//!
//! Environment variables read here: `PIPELINE_CONFIG`, `PIPELINE__*`, `DATABASE_URL`,
//! `REDIS_URL`, `PIPELINE_API_KEY`, `PIPELINE_EMBEDDING_API_KEY`.
//!
//! Every struct denies unknown fields, so a misspelt key stops start-up with an error that
//! names it (`database.nope`), and a value of the wrong type names its key too. Secrets
//! (URLs that may carry passwords, API keys) are [`SecretString`]s: `Debug` prints them
//! redacted, so logging the settings cannot leak them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use config::{Config, Environment, File, FileFormat};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize, Serializer};

/// The defaults, documented key by key.
pub const DEFAULT_TOML: &str = include_str!("../../../config/default.toml");

/// The URL schemes the Redis client accepts.
const REDIS_SCHEMES: &[&str] = &[
    "redis",
    "rediss",
    "valkey",
    "valkeys",
    "redis+unix",
    "valkey+unix",
    "unix",
];

/// `database.url` of [`DEFAULT_TOML`].
fn default_database_url() -> Option<String> {
    let table: toml::Table = DEFAULT_TOML.parse().ok()?;
    Some(table.get("database")?.get("url")?.as_str()?.to_owned())
}

/// `url` with its password (if any) replaced by `***`; a value that does not parse as a
/// URL is shown as `***` whole, since it may be a password pasted in the wrong place.
pub fn mask_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            u.to_string()
        }
        Err(_) if url.is_empty() => String::new(),
        Err(_) => "***".into(),
    }
}

fn masked_url<S: Serializer>(url: &SecretString, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&mask_url(url.expose_secret()))
}

fn masked_urls<S: Serializer>(urls: &[SecretString], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(urls.iter().map(|u| mask_url(u.expose_secret())))
}

/// `key` holds a URL with one of `schemes`; the error shows the value with its password
/// masked.
fn check_url(key: &str, value: &str, schemes: &[&str]) -> Result<(), SettingsError> {
    let invalid = |reason: String| SettingsError::InvalidValue {
        key: key.to_owned(),
        reason,
    };
    let url = url::Url::parse(value).map_err(|e| {
        invalid(format!(
            "`{}` is not a URL ({e}); expected {}://user@host:port/database",
            mask_url(value),
            schemes[0]
        ))
    })?;
    if !schemes.contains(&url.scheme()) {
        return Err(invalid(format!(
            "`{}` has the scheme `{}`; expected {}",
            mask_url(value),
            url.scheme(),
            schemes
                .iter()
                .map(|s| format!("`{s}://`"))
                .collect::<Vec<_>>()
                .join(" or ")
        )));
    }
    Ok(())
}

/// Keys whose environment values are comma-separated lists.
const LIST_KEYS: &[&str] = &[
    "scrape.allowed_content_types",
    "scrape.allow_private_hosts",
    "webhooks.allow_private_hosts",
    "redis.cluster_nodes",
];

/// A configuration that cannot be used, with the key at fault named in the message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SettingsError {
    /// A key no section knows.
    #[error("unknown configuration key `{key}`{hint}")]
    UnknownKey {
        /// Dotted path of the key, e.g. `database.nope`.
        key: String,
        /// The accepted keys, when known.
        hint: String,
    },
    /// A value that does not parse as its key's type, or breaks a rule.
    #[error("invalid value for configuration key `{key}`: {reason}")]
    InvalidValue {
        /// Dotted path of the key.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A file (the `PIPELINE_CONFIG` file, a secret file) that cannot be read or parsed.
    #[error("cannot read configuration: {0}")]
    Source(String),
}

/// All settings of every process; each binary reads the sections it needs.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct Settings {
    pub database: DatabaseSettings,
    pub redis: RedisSettings,
    pub telemetry: TelemetrySettings,
    pub shutdown: ShutdownSettings,
    pub probes: ProbeSettings,
    pub queue: QueueSettings,
    pub dlq: DlqSettings,
    pub scrape: ScrapeSettings,
    pub render: RenderSettings,
    pub crawl: CrawlingSettings,
    pub extraction: ExtractionSettings,
    pub facts: FactsSettings,
    pub webhooks: WebhookSettings,
    pub embedding: EmbeddingSettings,
    pub requeue: RequeueSettings,
    pub events: EventsSettings,
    pub api: ApiSettings,
}

/// `[database]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct DatabaseSettings {
    #[serde(serialize_with = "masked_url")]
    pub url: SecretString,
    pub password_file: String,
    pub max_connections: u32,
    pub acquire_timeout_secs: u64,
}

/// `[redis]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct RedisSettings {
    #[serde(serialize_with = "masked_url")]
    pub url: SecretString,
    /// Seed node URLs of a Redis Cluster; empty means the one Redis at `url`. Secret:
    /// a node URL may carry the cluster's password.
    #[serde(serialize_with = "masked_urls")]
    pub cluster_nodes: Vec<SecretString>,
    pub key_prefix: String,
    pub pool_size: usize,
    pub response_timeout_ms: u64,
    pub connect_timeout_ms: u64,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Human,
    /// One JSON object per line.
    Json,
}

/// `[telemetry]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct TelemetrySettings {
    pub format: LogFormat,
    pub level: String,
}

/// `[shutdown]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct ShutdownSettings {
    pub drain_timeout_secs: u64,
}

impl ShutdownSettings {
    /// The drain timeout as a duration.
    pub fn drain_timeout(&self) -> Duration {
        Duration::from_secs(self.drain_timeout_secs)
    }
}

/// `[probes]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct ProbeSettings {
    pub host: String,
    pub scrape_worker_port: u16,
    pub extraction_worker_port: u16,
    pub facts_worker_port: u16,
    pub webhook_worker_port: u16,
    pub requeue_daemon_port: u16,
}

/// `[queue]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct QueueSettings {
    pub visibility_timeout_secs: u64,
    pub block_timeout_ms: u64,
    pub reserve_batch: usize,
    pub max_attempts: u32,
    pub backoff_base_ms: u64,
    pub backoff_cap_ms: u64,
    pub shards: u16,
}

/// `[dlq]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct DlqSettings {
    pub max_items: u64,
}

/// `[scrape]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct ScrapeSettings {
    pub concurrency: usize,
    pub connect_timeout_ms: u64,
    pub request_timeout_ms: u64,
    pub read_timeout_ms: u64,
    pub fetch_timeout_ms: u64,
    pub max_redirects: usize,
    pub max_body_bytes: u64,
    pub allowed_content_types: Vec<String>,
    pub user_agent: String,
    pub respect_robots_txt: bool,
    pub robots_cache_ttl_secs: u64,
    pub per_host_min_delay_ms: u64,
    pub per_host_max_concurrency: u32,
    pub allow_private_hosts: Vec<String>,
}

/// `[render]`: the scrape worker's headless browser (see `docs/rendering.md`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct RenderSettings {
    pub enabled: bool,
    pub default: crate::render::RenderMode,
    pub browser: String,
    pub sandbox: bool,
    pub browsers: usize,
    pub tabs_per_browser: usize,
    pub page_timeout_ms: u64,
    pub settle_timeout_ms: u64,
    pub settle_quiet_ms: u64,
    pub empty_quiet_ms: u64,
    pub max_page_memory_mb: u64,
    pub max_page_bytes: u64,
    pub recycle_after_pages: u64,
}

/// `[crawl]`: bounds of a crawl's sitemap reading (the scrape worker) and the pace of
/// scheduled recrawls (the requeue daemon). A crawl's own rules (scope, depth, caps) come
/// with each crawl request.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct CrawlingSettings {
    pub sitemap_max_files: usize,
    pub sitemap_max_index_depth: u32,
    pub sitemap_max_file_bytes: u64,
    pub sitemap_max_unzipped_bytes: u64,
    pub sitemap_max_urls: usize,
    pub sitemap_budget_secs: u64,
    pub schedule_check_secs: u64,
}

/// `[extraction]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct ExtractionSettings {
    pub concurrency: usize,
    pub chunk_max_chars: usize,
    pub chunk_overlap_chars: usize,
    pub max_html_bytes: usize,
    pub max_depth: usize,
    pub max_elements: usize,
    pub max_attributes: usize,
    pub max_attributes_per_element: usize,
    pub max_text_bytes: usize,
    pub max_chunks: usize,
    pub max_entities: usize,
    pub max_work_units: u64,
    pub time_budget_ms: u64,
    pub abandon_grace_ms: u64,
    pub max_pdf_pages: usize,
    pub max_pdf_decoded_bytes: u64,
    /// Abandoned extraction threads at which no new extraction starts; unset: `concurrency`.
    #[serde(default)]
    pub max_abandoned: Option<usize>,
}

/// Embedding backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EmbeddingBackend {
    /// The all-MiniLM-L6-v2 sentence model, in process.
    Minilm,
    /// In-process feature hashing.
    Hashing,
    /// An OpenAI-compatible `/v1/embeddings` server.
    Openai,
}

/// `[facts]`: the schema stage.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct FactsSettings {
    pub concurrency: usize,
    pub max_values_per_page: usize,
    pub llm: LlmSettings,
}

/// `[facts.llm]`: the OpenAI-compatible chat-completions server of the `llm` backend.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct LlmSettings {
    pub url: String,
    pub model: String,
    pub response_format: String,
    pub timeout_ms: u64,
    pub max_input_tokens: u32,
    pub max_output_tokens: u32,
    pub temperature: f32,
    pub api_key_file: String,
}

/// `[webhooks]`: the webhook worker.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct WebhookSettings {
    pub concurrency: usize,
    pub timeout_ms: u64,
    pub allow_private_hosts: Vec<String>,
    pub relay_interval_ms: u64,
    pub reconcile_after_secs: u64,
    pub max_response_bytes: usize,
}

/// `[embedding]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct EmbeddingSettings {
    pub backend: EmbeddingBackend,
    pub batch_size: usize,
    pub batch_window_ms: u64,
    pub minilm: MiniLmSettings,
    pub hashing: HashingSettings,
    pub openai: OpenAiSettings,
    pub cache: EmbeddingCacheSettings,
}

/// `[embedding.cache]`: vectors reused across chunks whose embedded text is identical.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct EmbeddingCacheSettings {
    /// Most cached vectors per model (least recently used deleted beyond); 0 turns the
    /// cache off.
    pub max_entries: u64,
}

/// `[embedding.minilm]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct MiniLmSettings {
    pub model_dir: String,
    pub max_tokens: usize,
    pub precision: MiniLmPrecision,
}

/// Arithmetic of the in-process model's matrix products.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MiniLmPrecision {
    /// 32-bit floats throughout.
    F32,
    /// Weights and activations of the projections quantised to 8-bit integers.
    Int8,
}

/// `[embedding.hashing]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct HashingSettings {
    pub dims: usize,
}

/// `[embedding.openai]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct OpenAiSettings {
    pub url: String,
    pub model: String,
    pub dims: usize,
    pub api_key_file: String,
    pub timeout_ms: u64,
}

/// `[requeue]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct RequeueSettings {
    pub max_redrives: u32,
    pub redrive_base_delay_secs: u64,
    pub redrive_max_delay_secs: u64,
    pub rate_per_sec: u32,
    pub batch_size: usize,
    pub interval_ms: u64,
    pub reconcile_after_secs: u64,
    pub reconcile_batch: usize,
    pub reconcile_interval_secs: u64,
}

/// `[events]`: the event trail's partitions, maintained by the requeue daemon.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct EventsSettings {
    pub retention_days: u32,
    pub partitions_ahead_months: u32,
    pub maintenance_interval_secs: u64,
}

/// `[api]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct ApiSettings {
    pub bind: String,
    pub key_file: String,
    pub max_connections: usize,
    pub header_timeout_ms: u64,
    pub body_timeout_ms: u64,
    pub idle_timeout_ms: u64,
    pub request_timeout_ms: u64,
    pub max_body_bytes: usize,
}

/// Where the layers come from; [`Sources::from_process`] reads the real environment, tests
/// pass their own map so they never race on the process environment.
#[derive(Debug, Default, Clone)]
pub struct Sources {
    /// The environment variables to consider.
    pub env: HashMap<String, String>,
}

impl Sources {
    /// The process environment.
    pub fn from_process() -> Self {
        Self {
            env: std::env::vars().collect(),
        }
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.env
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }
}

impl Settings {
    /// Loads the settings from the process environment and files.
    pub fn load() -> Result<Self, SettingsError> {
        Self::load_from(&Sources::from_process())
    }

    /// Loads the settings from the given environment.
    pub fn load_from(sources: &Sources) -> Result<Self, SettingsError> {
        let mut builder =
            Config::builder().add_source(File::from_str(DEFAULT_TOML, FileFormat::Toml));
        if let Some(path) = sources.get("PIPELINE_CONFIG") {
            if !Path::new(path).is_file() {
                return Err(SettingsError::Source(format!(
                    "PIPELINE_CONFIG names `{path}`, which is not a readable file"
                )));
            }
            builder = builder.add_source(File::new(path, FileFormat::Toml).required(true));
        }
        let mut env = Environment::with_prefix("PIPELINE")
            .prefix_separator("__")
            .separator("__")
            .try_parsing(true)
            .list_separator(",")
            .source(Some(sources.env.clone()));
        for key in LIST_KEYS {
            env = env.with_list_parse_key(key);
        }
        builder = builder.add_source(env);
        for (var, key) in [("DATABASE_URL", "database.url"), ("REDIS_URL", "redis.url")] {
            if let Some(value) = sources.get(var) {
                builder = builder
                    .set_override(key, value)
                    .map_err(|e| SettingsError::Source(e.to_string()))?;
            }
        }
        let merged = builder
            .build()
            .map_err(|e| SettingsError::Source(e.to_string()))?;
        let value: config::Value = merged
            .try_deserialize()
            .map_err(|e| SettingsError::Source(e.to_string()))?;
        let settings: Settings = serde_path_to_error::deserialize(value).map_err(path_error)?;
        let origin = |var: &str, key: &str| {
            if sources.get(var).is_some() {
                format!("{key} (from {var})")
            } else {
                key.to_owned()
            }
        };
        check_url(
            &origin("DATABASE_URL", "database.url"),
            settings.database.url.expose_secret(),
            &["postgres", "postgresql"],
        )?;
        if settings.redis.cluster_nodes.is_empty() {
            check_url(
                &origin("REDIS_URL", "redis.url"),
                settings.redis.url.expose_secret(),
                REDIS_SCHEMES,
            )?;
        }
        for node in &settings.redis.cluster_nodes {
            check_url("redis.cluster_nodes", node.expose_secret(), REDIS_SCHEMES)?;
        }
        settings.validate()?;
        Ok(settings)
    }

    /// Whether `database.url` is the compiled-in default (nothing set `DATABASE_URL` or
    /// `database.url`): commands say so, since a default database is easy to use by mistake.
    pub fn database_url_is_default(&self) -> bool {
        default_database_url().is_some_and(|d| d == self.database.url.expose_secret())
    }

    /// The effective settings as TOML, every secret masked (passwords in URLs as `***`):
    /// what `--check-config` prints.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render settings: {e}\n"))
    }

    /// Rules that span keys or that types cannot express.
    fn validate(&self) -> Result<(), SettingsError> {
        let invalid = |key: &str, reason: String| {
            Err(SettingsError::InvalidValue {
                key: key.to_owned(),
                reason,
            })
        };
        if self.redis.response_timeout_ms <= self.queue.block_timeout_ms {
            return invalid(
                "redis.response_timeout_ms",
                format!(
                    "{} ms must exceed queue.block_timeout_ms ({} ms), or every blocking wait times out",
                    self.redis.response_timeout_ms, self.queue.block_timeout_ms
                ),
            );
        }
        if !(1..=pipeline_redis::MAX_SHARDS).contains(&self.queue.shards) {
            return invalid(
                "queue.shards",
                format!(
                    "{} is outside 1..={}",
                    self.queue.shards,
                    pipeline_redis::MAX_SHARDS
                ),
            );
        }
        if self.redis.pool_size < usize::from(self.queue.shards) {
            return invalid(
                "redis.pool_size",
                format!(
                    "{} is below queue.shards ({}): a waiting worker holds one connection per shard",
                    self.redis.pool_size, self.queue.shards
                ),
            );
        }
        let positive: &[(&str, u64)] = &[
            ("api.max_connections", self.api.max_connections as u64),
            ("api.header_timeout_ms", self.api.header_timeout_ms),
            ("api.body_timeout_ms", self.api.body_timeout_ms),
            ("api.idle_timeout_ms", self.api.idle_timeout_ms),
            ("api.request_timeout_ms", self.api.request_timeout_ms),
            ("api.max_body_bytes", self.api.max_body_bytes as u64),
            (
                "database.max_connections",
                self.database.max_connections.into(),
            ),
            ("redis.pool_size", self.redis.pool_size as u64),
            (
                "queue.visibility_timeout_secs",
                self.queue.visibility_timeout_secs,
            ),
            ("queue.reserve_batch", self.queue.reserve_batch as u64),
            ("queue.max_attempts", self.queue.max_attempts.into()),
            ("scrape.concurrency", self.scrape.concurrency as u64),
            ("scrape.max_body_bytes", self.scrape.max_body_bytes),
            ("render.browsers", self.render.browsers as u64),
            (
                "render.tabs_per_browser",
                self.render.tabs_per_browser as u64,
            ),
            ("render.page_timeout_ms", self.render.page_timeout_ms),
            ("render.settle_timeout_ms", self.render.settle_timeout_ms),
            ("render.max_page_memory_mb", self.render.max_page_memory_mb),
            ("render.max_page_bytes", self.render.max_page_bytes),
            (
                "render.recycle_after_pages",
                self.render.recycle_after_pages,
            ),
            (
                "crawl.sitemap_max_files",
                self.crawl.sitemap_max_files as u64,
            ),
            (
                "crawl.sitemap_max_file_bytes",
                self.crawl.sitemap_max_file_bytes,
            ),
            (
                "crawl.sitemap_max_unzipped_bytes",
                self.crawl.sitemap_max_unzipped_bytes,
            ),
            ("crawl.sitemap_max_urls", self.crawl.sitemap_max_urls as u64),
            ("crawl.sitemap_budget_secs", self.crawl.sitemap_budget_secs),
            ("crawl.schedule_check_secs", self.crawl.schedule_check_secs),
            ("extraction.concurrency", self.extraction.concurrency as u64),
            ("facts.concurrency", self.facts.concurrency as u64),
            ("webhooks.concurrency", self.webhooks.concurrency as u64),
            ("webhooks.timeout_ms", self.webhooks.timeout_ms),
            (
                "webhooks.relay_interval_ms",
                self.webhooks.relay_interval_ms,
            ),
            (
                "webhooks.reconcile_after_secs",
                self.webhooks.reconcile_after_secs,
            ),
            (
                "webhooks.max_response_bytes",
                self.webhooks.max_response_bytes as u64,
            ),
            (
                "facts.max_values_per_page",
                self.facts.max_values_per_page as u64,
            ),
            ("facts.llm.timeout_ms", self.facts.llm.timeout_ms),
            (
                "facts.llm.max_input_tokens",
                self.facts.llm.max_input_tokens.into(),
            ),
            (
                "facts.llm.max_output_tokens",
                self.facts.llm.max_output_tokens.into(),
            ),
            (
                "extraction.chunk_max_chars",
                self.extraction.chunk_max_chars as u64,
            ),
            ("embedding.batch_size", self.embedding.batch_size as u64),
            ("scrape.read_timeout_ms", self.scrape.read_timeout_ms),
            ("scrape.fetch_timeout_ms", self.scrape.fetch_timeout_ms),
            (
                "extraction.max_html_bytes",
                self.extraction.max_html_bytes as u64,
            ),
            ("extraction.max_chunks", self.extraction.max_chunks as u64),
            ("extraction.max_work_units", self.extraction.max_work_units),
            ("extraction.time_budget_ms", self.extraction.time_budget_ms),
            (
                "extraction.max_pdf_pages",
                self.extraction.max_pdf_pages as u64,
            ),
            (
                "extraction.max_pdf_decoded_bytes",
                self.extraction.max_pdf_decoded_bytes,
            ),
        ];
        for &(key, value) in positive {
            if value == 0 {
                return invalid(key, "must be greater than 0".into());
            }
        }
        for (key, entries) in [
            (
                "scrape.allow_private_hosts",
                &self.scrape.allow_private_hosts,
            ),
            (
                "webhooks.allow_private_hosts",
                &self.webhooks.allow_private_hosts,
            ),
        ] {
            for entry in entries {
                if let Err(reason) = crate::net::AllowEntry::parse(entry) {
                    return invalid(key, reason);
                }
            }
        }
        if self.extraction.max_abandoned == Some(0) {
            return invalid(
                "extraction.max_abandoned",
                "must be greater than 0 (unset, it equals extraction.concurrency)".into(),
            );
        }
        if self.extraction.chunk_overlap_chars >= self.extraction.chunk_max_chars {
            return invalid(
                "extraction.chunk_overlap_chars",
                "must be smaller than extraction.chunk_max_chars".into(),
            );
        }
        if self.embedding.hashing.dims == 0 {
            return invalid("embedding.hashing.dims", "must be greater than 0".into());
        }
        if self.embedding.openai.dims == 0 {
            return invalid("embedding.openai.dims", "must be greater than 0".into());
        }
        if self.embedding.minilm.max_tokens == 0 {
            return invalid(
                "embedding.minilm.max_tokens",
                "must be greater than 0".into(),
            );
        }
        if !["json_schema", "json_object", "none"]
            .contains(&self.facts.llm.response_format.as_str())
        {
            return invalid(
                "facts.llm.response_format",
                format!(
                    "`{}` is not one of json_schema, json_object, none",
                    self.facts.llm.response_format
                ),
            );
        }
        check_url("facts.llm.url", &self.facts.llm.url, &["http", "https"])?;
        if self.api.bind.parse::<std::net::SocketAddr>().is_err() {
            return invalid(
                "api.bind",
                format!("`{}` is not an address:port", self.api.bind),
            );
        }
        Ok(())
    }

    /// The API key: `PIPELINE_API_KEY`, else the content of `api.key_file`, else none.
    pub fn api_key(&self, sources: &Sources) -> Result<Option<SecretString>, SettingsError> {
        secret_from(
            sources,
            "PIPELINE_API_KEY",
            &self.api.key_file,
            "api.key_file",
        )
    }

    /// The embedding API key: `PIPELINE_EMBEDDING_API_KEY`, else `embedding.openai.api_key_file`.
    pub fn embedding_api_key(
        &self,
        sources: &Sources,
    ) -> Result<Option<SecretString>, SettingsError> {
        secret_from(
            sources,
            "PIPELINE_EMBEDDING_API_KEY",
            &self.embedding.openai.api_key_file,
            "embedding.openai.api_key_file",
        )
    }

    /// The chat model server's API key: `PIPELINE_LLM_API_KEY`, else `facts.llm.api_key_file`.
    pub fn llm_api_key(&self, sources: &Sources) -> Result<Option<SecretString>, SettingsError> {
        secret_from(
            sources,
            "PIPELINE_LLM_API_KEY",
            &self.facts.llm.api_key_file,
            "facts.llm.api_key_file",
        )
    }

    /// The database password from `database.password_file`, when set.
    pub fn database_password(&self) -> Result<Option<SecretString>, SettingsError> {
        secret_from(
            &Sources::default(),
            "",
            &self.database.password_file,
            "database.password_file",
        )
    }

    /// The Redis Cluster's seed node URLs, empty for a single Redis (exposed for the pool
    /// builder only).
    pub fn redis_cluster_nodes(&self) -> Vec<String> {
        self.redis
            .cluster_nodes
            .iter()
            .map(|n| n.expose_secret().to_owned())
            .collect()
    }

    /// The Redis URL (exposed for the pool builder only).
    pub fn redis_url(&self) -> &str {
        self.redis.url.expose_secret()
    }
}

fn secret_from(
    sources: &Sources,
    var: &str,
    file: &str,
    file_key: &str,
) -> Result<Option<SecretString>, SettingsError> {
    if let Some(value) = sources.get(var) {
        return Ok(Some(SecretString::from(value.trim().to_owned())));
    }
    if file.is_empty() {
        return Ok(None);
    }
    let path = PathBuf::from(file);
    let text = std::fs::read_to_string(&path).map_err(|e| SettingsError::InvalidValue {
        key: file_key.to_owned(),
        reason: format!("cannot read `{}`: {e}", path.display()),
    })?;
    Ok(Some(SecretString::from(text.trim().to_owned())))
}

/// Turns a deserialisation error into one that names the full dotted key.
fn path_error(err: serde_path_to_error::Error<config::ConfigError>) -> SettingsError {
    let path = err.path().to_string();
    let message = err.inner().to_string();
    if let Some(rest) = message.strip_prefix("unknown field `")
        && let Some((field, hint)) = rest.split_once('`')
    {
        let key = if path.is_empty() || path == "." {
            field.to_owned()
        } else if path == field || path.ends_with(&format!(".{field}")) {
            path.clone()
        } else {
            format!("{path}.{field}")
        };
        let hint = strip_key_suffix(hint.trim_start_matches(',').trim());
        let hint = if hint.is_empty() {
            String::new()
        } else {
            format!(" ({hint})")
        };
        return SettingsError::UnknownKey { key, hint };
    }
    SettingsError::InvalidValue {
        reason: strip_key_suffix(&message).to_owned(),
        key: path,
    }
}

/// The config crate appends " for key `x`" to its messages; ours name the key already.
fn strip_key_suffix(message: &str) -> &str {
    match message.rfind(" for key `") {
        Some(i) => &message[..i],
        None => message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Sources {
        Sources {
            env: pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    #[test]
    fn defaults_load() {
        let s = Settings::load_from(&env(&[])).unwrap();
        assert_eq!(s.scrape.concurrency, 16);
        assert_eq!(s.api.bind, "127.0.0.1:8742");
        assert_eq!(s.telemetry.format, LogFormat::Human);
    }

    #[test]
    fn unknown_key_is_named() {
        let err = Settings::load_from(&env(&[("PIPELINE__DATABASE__NOPE", "1")])).unwrap_err();
        assert!(err.to_string().contains("database.nope"), "{err}");
    }

    #[test]
    fn bad_value_is_named() {
        let err =
            Settings::load_from(&env(&[("PIPELINE__SCRAPE__CONCURRENCY", "lots")])).unwrap_err();
        assert!(err.to_string().contains("scrape.concurrency"), "{err}");
    }

    #[test]
    fn allow_lists_take_ports_and_refuse_bad_entries_at_load() {
        let s = Settings::load_from(&env(&[(
            "PIPELINE__SCRAPE__ALLOW_PRIVATE_HOSTS",
            "127.0.0.1:8080,[::1]:8080,localhost",
        )]))
        .unwrap();
        assert_eq!(
            s.scrape.allow_private_hosts,
            ["127.0.0.1:8080", "[::1]:8080", "localhost"]
        );
        for (key, value) in [
            ("PIPELINE__SCRAPE__ALLOW_PRIVATE_HOSTS", "127.0.0.1:99999"),
            ("PIPELINE__WEBHOOKS__ALLOW_PRIVATE_HOSTS", "localhost:http"),
        ] {
            let err = Settings::load_from(&env(&[(key, value)])).unwrap_err();
            let text = err.to_string();
            assert!(text.contains("allow_private_hosts"), "{text}");
            assert!(text.contains("is not a number from 1 to 65535"), "{text}");
        }
    }

    #[test]
    fn secrets_are_redacted_in_debug() {
        let s = Settings::load_from(&env(&[(
            "DATABASE_URL",
            "postgres://u:hunter2@127.0.0.1/db",
        )]))
        .unwrap();
        assert!(!format!("{s:?}").contains("hunter2"));
        assert_eq!(
            s.database.url.expose_secret(),
            "postgres://u:hunter2@127.0.0.1/db"
        );
    }

    #[test]
    fn cluster_nodes_default_empty_and_come_from_the_environment_as_a_list() {
        let s = Settings::load_from(&env(&[])).unwrap();
        assert!(s.redis_cluster_nodes().is_empty());
        let s = Settings::load_from(&env(&[(
            "PIPELINE__REDIS__CLUSTER_NODES",
            "redis://:pw@10.0.0.1:7000,redis://:pw@10.0.0.2:7001",
        )]))
        .unwrap();
        assert_eq!(
            s.redis_cluster_nodes(),
            ["redis://:pw@10.0.0.1:7000", "redis://:pw@10.0.0.2:7001"]
        );
        assert!(!format!("{s:?}").contains(":pw@"));
    }
}

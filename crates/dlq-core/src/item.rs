//! The DLQ item, how it is stored, and how stored entries are read back (malformed ones
//! included).

use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{DlqError, Result};

/// Whether retrying can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// Timeouts, connection errors, 5xx, 429...: redriven automatically under the policy.
    Transient,
    /// Invalid input, 4xx, unsupported content...: waits for a person. Also the default for
    /// entries written without a kind (the original service's items), since redriving those
    /// blindly could loop.
    #[default]
    Permanent,
}

impl ErrorKind {
    /// `"transient"` or `"permanent"`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Transient => "transient",
            ErrorKind::Permanent => "permanent",
        }
    }
}

/// One dead-lettered message: a JSON superset of the original service's
/// `{id, source_id, job_id, error, failed_at, retry_count, dlq_type}`.
///
/// Only `id`, `error` and `failed_at` are required when reading, so entries written by older
/// producers still parse. `parked`/`parked_at` are state owned by the DLQ: whatever a
/// producer sets there is ignored, and reads fill them from the parked index.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DlqItem {
    /// Message id (the pipeline uses the source id); unique within a family's DLQ.
    pub id: String,
    /// The source the message was about.
    #[serde(default)]
    pub source_id: Option<Uuid>,
    /// The job that created the source.
    #[serde(default)]
    pub job_id: Option<Uuid>,
    /// The last error, as text.
    pub error: String,
    /// When the last attempt failed (RFC 3339, UTC).
    pub failed_at: DateTime<Utc>,
    /// How many times the message has already come back from the DLQ.
    #[serde(default)]
    pub retry_count: u32,
    /// The queue family (`scrape`, `extraction`...).
    #[serde(default)]
    pub dlq_type: String,
    /// Transient or permanent.
    #[serde(default)]
    pub error_kind: ErrorKind,
    /// Failed attempts in the message's last life.
    #[serde(default)]
    pub attempts: u32,
    /// Whether automatic redrive gave up (or a person parked it).
    #[serde(default)]
    pub parked: bool,
    /// When it was parked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parked_at: Option<DateTime<Utc>>,
    /// The worker that gave up on it.
    #[serde(default)]
    pub worker_id: Option<String>,
    /// The work message body; a redrive enqueues exactly this.
    #[serde(default)]
    pub payload: serde_json::Value,
}

impl DlqItem {
    /// A new item failing now, with zero counts and no ids; set the other fields directly.
    pub fn new(
        id: impl Into<String>,
        dlq_type: impl Into<String>,
        error: impl Into<String>,
        error_kind: ErrorKind,
        payload: serde_json::Value,
    ) -> Self {
        Self {
            id: id.into(),
            source_id: None,
            job_id: None,
            error: error.into(),
            failed_at: Utc::now(),
            retry_count: 0,
            dlq_type: dlq_type.into(),
            error_kind,
            attempts: 0,
            parked: false,
            parked_at: None,
            worker_id: None,
            payload,
        }
    }

    /// The arguments of the Lua `dlq_push` function for this item (see
    /// [`crate::LUA_PUSH_FN`]).
    pub fn encode(&self) -> Result<EncodedItem> {
        if self.id.is_empty() {
            return Err(DlqError::InvalidArgument("item id is empty".into()));
        }
        let mut value = serde_json::to_value(self)?;
        if let Some(map) = value.as_object_mut() {
            // Stored apart (payload, kept byte for byte for the redrive) or owned by the
            // DLQ's indexes (parked state).
            map.remove("payload");
            map.remove("parked");
            map.remove("parked_at");
        }
        Ok(EncodedItem {
            id: self.id.clone(),
            item_json: serde_json::to_string(&value)?,
            payload: serde_json::to_string(&self.payload)?,
            failed_at_ms: self.failed_at.timestamp_millis(),
            retry_count: self.retry_count,
            transient: self.error_kind == ErrorKind::Transient,
        })
    }
}

/// An item encoded for the Lua `dlq_push(tag, id, item_json, payload, failed_at_ms,
/// retry_count, transient, max_items)` function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedItem {
    /// Item id.
    pub id: String,
    /// The item as JSON, without `payload`, `parked` and `parked_at`.
    pub item_json: String,
    /// The payload as JSON text (the message body a redrive enqueues).
    pub payload: String,
    /// `failed_at` in ms since the epoch.
    pub failed_at_ms: i64,
    /// Redrives so far.
    pub retry_count: u32,
    /// Whether the error is transient (goes into the `due` index).
    pub transient: bool,
}

impl EncodedItem {
    /// The `dlq_push` arguments after `tag`, as strings, in order: `id, item_json, payload,
    /// failed_at_ms, retry_count, transient ("1"/"0"), max_items ("0" = unlimited)`.
    pub fn push_argv(&self, max_items: Option<u64>) -> [String; 7] {
        [
            self.id.clone(),
            self.item_json.clone(),
            self.payload.clone(),
            self.failed_at_ms.to_string(),
            self.retry_count.to_string(),
            if self.transient { "1" } else { "0" }.to_owned(),
            max_items.unwrap_or(0).to_string(),
        ]
    }
}

/// A stored entry that could not be parsed: reported with its raw text, never dropped.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct MalformedItem {
    /// Item id.
    pub id: String,
    /// The stored item text (`None` when the index names an id whose entry is missing).
    pub raw: Option<String>,
    /// Why it could not be parsed.
    pub reason: String,
}

impl Serialize for MalformedItem {
    // Adds `"malformed": true` so a JSON consumer can tell these apart from real items.
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("MalformedItem", 4)?;
        st.serialize_field("id", &self.id)?;
        st.serialize_field("malformed", &true)?;
        st.serialize_field("raw", &self.raw)?;
        st.serialize_field("reason", &self.reason)?;
        st.end()
    }
}

impl From<MalformedItem> for DlqError {
    fn from(m: MalformedItem) -> Self {
        DlqError::Malformed {
            id: m.id,
            raw: m.raw,
            reason: m.reason,
        }
    }
}

/// One entry of a listing: an item, or a stored entry that cannot be parsed.
///
/// Serializes as the item itself, or as `{"id", "malformed": true, "raw", "reason"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ListedItem {
    /// A well-formed item.
    Ok(DlqItem),
    /// An entry that cannot be parsed.
    Malformed(MalformedItem),
}

impl ListedItem {
    /// The id, whichever variant.
    pub fn id(&self) -> &str {
        match self {
            ListedItem::Ok(item) => &item.id,
            ListedItem::Malformed(m) => &m.id,
        }
    }

    /// The item, if well-formed.
    pub fn item(&self) -> Option<&DlqItem> {
        match self {
            ListedItem::Ok(item) => Some(item),
            ListedItem::Malformed(_) => None,
        }
    }

    /// The item, or the malformed entry as an error.
    pub fn into_result(self) -> Result<DlqItem> {
        match self {
            ListedItem::Ok(item) => Ok(item),
            ListedItem::Malformed(m) => Err(m.into()),
        }
    }
}

/// The stored fields of one item as the scripts return them.
#[derive(Debug, Clone, Default)]
pub(crate) struct StoredFields {
    pub id: String,
    pub item: Option<String>,
    pub payload: Option<String>,
    pub parked_at: Option<String>,
}

impl StoredFields {
    /// Parses the stored entry; anything unparsable becomes [`ListedItem::Malformed`].
    pub fn decode(self) -> ListedItem {
        let malformed = |raw: Option<String>, reason: String| {
            ListedItem::Malformed(MalformedItem {
                id: self.id.clone(),
                raw,
                reason,
            })
        };
        let Some(raw) = self.item else {
            return malformed(
                None,
                "the index names this id but its entry is missing".into(),
            );
        };
        let mut item: DlqItem = match serde_json::from_str(&raw) {
            Ok(item) => item,
            Err(e) => return malformed(Some(raw), format!("item is not a valid DLQ item: {e}")),
        };
        item.payload = match self.payload.as_deref().map(serde_json::from_str) {
            Some(Ok(payload)) => payload,
            Some(Err(e)) => return malformed(Some(raw), format!("payload is not JSON: {e}")),
            None => return malformed(Some(raw), "payload is missing".into()),
        };
        item.parked_at = self
            .parked_at
            .as_deref()
            .and_then(|ms| ms.parse::<i64>().ok())
            .and_then(|ms| Utc.timestamp_millis_opt(ms).single());
        item.parked = item.parked_at.is_some();
        ListedItem::Ok(item)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn original_service_items_parse_with_defaults() {
        let raw = r#"{"id":"a","source_id":null,"job_id":null,"error":"boom",
            "failed_at":"2024-01-02T03:04:05Z","retry_count":2,"dlq_type":"scrape"}"#;
        let listed = StoredFields {
            id: "a".into(),
            item: Some(raw.into()),
            payload: Some("null".into()),
            parked_at: None,
        }
        .decode();
        let item = listed.into_result().unwrap();
        assert_eq!(item.retry_count, 2);
        assert_eq!(item.error_kind, ErrorKind::Permanent);
        assert!(!item.parked);
    }

    #[test]
    fn encode_keeps_payload_apart_and_round_trips() {
        let mut item = DlqItem::new(
            "x",
            "scrape",
            "timeout",
            ErrorKind::Transient,
            serde_json::json!({"n": [], "big": 12345678901234567u64}),
        );
        item.parked = true;
        let enc = item.encode().unwrap();
        assert!(!enc.item_json.contains("payload"));
        assert!(!enc.item_json.contains("parked"));
        assert!(enc.transient);
        let back = StoredFields {
            id: "x".into(),
            item: Some(enc.item_json),
            payload: Some(enc.payload),
            parked_at: Some("1700000000000".into()),
        }
        .decode()
        .into_result()
        .unwrap();
        assert_eq!(back.payload, item.payload);
        assert!(back.parked);
        assert_eq!(
            back.parked_at.unwrap().timestamp_millis(),
            1_700_000_000_000
        );
    }

    #[test]
    fn malformed_serializes_with_a_marker_and_round_trips() {
        let listed = StoredFields {
            id: "bad".into(),
            item: Some("{not json".into()),
            payload: None,
            parked_at: None,
        }
        .decode();
        let json = serde_json::to_value(&listed).unwrap();
        assert_eq!(json["malformed"], true);
        assert_eq!(json["raw"], "{not json");
        let back: ListedItem = serde_json::from_value(json).unwrap();
        assert_eq!(back, listed);
    }
}

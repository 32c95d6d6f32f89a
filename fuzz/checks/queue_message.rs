//! A stored queue message body (any bytes) decoded as the worker runner does: body text,
//! JSON, the work message type; and as a DLQ item. What decodes must encode back to
//! the same message.
//!
//! Shared by the fuzz target of the same name and by the test that replays the kept inputs
//! (`fuzz/corpus-regressions/queue_message/`), so the two cannot check different things.

use dlq_core::DlqItem;
use pipeline_ops::messages::SourceMessage;
use work_queue::Delivery;

/// Runs one input through the steps and checks; panics on a broken invariant.
pub fn check(data: &[u8]) {
    let body = Delivery::body_from_stored(data.to_vec());
    if let Ok(s) = std::str::from_utf8(data) {
        assert_eq!(body, s);
    }
    let delivery = Delivery {
        id: "00000000-0000-0000-0000-000000000001".into(),
        token: 1,
        body,
        deliveries: 1,
        attempts: 0,
        redrives: 0,
        shard: 0,
    };
    let _ = delivery.json();
    if let Ok(msg) = delivery.parse::<SourceMessage>() {
        let again: SourceMessage =
            serde_json::from_value(msg.body()).expect("an encoded message decodes");
        assert_eq!(again, msg);
        assert_eq!(msg.id(), msg.source_id.to_string());
    }
    if let Ok(item) = serde_json::from_str::<DlqItem>(&delivery.body)
        && let Ok(encoded) = item.encode()
    {
        let mut back: DlqItem =
            serde_json::from_str(&encoded.item_json).expect("an encoded item decodes");
        back.payload = serde_json::from_str(&encoded.payload).expect("an encoded payload decodes");
        back.parked = item.parked;
        back.parked_at = item.parked_at;
        assert_eq!(back, item);
    }
}

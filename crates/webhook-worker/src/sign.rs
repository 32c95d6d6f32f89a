//! Signatures: HMAC-SHA256 over `"{timestamp}.{body}"` with the endpoint's secret, sent as
//! `Pipeline-Signature: t={timestamp},v1={hex}` (the scheme of Stripe's signatures; GitHub's
//! `X-Hub-Signature-256` is the same MAC without the timestamp). The timestamp in the MAC
//! lets a receiver refuse replays older than its tolerance.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The signature header's name.
pub const SIGNATURE_HEADER: &str = "Pipeline-Signature";
/// The header carrying the delivery id (the idempotency id).
pub const DELIVERY_HEADER: &str = "Pipeline-Delivery";
/// The header carrying the event type.
pub const EVENT_HEADER: &str = "Pipeline-Event";
/// The header carrying the signing time, in seconds since the Unix epoch.
pub const TIMESTAMP_HEADER: &str = "Pipeline-Timestamp";

/// The hex HMAC-SHA256 of `"{timestamp}.{body}"` under `secret`.
pub fn mac_hex(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let bytes = mac.finalize().into_bytes();
    let mut hex = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        hex.push_str(&format!("{b:02x}"));
    }
    hex
}

/// The `Pipeline-Signature` value.
pub fn signature(secret: &str, timestamp: i64, body: &[u8]) -> String {
    format!("t={timestamp},v1={}", mac_hex(secret, timestamp, body))
}

/// Checks a `Pipeline-Signature` value as a receiver would: the `v1` MAC matches and the
/// timestamp is within `tolerance_secs` of `now`. In constant time over the MAC.
pub fn verify(secret: &str, header: &str, body: &[u8], now: i64, tolerance_secs: i64) -> bool {
    let mut t = None;
    let mut v1 = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = v.parse::<i64>().ok(),
            Some(("v1", v)) => v1.push(v.to_owned()),
            _ => {}
        }
    }
    let Some(t) = t else { return false };
    if (now - t).abs() > tolerance_secs {
        return false;
    }
    let expected = mac_hex(secret, t, body);
    v1.iter().any(|got| {
        got.len() == expected.len()
            && got
                .bytes()
                .zip(expected.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The MAC of RFC 4231's test case 2 ("Jefe"), with this scheme's input.
    #[test]
    fn the_mac_is_hmac_sha256_of_timestamp_dot_body() {
        // HMAC-SHA256("Jefe", "what do ya want for nothing?") from RFC 4231, split so
        // the timestamp and the dot are part of the message.
        let mut mac = Hmac::<Sha256>::new_from_slice(b"Jefe").unwrap();
        mac.update(b"what do ya want for nothing?");
        let reference: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            reference,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // Same key, message "1.x": the scheme's concatenation.
        let mut mac = Hmac::<Sha256>::new_from_slice(b"Jefe").unwrap();
        mac.update(b"1.x");
        let direct: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(mac_hex("Jefe", 1, b"x"), direct);
    }

    #[test]
    fn a_signature_verifies_and_a_changed_body_key_or_old_time_does_not() {
        let body = br#"{"id":"d1","type":"job.completed"}"#;
        let h = signature("whsec_1", 1_700_000_000, body);
        assert!(h.starts_with("t=1700000000,v1="));
        assert!(verify("whsec_1", &h, body, 1_700_000_100, 300));
        assert!(!verify("whsec_2", &h, body, 1_700_000_100, 300));
        assert!(!verify("whsec_1", &h, b"{}", 1_700_000_100, 300));
        assert!(!verify("whsec_1", &h, body, 1_700_001_000, 300));
        assert!(!verify("whsec_1", "v1=abc", body, 1_700_000_000, 300));
    }
}

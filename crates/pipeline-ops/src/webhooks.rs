//! Webhook endpoints and deliveries as the API, the CLI and the console manage them: input
//! parsed once into checked values, secrets generated, and replays that go through the DLQ
//! when the delivery is there.

use std::net::IpAddr;

use pipeline_core::net::{AllowEntry, AllowedHost};
use pipeline_store::Actor;
use pipeline_store::webhooks::{self, EVENT_TYPES, Endpoint, EndpointPatch, NewEndpoint};
use url::{Host, Url};
use uuid::Uuid;

use crate::dlq_ops::{self, DlqOpError};
use crate::messages::DeliveryMessage;
use crate::{Family, Services};

/// Longest endpoint URL accepted.
pub const MAX_URL_LEN: usize = 2048;
/// Longest description accepted.
pub const MAX_DESCRIPTION_LEN: usize = 500;
/// Shortest and longest secret a user may choose (generated ones are 64 hex digits).
pub const SECRET_LEN: std::ops::RangeInclusive<usize> = 16..=256;

/// Input that cannot make an endpoint; the message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct InvalidEndpoint {
    /// The field at fault (`url`, `events`, `secret`, `description`).
    pub field: &'static str,
    /// What is wrong.
    pub reason: String,
}

fn invalid(field: &'static str, reason: impl Into<String>) -> InvalidEndpoint {
    InvalidEndpoint {
        field,
        reason: reason.into(),
    }
}

/// Parses an endpoint URL: `http` or `https`, a host, no credentials, and, when the host is
/// an address, a public one unless `allow_private_hosts` lists it (a name is checked where
/// it is resolved, at every delivery, by the same guard as page fetches).
pub fn parse_url(raw: &str, allow_private_hosts: &[String]) -> Result<Url, InvalidEndpoint> {
    if raw.len() > MAX_URL_LEN {
        return Err(invalid("url", format!("longer than {MAX_URL_LEN} bytes")));
    }
    let url = Url::parse(raw.trim()).map_err(|e| invalid("url", format!("not a URL ({e})")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid(
            "url",
            format!("scheme `{}` is not http or https", url.scheme()),
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid(
            "url",
            "credentials in the URL are not accepted (the secret signs every delivery)",
        ));
    }
    let ip = match url.host() {
        None => return Err(invalid("url", "no host")),
        Some(Host::Domain(_)) => None,
        Some(Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
        Some(Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
    };
    if let Some(ip) = ip {
        // An entry allows the address on any port, or on the one it names (`127.0.0.1:9000`).
        let port = url.port_or_known_default();
        let allowed = allow_private_hosts.iter().any(|h| {
            AllowEntry::parse(h).is_ok_and(|e| {
                e.host == AllowedHost::Ip(ip) && (e.port.is_none() || e.port == port)
            })
        });
        if !pipeline_core::net::is_public(ip) && !allowed {
            return Err(invalid(
                "url",
                format!(
                    "{ip} is not a public address (an operator may allow it in webhooks.allow_private_hosts)"
                ),
            ));
        }
    }
    Ok(url)
}

/// Parses an event list: at least one, each a known type, duplicates dropped, in the
/// catalogue's order.
pub fn parse_events(raw: &[String]) -> Result<Vec<String>, InvalidEndpoint> {
    if raw.is_empty() {
        return Err(invalid(
            "events",
            format!("at least one of: {}", EVENT_TYPES.join(", ")),
        ));
    }
    if let Some(bad) = raw.iter().find(|e| !EVENT_TYPES.contains(&e.as_str())) {
        return Err(invalid(
            "events",
            format!(
                "unknown event `{bad}` (expected: {})",
                EVENT_TYPES.join(", ")
            ),
        ));
    }
    Ok(EVENT_TYPES
        .iter()
        .filter(|t| raw.iter().any(|e| e == *t))
        .map(|t| (*t).to_owned())
        .collect())
}

fn check_secret(secret: &str) -> Result<(), InvalidEndpoint> {
    // At least 16 characters as well as 16 bytes: the API documents the bound as a string
    // length (characters), and a shorter secret must not pass because its characters are wide.
    if !SECRET_LEN.contains(&secret.len()) || secret.chars().count() < *SECRET_LEN.start() {
        return Err(invalid(
            "secret",
            format!(
                "must be {} to {} bytes long (at least {} characters)",
                SECRET_LEN.start(),
                SECRET_LEN.end(),
                SECRET_LEN.start()
            ),
        ));
    }
    if secret.chars().any(char::is_control) {
        return Err(invalid("secret", "must not contain control characters"));
    }
    Ok(())
}

fn check_description(d: &str) -> Result<(), InvalidEndpoint> {
    // Postgres text cannot hold NUL: refused here, not as a database error.
    if d.contains('\0') {
        return Err(invalid("description", "must not contain NUL characters"));
    }
    if d.chars().count() > MAX_DESCRIPTION_LEN {
        return Err(invalid(
            "description",
            format!("longer than {MAX_DESCRIPTION_LEN} characters"),
        ));
    }
    Ok(())
}

/// A new secret: `whsec_` and 64 hex digits, 256 random bits from the system's generator
/// (the fully random digits of v4 UUIDs: 30 of each one's 32; the version digit and the
/// variant digit are left out).
pub fn generate_secret() -> String {
    let mut digits = String::with_capacity(64);
    while digits.len() < 64 {
        let u = Uuid::new_v4().simple().to_string();
        digits.extend(
            u.chars()
                .enumerate()
                .filter(|(i, _)| *i != 12 && *i != 16)
                .map(|(_, c)| c),
        );
    }
    digits.truncate(64);
    format!("whsec_{digits}")
}

/// What registering an endpoint takes, unchecked.
#[derive(Debug, Clone, Default)]
pub struct EndpointInput {
    pub url: String,
    pub events: Vec<String>,
    /// `None`: one is generated.
    pub secret: Option<String>,
    pub description: Option<String>,
}

/// A registered endpoint and its secret (shown once, at creation).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Created {
    #[serde(flatten)]
    pub endpoint: Endpoint,
    pub secret: String,
}

/// Why an endpoint operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WebhookError {
    /// The input is invalid.
    #[error(transparent)]
    Invalid(#[from] InvalidEndpoint),
    /// Postgres failed.
    #[error(transparent)]
    Store(#[from] pipeline_store::StoreError),
    /// The DLQ refused a redrive.
    #[error(transparent)]
    Dlq(#[from] DlqOpError),
    /// The queue refused.
    #[error(transparent)]
    Queue(#[from] work_queue::QueueError),
}

/// Registers an endpoint for `project_id` (which the caller has found).
pub async fn create(
    services: &Services,
    project_id: Uuid,
    input: &EndpointInput,
) -> Result<Created, WebhookError> {
    let url = parse_url(&input.url, &services.settings.webhooks.allow_private_hosts)?;
    let events = parse_events(&input.events)?;
    let secret = match &input.secret {
        Some(s) => {
            check_secret(s)?;
            s.clone()
        }
        None => generate_secret(),
    };
    let description = input.description.clone().unwrap_or_default();
    check_description(&description)?;
    let endpoint = webhooks::create_endpoint(
        &services.db,
        &NewEndpoint {
            project_id,
            url: url.as_str(),
            events: &events,
            secret: &secret,
            description: &description,
        },
    )
    .await?;
    Ok(Created { endpoint, secret })
}

/// Changes to an endpoint, unchecked; `None` keeps the field.
#[derive(Debug, Clone, Default)]
pub struct EndpointChange {
    pub url: Option<String>,
    pub events: Option<Vec<String>>,
    pub secret: Option<String>,
    pub description: Option<String>,
    pub enabled: Option<bool>,
}

/// Changes an endpoint; `Ok(None)` when there is none with that id.
pub async fn update(
    services: &Services,
    id: Uuid,
    change: &EndpointChange,
) -> Result<Option<Endpoint>, WebhookError> {
    let url = change
        .url
        .as_deref()
        .map(|u| parse_url(u, &services.settings.webhooks.allow_private_hosts))
        .transpose()?;
    let events = change.events.as_deref().map(parse_events).transpose()?;
    if let Some(s) = &change.secret {
        check_secret(s)?;
    }
    if let Some(d) = &change.description {
        check_description(d)?;
    }
    Ok(webhooks::update_endpoint(
        &services.db,
        id,
        &EndpointPatch {
            url: url.as_ref().map(Url::as_str),
            events: events.as_deref(),
            secret: change.secret.as_deref(),
            description: change.description.as_deref(),
            enabled: change.enabled,
        },
    )
    .await?)
}

/// What a replay did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Replay {
    /// No such delivery.
    NotFound,
    /// A delivered or cancelled delivery is pending again (same id).
    Replayed,
    /// A dead-lettered or parked delivery was redriven from the `webhooks` DLQ.
    Redriven,
    /// The delivery is still pending: it is on its way already.
    AlreadyPending,
}

/// Sends a delivery again with the same id: from the DLQ when it is there (dead-lettered or
/// parked), else by making a finished one pending again.
pub async fn replay(services: &Services, id: Uuid, actor: Actor) -> Result<Replay, WebhookError> {
    let Some(d) = webhooks::get_delivery(&services.db, id).await? else {
        return Ok(Replay::NotFound);
    };
    match d.delivery.status.as_str() {
        "pending" => Ok(Replay::AlreadyPending),
        "dead_lettered" | "parked" => {
            match dlq_ops::retry(services, Family::Webhooks, &id.to_string(), actor).await? {
                Some(_) => Ok(Replay::Redriven),
                // Not in the DLQ (Redis lost it, or a redrive just took it): send it anew.
                None => {
                    webhooks::mark(
                        &services.db,
                        webhooks::Mark::Redriven,
                        &[id],
                        &[None],
                        actor,
                    )
                    .await?;
                    requeue(services, id).await?;
                    Ok(Replay::Redriven)
                }
            }
        }
        _ => match webhooks::replay(&services.db, id, actor).await? {
            Some(true) => Ok(Replay::Replayed),
            Some(false) => Ok(Replay::AlreadyPending),
            None => Ok(Replay::NotFound),
        },
    }
}

/// Puts a pending delivery on the queue now (the relay would, within its interval).
async fn requeue(services: &Services, id: Uuid) -> Result<(), WebhookError> {
    let m = DeliveryMessage { delivery_id: id };
    services
        .queue(Family::Webhooks)
        .enqueue(&m.id(), &m.body())
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_like_page_urls() {
        let none: Vec<String> = vec![];
        assert!(parse_url("https://hooks.example.com/in", &none).is_ok());
        for (bad, says) in [
            ("ftp://example.com/", "scheme"),
            ("not a url", "not a URL"),
            ("https://user:pw@example.com/", "credentials"),
            ("http://127.0.0.1:9000/", "not a public address"),
            ("http://[::1]/", "not a public address"),
            ("http://169.254.169.254/latest", "not a public address"),
            ("http://10.0.0.7/", "not a public address"),
        ] {
            let e = parse_url(bad, &none).unwrap_err();
            assert_eq!(e.field, "url");
            assert!(e.reason.contains(says), "{bad}: {e}");
        }
        assert!(parse_url("http://127.0.0.1:9000/", &["127.0.0.1".into()]).is_ok());
        // An entry with a port allows that port only.
        assert!(parse_url("http://127.0.0.1:9000/", &["127.0.0.1:9000".into()]).is_ok());
        assert!(parse_url("http://[::1]:9000/", &["[::1]:9000".into()]).is_ok());
        assert!(parse_url("http://[::1]:9000/", &["[::1]".into()]).is_ok());
        assert!(parse_url("http://127.0.0.1:9001/", &["127.0.0.1:9000".into()]).is_err());
        assert!(parse_url("http://127.0.0.1/", &["127.0.0.1:9000".into()]).is_err());
        assert!(parse_url(&format!("https://e.com/{}", "a".repeat(3000)), &none).is_err());
    }

    #[test]
    fn events_are_known_and_deduplicated_in_catalogue_order() {
        let e = parse_events(&[
            "item.parked".into(),
            "job.completed".into(),
            "item.parked".into(),
        ])
        .unwrap();
        assert_eq!(e, ["job.completed", "item.parked"]);
        assert!(
            parse_events(&[])
                .unwrap_err()
                .reason
                .contains("at least one")
        );
        let bad = parse_events(&["job.done".into()]).unwrap_err();
        assert!(bad.reason.contains("unknown event `job.done`"), "{bad}");
    }

    #[test]
    fn secrets_are_generated_long_and_distinct_and_checked() {
        let a = generate_secret();
        let b = generate_secret();
        assert_ne!(a, b);
        assert_eq!(a.len(), "whsec_".len() + 64);
        assert!(check_secret("short").is_err());
        assert!(check_secret(&"x".repeat(300)).is_err());
        assert!(check_secret("a-long-enough-secret").is_ok());
        assert!(check_secret("a-long-enough\nsecret").is_err());
    }
}

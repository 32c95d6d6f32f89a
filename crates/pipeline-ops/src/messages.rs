//! The work messages carried by the queues. The message id is the source id (a delivery's
//! id for the `webhooks` family), so a source is in one family's queue at most once.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use pipeline_core::render::RenderMode;
pub use pipeline_runner::WorkMessage;
pub use work_queue::{Lane, Priority};

/// A unit of work about one source, for either family.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceMessage {
    /// The source to process.
    pub source_id: Uuid,
    /// The job on whose behalf it runs (the latest job that asked for it).
    pub job_id: Option<Uuid>,
    /// The source's URL, when the sender had it at hand: the scrape worker then starts the
    /// fetch while it records `started` instead of after. The source row stays the truth (a
    /// URL that differs from the row's is not fetched); messages without it still work.
    /// Messages written before the field was named `url` carry it as `uri`.
    #[serde(default, alias = "uri", skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The source's project: the message's lane in every family, so projects share the
    /// workers fairly (messages without it wait in the default lane).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_id: Option<Uuid>,
    /// The job's priority within its project; each stage passes it on.
    #[serde(default, skip_serializing_if = "is_normal")]
    pub priority: Priority,
    /// Whether the scrape worker renders the page in a headless browser, as the job asked
    /// (`jobs.render`); `None`: the job did not say, and the worker's `render.default`
    /// applies. Each stage passes it on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub render: Option<RenderMode>,
}

fn is_normal(p: &Priority) -> bool {
    *p == Priority::Normal
}

impl WorkMessage for SourceMessage {
    fn source_id(&self) -> Uuid {
        self.source_id
    }

    fn job_id(&self) -> Option<Uuid> {
        self.job_id
    }

    fn url(&self) -> Option<&str> {
        self.url.as_deref()
    }
}

impl SourceMessage {
    /// The queue message id.
    pub fn id(&self) -> String {
        self.source_id.to_string()
    }

    /// The queue message body.
    pub fn body(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("a SourceMessage always serialises")
    }

    /// The queue lane: the project (the default lane without one) at the job's priority.
    pub fn lane(&self) -> Lane {
        lane_of(self.project_id, self.priority)
    }

    /// The message for the same source, job, project, priority and render mode in the next
    /// stage.
    pub fn next_stage(&self) -> Self {
        Self {
            url: None,
            ..self.clone()
        }
    }
}

/// The queue lane of a project's work at `priority` (the default lane without a project).
pub fn lane_of(project_id: Option<Uuid>, priority: Priority) -> Lane {
    Lane::new(
        project_id.map(|p| p.to_string()).unwrap_or_default(),
        priority,
    )
}

/// The queue message of a delivery; its id is the delivery id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryMessage {
    /// The delivery (`webhook_deliveries.id`).
    pub delivery_id: Uuid,
}

impl WorkMessage for DeliveryMessage {
    /// The runner's logs and failure records name the delivery here (the webhooks family's
    /// messages are deliveries, not sources).
    fn source_id(&self) -> Uuid {
        self.delivery_id
    }

    fn job_id(&self) -> Option<Uuid> {
        None
    }
}

impl DeliveryMessage {
    /// The queue message id.
    pub fn id(&self) -> String {
        self.delivery_id.to_string()
    }

    /// The queue message body.
    pub fn body(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("a DeliveryMessage always serialises")
    }
}

/// The render mode a `jobs.render` value names (`None` for NULL; the column's check allows
/// only the three modes).
pub fn render_of_column(value: Option<&str>) -> Option<RenderMode> {
    value.and_then(|v| v.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source_message(render: Option<RenderMode>) -> SourceMessage {
        SourceMessage {
            source_id: Uuid::now_v7(),
            job_id: Some(Uuid::now_v7()),
            url: Some("https://example.com/".into()),
            project_id: Some(Uuid::now_v7()),
            priority: Priority::Normal,
            render,
        }
    }

    #[test]
    fn the_render_mode_round_trips_is_left_out_when_unset_and_kept_by_the_next_stage() {
        for mode in RenderMode::ALL {
            let m = source_message(Some(mode));
            assert_eq!(m.body()["render"], mode.as_str());
            let back: SourceMessage = serde_json::from_value(m.body()).unwrap();
            assert_eq!(back, m);
            let next = m.next_stage();
            assert_eq!(next.render, Some(mode));
            assert_eq!(next.url, None);
        }
        let unset = source_message(None);
        assert!(unset.body().get("render").is_none(), "{}", unset.body());
        // Messages written before the field existed read as the worker's default.
        let mut old = unset.body();
        old.as_object_mut().unwrap().remove("render");
        let back: SourceMessage = serde_json::from_value(old).unwrap();
        assert_eq!(back.render, None);
        assert!(
            serde_json::from_value::<SourceMessage>(serde_json::json!({
                "source_id": Uuid::now_v7(), "job_id": null, "render": "sometimes"
            }))
            .is_err()
        );
        assert_eq!(render_of_column(Some("always")), Some(RenderMode::Always));
        assert_eq!(render_of_column(None), None);
    }

    #[test]
    fn the_message_round_trips_and_names_the_delivery() {
        let m = DeliveryMessage {
            delivery_id: Uuid::now_v7(),
        };
        let back: DeliveryMessage = serde_json::from_value(m.body()).unwrap();
        assert_eq!(back, m);
        assert_eq!(m.id(), m.delivery_id.to_string());
        assert_eq!(m.source_id(), m.delivery_id);
    }
}

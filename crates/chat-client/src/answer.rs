//! Turning a 200 reply body into a [`ChatAnswer`] or a [`ChatError::Malformed`].

use serde::Deserialize;

use crate::{ChatAnswer, ChatError, Usage, estimate_tokens};

/// The part of a chat completion the client reads; everything else is ignored, so
/// servers' extra fields (`system_fingerprint`, `prompt_logprobs`, `timings`) pass.
#[derive(Deserialize)]
struct Completion {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    choices: Vec<Choice>,
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct Choice {
    #[serde(default)]
    message: Option<Message>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct Message {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    refusal: Option<String>,
}

/// Servers disagree on which counts they send (some omit `total_tokens`), so each is
/// optional and the total is derived when missing.
#[derive(Deserialize)]
struct WireUsage {
    #[serde(default)]
    prompt_tokens: Option<u64>,
    #[serde(default)]
    completion_tokens: Option<u64>,
    #[serde(default)]
    total_tokens: Option<u64>,
}

impl WireUsage {
    fn to_usage(&self) -> Option<Usage> {
        let prompt = self.prompt_tokens?;
        let completion = self.completion_tokens.unwrap_or(0);
        Some(Usage {
            prompt_tokens: prompt,
            completion_tokens: completion,
            total_tokens: self
                .total_tokens
                .unwrap_or(prompt.saturating_add(completion)),
        })
    }
}

/// How much of an unparsable body an error keeps.
const BODY_EXCERPT: usize = 4096;

/// Parses a 200 body. `estimated_prompt_tokens` stands in for the prompt count when the
/// server reports no usage; `requested_model` for the model when it names none.
pub(crate) fn parse_completion(
    body: &[u8],
    requested_model: &str,
    estimated_prompt_tokens: u32,
) -> Result<ChatAnswer, ChatError> {
    let completion: Completion =
        serde_json::from_slice(body).map_err(|e| ChatError::Malformed {
            message: format!("reply is not a chat completion: {e}"),
            answer: excerpt(body),
            usage: None,
        })?;
    let usage = completion.usage.as_ref().and_then(WireUsage::to_usage);
    let malformed = |message: String, answer: String| ChatError::Malformed {
        message,
        answer,
        usage,
    };
    let Some(choice) = completion.choices.into_iter().next() else {
        return Err(malformed("reply has no choices".into(), excerpt(body)));
    };
    let message = choice.message.unwrap_or(Message {
        content: None,
        refusal: None,
    });
    if let Some(refusal) = message.refusal.filter(|r| !r.trim().is_empty()) {
        return Err(malformed(
            "the model refused".into(),
            message.content.unwrap_or(refusal),
        ));
    }
    let content = message.content.unwrap_or_default();
    match choice.finish_reason.as_deref() {
        Some("length") => {
            return Err(malformed(
                "answer cut short at the token limit (finish_reason length)".into(),
                content,
            ));
        }
        Some("content_filter") => {
            return Err(malformed(
                "answer withheld by the server's content filter".into(),
                content,
            ));
        }
        _ => {}
    }
    if content.trim().is_empty() {
        return Err(malformed("answer has no content".into(), content));
    }
    let value = match serde_json::from_str(json_text(&content)) {
        Ok(value) => value,
        Err(e) => return Err(malformed(format!("answer is not JSON: {e}"), content)),
    };
    let (usage, usage_estimated) = match usage {
        Some(usage) => (usage, false),
        None => {
            let prompt = u64::from(estimated_prompt_tokens);
            let completion = u64::from(estimate_tokens(&content));
            let usage = Usage {
                prompt_tokens: prompt,
                completion_tokens: completion,
                total_tokens: prompt + completion,
            };
            (usage, true)
        }
    };
    Ok(ChatAnswer {
        content,
        value,
        usage,
        usage_estimated,
        finish_reason: choice.finish_reason,
        model: completion
            .model
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| requested_model.to_string()),
    })
}

/// The JSON inside an answer: without a leading reasoning block (`<think>…</think>`, which
/// reasoning models served without a reasoning parser put in the content) and without a
/// Markdown code fence (some servers wrap JSON in one even in JSON mode).
pub(crate) fn json_text(content: &str) -> &str {
    let mut text = content.trim();
    if let Some(rest) = text.strip_prefix("<think>")
        && let Some(end) = rest.find("</think>")
    {
        text = rest[end + "</think>".len()..].trim();
    }
    if let Some(rest) = text.strip_prefix("```") {
        // The opening fence's line may name a language (```json); the JSON starts on the
        // next line.
        let body = rest.split_once('\n').map_or("", |(_, body)| body);
        let body = body.trim_end();
        text = body.strip_suffix("```").unwrap_or(body).trim();
    }
    text
}

/// The start of a body, as text, for an error.
pub(crate) fn excerpt(body: &[u8]) -> String {
    let cut = &body[..body.len().min(BODY_EXCERPT)];
    String::from_utf8_lossy(cut).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body(content: &str, finish: &str, usage: bool) -> Vec<u8> {
        let mut v = json!({
            "id": "x", "object": "chat.completion", "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                         "finish_reason": finish}],
        });
        if usage {
            v["usage"] = json!({"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15});
        }
        serde_json::to_vec(&v).expect("json")
    }

    #[test]
    fn fences_and_think_blocks_are_stripped() {
        assert_eq!(json_text("{\"a\":1}"), "{\"a\":1}");
        assert_eq!(json_text("```json\n{\"a\":1}\n```"), "{\"a\":1}");
        assert_eq!(json_text("  ```\n{\"a\":1}\n```  \n"), "{\"a\":1}");
        assert_eq!(json_text("```json\n{\"a\":1}"), "{\"a\":1}");
        assert_eq!(json_text("<think>hmm {</think>\n{\"a\":1}"), "{\"a\":1}");
        assert_eq!(json_text("<think>never closed"), "<think>never closed");
    }

    #[test]
    fn good_answer() {
        let a = parse_completion(&body("{\"a\":1}", "stop", true), "req", 3).expect("ok");
        assert_eq!(a.value, json!({"a": 1}));
        assert_eq!(a.usage.total_tokens, 15);
        assert!(!a.usage_estimated);
        assert_eq!(a.model, "m");
        assert_eq!(a.finish_reason.as_deref(), Some("stop"));
    }

    #[test]
    fn missing_usage_is_estimated() {
        let a = parse_completion(&body("{\"abc\":1}", "stop", false), "req", 30).expect("ok");
        assert!(a.usage_estimated);
        assert_eq!(a.usage.prompt_tokens, 30);
        assert_eq!(a.usage.completion_tokens, 3);
        assert_eq!(a.usage.total_tokens, 33);
    }

    #[test]
    fn partial_usage_is_completed() {
        let v = json!({"choices": [{"message": {"content": "{}"}, "finish_reason": "stop"}],
                       "usage": {"prompt_tokens": 7, "completion_tokens": 2}});
        let a = parse_completion(&serde_json::to_vec(&v).expect("json"), "req", 0).expect("ok");
        assert_eq!(a.usage.total_tokens, 9);
        assert_eq!(a.model, "req");
    }

    #[test]
    fn unusable_answers() {
        let malformed = |b: &[u8]| match parse_completion(b, "m", 0) {
            Err(ChatError::Malformed {
                message, answer, ..
            }) => (message, answer),
            other => panic!("expected Malformed, got {other:?}"),
        };
        let (m, a) = malformed(&body("{\"a\": [1, 2", "length", true));
        assert!(m.contains("length"), "{m}");
        assert_eq!(a, "{\"a\": [1, 2");
        let (m, _) = malformed(&body("sure, here it is", "stop", true));
        assert!(m.contains("not JSON"), "{m}");
        let (m, _) = malformed(&body("", "stop", true));
        assert!(m.contains("no content"), "{m}");
        let (m, _) = malformed(b"{\"choices\": []}");
        assert!(m.contains("no choices"), "{m}");
        let (m, a) = malformed(b"<html>bad gateway</html>");
        assert!(m.contains("not a chat completion"), "{m}");
        assert!(a.contains("bad gateway"));
        let refusal = json!({"choices": [{"message": {"content": null, "refusal": "I can't"},
                                           "finish_reason": "stop"}]});
        let (m, a) = malformed(&serde_json::to_vec(&refusal).expect("json"));
        assert!(m.contains("refused"), "{m}");
        assert_eq!(a, "I can't");
    }
}

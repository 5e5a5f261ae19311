//! Provider errors: a response stage for the answers no translator reads, those of OpenAI-format
//! providers (and of an `anthropic` provider to `/v1/messages` clients, which pass through). They reach
//! the client as the provider sent them, but for what the client must not be told as it stands:
//!
//! - the provider refusing the gateway's own credential (401/403) is not the caller's fault: a 502
//!   `provider_auth_error`, as translated providers give (the provider's message is not passed on: an
//!   OpenAI-format provider quotes part of the key it was sent);
//! - an error page that is not JSON (HTML or text from a load balancer or proxy in front of the provider)
//!   becomes an error in the client's shape, quoting the page's start, with the status a translated
//!   provider's error of that status gets;
//! - a 2xx of a whole (not streamed) answer whose body is not JSON is a 502 saying so.
//!
//! Answers Envoy made (unreachable provider, timeouts) are not the provider's: Envoy's `local_reply_config`
//! shapes them. The bodies looked at here are small error pages; they are held whole (within Envoy's
//! buffer limit) and replaced; JSON errors and JSON or SSE successes pass untouched and unbuffered.

use super::{BodyNeeds, Chunk, ClientApi, Exchange, ResponseHead, Stage};
use crate::api::anthropic as anthropic_api;
use crate::api::openai::Operation;
use crate::config::WireFormat;
use crate::providers::{self, toolkit};

/// Longest piece of a non-JSON error page quoted in the client's error.
const PAGE_PREFIX_CHARS: usize = 200;

#[derive(Default)]
pub struct ProviderErrors {
    plan: Option<Plan>,
}

/// What becomes of the answer's body, decided from its head.
struct Plan {
    provider: String,
    api: ClientApi,
    what: What,
}

enum What {
    /// 401/403: the provider refused the gateway's credential (the provider's status).
    Refused(u16),
    /// A non-JSON error page (the provider's status).
    Page(u16),
    /// A 2xx whose content type does not say JSON: its body is checked.
    Check2xx(Option<String>),
}

impl Stage for ProviderErrors {
    fn name(&self) -> &'static str {
        "provider_errors"
    }

    fn on_response_headers(&mut self, x: &mut Exchange, head: &mut ResponseHead) {
        if !x.forwarded || !head.from_provider || x.translator.is_some() {
            return;
        }
        let Some(provider) = passthrough_provider(x) else { return };
        let ct = head.content_type.unwrap_or("");
        let json = is_json(ct);
        let what = match head.status {
            401 | 403 => What::Refused(head.status),
            200..=299 if json || ct.starts_with("text/event-stream") => return,
            // A stream's body is the provider's to frame; only whole answers are checked.
            200..=299 if x.ask.as_ref().is_some_and(|a| a.stream) => return,
            200..=299 => What::Check2xx(head.content_type.map(str::to_string)),
            s if s >= 400 && !json => What::Page(s),
            _ => return,
        };
        let client_status = match what {
            What::Refused(s) | What::Page(s) => Some(providers::client_status_for_provider_error(s)),
            What::Check2xx(_) => None,
        };
        if let Some(s) = client_status {
            if s != head.status {
                x.status_change = Some(s);
                head.status = s;
            }
            x.status = s;
            head.set.push(("content-type", "application/json".to_string()));
            head.content_type = Some("application/json");
        }
        self.plan = Some(Plan { provider, api: x.api, what });
    }

    fn on_response_body(&mut self, x: &mut Exchange, chunk: &mut Chunk) {
        let Some(plan) = self.plan.as_ref().filter(|_| chunk.end) else { return };
        let (status, openai_body) = match &plan.what {
            What::Refused(s) => providers::provider_error_body(&plan.provider, *s, providers::REFUSED_CREDENTIAL, None),
            What::Page(s) => providers::provider_error_body(&plan.provider, *s, &page_text(&chunk.bytes), None),
            What::Check2xx(_) if serde_json::from_slice::<serde::de::IgnoredAny>(&chunk.bytes).is_ok() => return,
            What::Check2xx(ct) => {
                let why = format!("the answer is not JSON (content-type: {})", ct.as_deref().unwrap_or("none"));
                x.status = 502;
                x.status_change = Some(502);
                x.late_set.push(("content-type", "application/json".to_string()));
                (502, toolkit::unreadable_answer(&plan.provider, &why))
            }
        };
        chunk.bytes = match plan.api {
            ClientApi::OpenAi => openai_body,
            ClientApi::Anthropic => anthropic_api::error_from_openai(status, &openai_body),
        };
        chunk.changed = true;
    }

    fn body_needs(&self, _x: &Exchange) -> BodyNeeds {
        let on = self.plan.is_some();
        BodyNeeds { watch: on, rewrite: on, buffer: on }
    }
}

/// The provider that served, when its answer reaches the route role as the provider sent it: an
/// OpenAI-format provider's answer to the OpenAI API, an `anthropic` provider's to `/v1/messages`, a
/// provider answering the Responses API itself to `/v1/responses` (every other pairing was translated,
/// here or by the upstream role, and the translator made its errors).
fn passthrough_provider(x: &Exchange) -> Option<String> {
    let (name, _) = x.served.as_ref()?;
    let (_, p) = x.cfg.provider_by_name(name)?;
    let raw = match (x.op, p.kind.wire_format()) {
        (Some(Operation::Responses), _) => p.kind.answers_responses(),
        (Some(Operation::Messages), wire) => wire == WireFormat::Anthropic,
        (_, wire) => wire == WireFormat::OpenAi,
    };
    raw.then(|| p.name.clone())
}

fn is_json(content_type: &str) -> bool {
    let media = content_type.split(';').next().unwrap_or("").trim();
    media.eq_ignore_ascii_case("application/json") || media.ends_with("+json")
}

/// The start of an error page, for the client's error message.
fn page_text(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.is_empty() {
        return "(an empty error page)".to_string();
    }
    let mut prefix: String = text.chars().take(PAGE_PREFIX_CHARS).collect();
    if text.chars().nth(PAGE_PREFIX_CHARS).is_some() {
        prefix.push('…');
    }
    format!("an error page that is not JSON: {prefix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_media_types() {
        for ct in
            ["application/json", "application/json; charset=utf-8", "application/problem+json", "APPLICATION/JSON"]
        {
            assert!(is_json(ct), "{ct}");
        }
        for ct in ["text/html", "text/plain", "", "application/jsonx", "text/event-stream"] {
            assert!(!is_json(ct), "{ct}");
        }
    }

    #[test]
    fn page_text_quotes_the_start() {
        assert_eq!(
            page_text(b"  <html>\n  <h1>Bad   gateway</h1></html> "),
            "an error page that is not JSON: <html> <h1>Bad gateway</h1></html>"
        );
        assert_eq!(page_text(b" \n"), "(an empty error page)");
        let long = "x".repeat(500);
        let t = page_text(long.as_bytes());
        assert!(t.ends_with('…') && t.chars().count() < 260, "{t}");
    }
}

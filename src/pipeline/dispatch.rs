//! Dispatch: the last request stage. The mock provider answers here (through the response stages);
//! otherwise it names the Envoy cluster that serves the model in the routing header, writes the body for
//! a model's only target when it can (an OpenAI-format target gets the model name spliced in, a provider
//! with its own format gets the translated request and leaves its translator for the answer), and says
//! what the upstream role's attempts need to know.

use super::{cut, Ctx, Exchange, Flow, Parsed, Request, Stage};
use crate::api::anthropic as anthropic_input;
use crate::api::openai::Operation;
use crate::http::{Decision, LocalResponse, RequestInfo, Step, Translated, CREDENTIAL_HEADERS, H_CLUSTER, H_ROUTE};
use crate::providers::{self, mock, Attempt};
use std::rc::Rc;

pub struct Dispatch;

impl Stage for Dispatch {
    fn name(&self) -> &'static str {
        "dispatch"
    }

    fn on_request_body(&mut self, x: &mut Exchange, req: &Request, ctx: &Ctx) -> Flow {
        let (Some(ask), Some(op)) = (x.ask.as_ref(), x.op) else { return Flow::Next };
        let cfg = x.cfg.clone();
        let Some(model) = cfg.models.get(&ask.alias) else { return Flow::Next };
        if let Some(max) = cfg.log_bodies_max_bytes {
            // Opt-in only: prompts can hold anything. Keys never do (they travel in headers).
            let key = x.key().map_or("-", |k| k.id.as_str());
            log::info!("request body (key {}, model {}): {}", key, ask.alias, cut(req.bytes, max));
        }
        x.forwarded = true;

        let primary = model.targets.first().and_then(|t| cfg.provider(t.provider));
        if primary.is_some_and(|p| p.kind.answers_locally()) {
            return Flow::Answer(mock_answer(req, &model.name, ctx.clock));
        }
        let mut d = Decision::new(Step::Continue);
        d.set.push((H_CLUSTER, model.cluster.clone()));
        d.set.push((H_ROUTE, model.name.clone()));
        let mut steering = Vec::new();
        if !x.steering.is_empty() {
            let targets: Vec<_> = model.targets.iter().map(|t| t.provider).collect();
            steering = cfg.forwarding.at_dispatch(&targets, &x.steering, &mut d.steer);
        }
        let bytes = req.bytes;
        let mut translated = None;
        let only = match model.targets.as_slice() {
            [t] => cfg.provider(t.provider).map(|p| (t, p)),
            _ => None,
        };
        if let Some((t, p)) = only {
            let passes = match op {
                Operation::ChatCompletions | Operation::Embeddings => p.kind.speaks_openai(),
                Operation::Responses => p.kind.answers_responses(),
                Operation::Messages | Operation::ListModels | Operation::RetrieveModel => false,
            };
            if passes {
                // One OpenAI-format target: write its body here, where the body is already in hand, so that
                // the upstream role only sets the path and the credential (no second buffering and parse).
                let written = match req.chat() {
                    Some(c) => providers::openai::splice(
                        bytes,
                        c.model_raw,
                        c.is_stream(),
                        c.stream_options_raw,
                        &t.model,
                        true,
                    ),
                    None => providers::openai::rewrite(bytes, &t.model, false),
                };
                match written {
                    Ok(b) => d.body = Some(b),
                    Err(e) => return Flow::Fail(e),
                }
            } else if p.kind.translates_at_route() {
                // One target of a provider with its own format: translate here too, keep the response
                // translator for the answer, and leave the upstream role only the path and the credential.
                let attempt = Attempt {
                    op,
                    provider: p,
                    model: &t.model,
                    alias: &model.name,
                    now_unix: ctx.clock.unix_secs,
                    now_ns: ctx.now_ns,
                    usage_chunk: true,
                    chat: req.chat(),
                };
                match providers::prepare(&attempt, bytes) {
                    Ok(out) => {
                        // Credentials are set by the upstream role only (after the router logs headers).
                        d.set.extend(out.headers.into_iter().filter(|(name, _)| !CREDENTIAL_HEADERS.contains(name)));
                        d.body = Some(out.body.unwrap_or_else(|| bytes.to_vec()));
                        x.translator = out.response;
                        translated = Some(Rc::new(Translated { path: out.path, client_body: bytes.to_vec() }));
                    }
                    Err(e) => return Flow::Fail(e),
                }
            }
        }
        if let Some(b) = &d.body {
            d.set.push(("content-length", b.len().to_string()));
        }
        d.register = Some(RequestInfo {
            op,
            alias: model.name.clone(),
            body_ready: d.body.is_some(),
            path: x.path.clone(),
            translated,
            steering,
        });
        Flow::Forward(d)
    }
}

/// The mock provider's answer, in the client's API.
fn mock_answer(req: &Request, alias: &str, clock: mock::Clock) -> LocalResponse {
    match &req.parsed {
        Parsed::Chat(c) => mock::chat(c, alias, clock),
        Parsed::Embeddings(e) => mock::embeddings(e, alias),
        Parsed::Messages(_) => anthropic_input::mock_answer(req.bytes, alias, clock),
        Parsed::Responses(_) => crate::api::responses::mock_answer(req.bytes, alias, clock),
    }
}

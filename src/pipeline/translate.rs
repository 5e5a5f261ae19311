//! Translate: the first response stage. It says what served the request (the upstream role names the
//! target when it had a choice; a model's only target is known here) and, when the route role
//! translated the request for that target, turns the provider's answer into the client's format.

use super::{BodyNeeds, Chunk, Exchange, ResponseHead, Stage};
use crate::config::Price;
use crate::http::{H_SERVED_MODEL, H_SERVED_PROVIDER};
use crate::providers::BodyMode;

pub struct Translate;

impl Stage for Translate {
    fn name(&self) -> &'static str {
        "translate"
    }

    fn on_response_headers(&mut self, x: &mut Exchange, head: &mut ResponseHead) {
        // The upstream role named what served: it prepared that attempt and translated its answer. An
        // answer Envoy made (no upstream, a timeout) is not the provider's to translate.
        if head.served.is_some() || !head.from_provider {
            x.translator = None;
        }
        if let Some(t) = x.translator.as_mut() {
            let (client_status, mode) = t.on_headers(head.status, head.content_type);
            x.translator_mode = Some(mode);
            if client_status != head.status {
                x.status_change = Some(client_status);
            }
            head.set.push(("content-type", t.content_type().to_string()));
            head.status = client_status;
            head.content_type = Some(t.content_type());
        }
        x.status = head.status;
        x.served_price = price_of(x, head.served);
        x.served = head.served.map(|(p, m)| (p.to_string(), m.to_string()));
        // The upstream role names what served only when it had a choice to make or a response to
        // translate; a model's only target is known here.
        if x.served.is_none() {
            x.served = only_target(x);
            if let Some((p, m)) = &x.served {
                head.set.push((H_SERVED_PROVIDER, p.clone()));
                head.set.push((H_SERVED_MODEL, m.clone()));
            }
        }
    }

    fn on_response_body(&mut self, x: &mut Exchange, chunk: &mut Chunk) {
        let out = match (x.translator.as_mut(), x.translator_mode) {
            (Some(t), Some(BodyMode::Buffer)) => {
                let out = t.on_body(&chunk.bytes);
                // A 2xx the translator could not read is a 502 (the held headers get it).
                if let Some(status) = t.body_status().filter(|s| *s != x.status) {
                    x.status = status;
                    x.status_change = Some(status);
                }
                out
            }
            (Some(t), Some(BodyMode::Stream)) => {
                let mut out = Vec::with_capacity(chunk.bytes.len() + 64);
                t.on_stream(&chunk.bytes, chunk.end, &mut out);
                out
            }
            _ => return,
        };
        chunk.bytes = out;
        chunk.changed = true;
    }

    fn body_needs(&self, x: &Exchange) -> BodyNeeds {
        let on = x.translator_mode.is_some();
        BodyNeeds { watch: on, rewrite: on, buffer: x.translator_mode == Some(BodyMode::Buffer) }
    }
}

/// (provider, model) of the forwarded model's only target, unless that is the mock provider.
fn only_target(x: &Exchange) -> Option<(String, String)> {
    let model = x.cfg.models.get(&x.ask.as_ref().filter(|_| x.forwarded)?.alias)?;
    let [t] = model.targets.as_slice() else { return None };
    let p = x.cfg.provider(t.provider).filter(|p| !p.kind.answers_locally())?;
    Some((p.name.clone(), t.model.clone()))
}

/// The price of the target that served: the one the upstream role named, else the only one.
fn price_of(x: &Exchange, served: Option<(&str, &str)>) -> Option<Price> {
    let model = x.cfg.models.get(&x.ask.as_ref().filter(|_| x.forwarded)?.alias)?;
    match served {
        Some((provider, upstream_model)) => {
            let (pid, _) = x.cfg.provider_by_name(provider)?;
            model.target(pid, Some(upstream_model)).or_else(|| model.target(pid, None))?.price
        }
        None if model.targets.len() == 1 => model.targets.first()?.price,
        None => model.max_price(),
    }
}

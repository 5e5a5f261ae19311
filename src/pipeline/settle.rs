//! Settle: once the answer is complete (or the request is over), charge what it really used (the
//! provider's usage, or the documented estimate) against what the limits stage reserved, and return the
//! rest. The reservation's `x-ratelimit-*` headers go out with the response head.

use super::{Ctx, Exchange, ResponseHead, Settled, Stage};
use crate::api::openai as request;
use crate::providers::Usage;

pub struct Settle;

impl Stage for Settle {
    fn name(&self) -> &'static str {
        "settle"
    }

    fn on_response_headers(&mut self, x: &mut Exchange, head: &mut ResponseHead) {
        // The response's only use of them: moved, not copied.
        if let Some(r) = x.reservation.as_mut().filter(|_| x.forwarded) {
            head.set.append(&mut r.headers);
        }
    }

    fn on_response_end(&mut self, x: &mut Exchange, ctx: &Ctx) {
        let ok = (200..300).contains(&x.status);
        let usage = match (x.ask.as_ref().filter(|_| x.forwarded), ok) {
            (Some(a), true) => Some(x.reported.unwrap_or(Usage {
                // Documented estimate when the provider reports no usage: the prompt estimate plus a
                // quarter of the response bytes, at most the output reserved.
                prompt_tokens: a.prompt_estimate,
                completion_tokens: request::estimate_tokens(x.response_bytes as usize).min(a.output_reserved),
                cached_tokens: 0,
            })),
            _ => None,
        };
        let cost = match (usage, x.served_price) {
            (Some(u), Some(p)) => p.cost_micros(u.prompt_tokens, u.cached_tokens, u.completion_tokens),
            _ => 0,
        };
        if let Some(mut r) = x.reservation.take() {
            r.settle(ctx.store, usage.map(|u| (u.prompt_tokens + u.completion_tokens, cost)), ctx.now_ns);
        }
        x.settled = Some(Settled { usage, cost_micros: cost, reported: x.reported.is_some() });
    }
}

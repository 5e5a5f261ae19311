//! Local limits: reserve what the request may use (requests, tokens, concurrency, budget) in this Envoy
//! before anything is answered or forwarded; the settle stage charges the real usage and returns the rest.

use super::{Ctx, Exchange, Flow, Request, Stage};
use crate::limits::Reservation;

pub struct LocalLimits;

impl Stage for LocalLimits {
    fn name(&self) -> &'static str {
        "limits"
    }

    fn on_request_body(&mut self, x: &mut Exchange, _req: &Request, ctx: &Ctx) -> Flow {
        let (Some(ask), Some(key)) = (x.ask.as_ref(), x.key()) else { return Flow::Next };
        if key.limits.is_empty() {
            return Flow::Next;
        }
        let Some(model) = x.cfg.models.get(&ask.alias) else { return Flow::Next };
        let cost = model.max_price().map_or(0, |p| p.cost_micros(ask.prompt_estimate, 0, ask.output_reserved));
        let tokens = ask.prompt_estimate + ask.output_reserved;
        match Reservation::reserve(ctx.store, key, &ask.alias, tokens, cost, ctx.now_ns) {
            Ok(r) => {
                x.reservation = Some(r);
                Flow::Next
            }
            Err(e) => Flow::Fail(e),
        }
    }
}

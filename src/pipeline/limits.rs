//! Local limits: reserve what the request may use (requests, tokens, concurrency, budget) in this Envoy
//! before anything is answered or forwarded, from every subject it counts against (its key or user, and
//! its team: all or none); the settle stage charges the real usage and returns the rest to each.

use super::{Ctx, Exchange, Flow, Request, Stage};
use crate::limits::Reservation;

pub struct LocalLimits;

impl Stage for LocalLimits {
    fn name(&self) -> &'static str {
        "limits"
    }

    fn on_request_body(&mut self, x: &mut Exchange, _req: &Request, ctx: &Ctx) -> Flow {
        let Some(ask) = x.ask.as_ref() else { return Flow::Next };
        let subjects = x.subjects(&ask.alias);
        if subjects.iter().all(Option::is_none) {
            return Flow::Next;
        }
        let Some(model) = x.cfg.models.get(&ask.alias) else { return Flow::Next };
        let cost = model.max_price().map_or(0, |p| p.cost_micros(ask.prompt_estimate, 0, ask.output_reserved));
        let tokens = ask.prompt_estimate + ask.output_reserved;
        let reserved = Reservation::reserve_for(ctx.store, subjects.into_iter().flatten(), tokens, cost, ctx.now_ns);
        match reserved {
            Ok(r) => {
                x.reservation = Some(r);
                Flow::Next
            }
            Err(e) => Flow::Fail(e),
        }
    }
}

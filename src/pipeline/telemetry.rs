//! Telemetry: the last response stage. When the request is over it makes the request's record, which the
//! host turns into Envoy stats and the access-log entry ([`crate::observe`]).

use super::{Ctx, Exchange, Stage};
use crate::api::openai::Operation;
use crate::observe::Record;

pub struct Telemetry;

impl Stage for Telemetry {
    fn name(&self) -> &'static str {
        "telemetry"
    }

    fn on_done(&mut self, x: &mut Exchange, ctx: &Ctx) {
        x.record = Some(record(x, ctx.now_ns));
    }
}

/// The record of a request that is over.
pub fn record(x: &Exchange, now_ns: u64) -> Record {
    let settled = x.settled.unwrap_or_default();
    let requested_model = x.ask.as_ref().filter(|_| x.forwarded).map(|a| a.alias.clone());
    let mock_provider = requested_model
        .as_ref()
        .and_then(|m| x.cfg.models.get(m))
        .and_then(|m| m.targets.first())
        .and_then(|t| x.cfg.provider(t.provider))
        .filter(|p| p.kind.answers_locally());
    let (provider, served_model) = match (&x.served, mock_provider) {
        (Some((p, m)), _) => (Some(p.clone()), Some(m.clone())),
        (None, Some(p)) if x.status != 0 => (Some(p.name.clone()), requested_model.clone()),
        _ => (None, None),
    };
    Record {
        key_id: x.key().map(|k| k.id.clone()),
        by_user: x.user.is_some(),
        user: x
            .user
            .as_ref()
            .and_then(|u| u.for_log(x.cfg.identity.as_ref().map_or_else(Default::default, |i| i.log_user))),
        team: x.cfg.has_identity().then(|| x.team().map_or_else(|| "-".to_string(), |t| t.name.clone())),
        requested_model,
        served_model,
        provider,
        operation: match x.op {
            Some(Operation::ChatCompletions) => "chat",
            Some(Operation::Embeddings) => "embeddings",
            Some(Operation::Messages) => "messages",
            Some(Operation::Responses) => "responses",
            Some(Operation::ListModels) | Some(Operation::RetrieveModel) => "models",
            None => "none",
        },
        status: x.status,
        usage: settled.usage,
        usage_estimated: settled.usage.is_some() && !settled.reported,
        cost_micros: settled.cost_micros,
        ttft_ms: x.first_byte_ns.map(|t| t.saturating_sub(x.started_ns) / 1_000_000),
        duration_ms: now_ns.saturating_sub(x.started_ns) / 1_000_000,
        attempts: x.attempts,
        stream: x.ask.as_ref().filter(|_| x.forwarded).is_some_and(|a| a.stream),
        broke_off: x.sent.is_some_and(|s| s.broke_off),
        fleet_limits: x.fleet_outcome,
        cache: x.cache.as_ref().map(|c| c.outcome.name()),
        cache_tier: x.cache.as_ref().and_then(|c| c.tier).map(|t| t.name()),
        cache_fleet: x.cache.as_ref().and_then(|c| c.fleet).map(|f| f.name()),
        cache_saved: x.cache.as_ref().and_then(|c| c.saved),
        cache_stored: x.cache.as_ref().and_then(|c| c.stored),
    }
}

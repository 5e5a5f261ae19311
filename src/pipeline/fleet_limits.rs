//! Fleet-wide limits (after the local limits, before dispatch): one call to the rate-limit service
//! (`fleet_limits.cluster`, Envoy's rate-limit protocol over gRPC) reserves what the request may use
//! against every `limits.fleet` limit of its key or user and of its team (subject ids: the key's id,
//! `user:<id>`, `team:<name>`), all or none; the settle part (a response stage) queues
//! the difference to what the answer really used, which the host sends batched after the response.
//!
//! The service failing (no answer, a gRPC error, the timeout, an unreadable answer) is the configured
//! decision: `open` admits on the local limits alone, `closed` refuses with 503. Either way the request's
//! record says `unavailable` and one log line marks the start and the end of each episode.

use super::{Ctx, Exchange, Flow, Request, Stage};
use crate::api::error::ApiError;
use crate::limits::fleet::{self, Descriptor, Hold, Kind};
use crate::pipeline::callout::{Callout, CalloutKind, CalloutOutcome};
use std::cell::Cell;

thread_local! {
    /// The service is failing (this VM saw it last): one log line per episode, not per request.
    static FAILING: Cell<bool> = const { Cell::new(false) };
}

/// The admission part (a request stage).
#[derive(Default)]
pub struct FleetLimits {
    /// What was asked, until the answer.
    asked: Vec<Descriptor>,
}

impl Stage for FleetLimits {
    fn name(&self) -> &'static str {
        "fleet_limits"
    }

    fn on_request_body(&mut self, x: &mut Exchange, _req: &Request, ctx: &Ctx) -> Flow {
        let cfg = x.cfg.clone();
        let (Some(svc), Some(ask)) = (cfg.fleet.as_ref(), x.ask.as_ref()) else {
            return Flow::Next;
        };
        let subjects = x.fleet_subjects();
        if subjects.iter().all(Option::is_none) {
            return Flow::Next;
        }
        let Some(model) = cfg.models.get(&ask.alias) else { return Flow::Next };
        // The same estimates as the local tier's.
        let cost = model.max_price().map_or(0, |p| p.cost_micros(ask.prompt_estimate, 0, ask.output_reserved));
        let tokens = ask.prompt_estimate + ask.output_reserved;
        let mut asked: Vec<Descriptor> = Vec::new();
        for (id, limits) in subjects.into_iter().flatten() {
            let more = fleet::admission(&id, limits, &ask.alias, tokens, cost, ctx.clock.unix_secs, svc.standard);
            if asked.is_empty() {
                asked = more;
            } else {
                asked.extend(more);
            }
        }
        if asked.is_empty() {
            return Flow::Next;
        }
        let message = fleet::encode(&svc.domain, &asked);
        self.asked = asked;
        Flow::Callout(Callout {
            cluster: svc.cluster.clone(),
            timeout_ms: svc.timeout_ms,
            kind: CalloutKind::Grpc {
                service: fleet::SERVICE.to_string(),
                method: fleet::METHOD.to_string(),
                metadata: Vec::new(),
                message,
            },
        })
    }

    fn on_callout(&mut self, x: &mut Exchange, _req: &Request, outcome: CalloutOutcome, _ctx: &Ctx) -> Flow {
        let asked = std::mem::take(&mut self.asked);
        let verdict = match outcome {
            CalloutOutcome::Answer { body, .. } => fleet::decode(&body),
            CalloutOutcome::Failed(why) => Err(why),
            CalloutOutcome::TimedOut => Err("no answer in time".to_string()),
        };
        let fail_open = x.cfg.fleet.as_ref().is_none_or(|s| s.fail_open);
        match verdict {
            Ok(v) => {
                if FAILING.with(|f| f.replace(false)) {
                    log::warn!("fleet-wide limits: the rate-limit service answers again");
                }
                if !v.over {
                    x.fleet_outcome = Some("ok");
                    x.fleet_hold = Some(Hold::new(asked));
                    return Flow::Next;
                }
                x.fleet_outcome = Some("over_limit");
                Flow::Fail(refusal(&asked, &v, x.cfg.has_identity()))
            }
            Err(why) => {
                x.fleet_outcome = Some("unavailable");
                if !FAILING.with(|f| f.replace(true)) {
                    let then = if fail_open { "admitting on the local limits alone" } else { "refusing requests" };
                    log::warn!("fleet-wide limits: the rate-limit service failed ({why}); {then} until it answers");
                }
                if fail_open {
                    Flow::Next
                } else {
                    Flow::Fail(ApiError::new(
                        503,
                        "server_error",
                        Some("limits_unavailable"),
                        "The gateway's fleet-wide limits service is not available; retry.",
                    ))
                }
            }
        }
    }
}

/// The 429 for the first limit the service says is over (in the local tier's words).
fn refusal(asked: &[Descriptor], v: &fleet::Verdict, identity: bool) -> ApiError {
    let over = v.statuses.iter().position(|s| s.over);
    let (d, st) = match over.and_then(|i| asked.get(i).zip(v.statuses.get(i))) {
        Some((d, s)) => (Some(d), *s),
        None => (None, fleet::Status::default()),
    };
    let entry = |k: &str| d.and_then(|d| d.entries.iter().find(|(n, _)| *n == k)).map_or("", |(_, v)| v.as_str());
    let model = entry("model");
    let on = if model.is_empty() { String::new() } else { format!(" on model {model}") };
    let mut e = match d.map(|d| d.kind) {
        Some(Kind::Budget) => {
            // Subject ids say whose (key ids cannot take these prefixes when users or teams exist).
            let subject = if identity { entry("switchyard_key") } else { "" };
            let message = match (subject.strip_prefix("team:"), subject.starts_with("user:")) {
                (Some(team), _) => format!("You exceeded the fleet-wide budget of team '{team}'."),
                (None, true) => "You exceeded your fleet-wide budget.".to_string(),
                (None, false) => "You exceeded this key's fleet-wide budget.".to_string(),
            };
            ApiError::new(429, "insufficient_quota", Some("insufficient_quota"), message)
        }
        kind => {
            let what = if kind == Some(Kind::Tokens) { "tokens" } else { "requests" };
            let max = d.and_then(|d| d.limit).map_or(0, |l| l.0);
            let subject = if identity { entry("switchyard_key") } else { "" };
            let whom = match (subject.strip_prefix("team:"), subject.starts_with("user:")) {
                (Some(team), _) => format!(" for team '{team}'"),
                (None, true) => " for your user".to_string(),
                (None, false) => String::new(),
            };
            let window = entry("window_secs");
            let message = format!("Fleet-wide rate limit reached{whom} for {what}{on}: {max} per {window}s.");
            ApiError::new(429, what, Some("rate_limit_exceeded"), message)
        }
    };
    e.headers.push(("retry-after", st.reset_ms.div_ceil(1000).max(1).to_string()));
    e
}

/// The settle part (a response stage, after `settle`): queues the difference between what was held and
/// what the answer used (`Exchange::fleet_settle`, sent by the host after the response).
pub struct FleetSettle;

impl Stage for FleetSettle {
    fn name(&self) -> &'static str {
        "fleet_settle"
    }

    fn on_response_end(&mut self, x: &mut Exchange, _ctx: &Ctx) {
        let Some(hold) = x.fleet_hold.take() else { return };
        let standard = x.cfg.fleet.as_ref().is_some_and(|s| s.standard);
        let used = x.settled.and_then(|s| s.usage.map(|u| (u.prompt_tokens + u.completion_tokens, s.cost_micros)));
        x.fleet_settle = hold.settle(used, standard);
    }
}

#[cfg(test)]
#[path = "fleet_limits_tests.rs"]
mod tests;

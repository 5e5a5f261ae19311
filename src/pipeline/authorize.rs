//! Authorize: may this caller use the model it asked for. A key lists its models (or all of them); a
//! user may use what any of their teams grants, and the request is attributed to one team: the one
//! `x-switchyard-team` names (one of theirs that grants the model), else the first of theirs by name
//! that grants it. Deny by default: 403 naming the model.

use super::{Ctx, Exchange, Flow, Request, Stage};
use crate::api::error::ApiError;

pub struct Authorize;

impl Stage for Authorize {
    fn name(&self) -> &'static str {
        "authorize"
    }

    fn on_request_body(&mut self, x: &mut Exchange, _req: &Request, _ctx: &Ctx) -> Flow {
        let Some(alias) = x.ask.as_ref().map(|a| a.alias.as_str()) else { return Flow::Next };
        if let Some(user) = &x.user {
            return match user.attribute(&x.cfg, alias, x.team_asked.as_deref()) {
                Ok(team) => {
                    x.team = Some(team);
                    Flow::Next
                }
                Err(e) => Flow::Fail(e),
            };
        }
        match x.key() {
            None => Flow::Fail(ApiError::invalid_key()),
            Some(key) if !key.may_use(alias) => Flow::Fail(ApiError::model_not_allowed(alias)),
            Some(_) => Flow::Next,
        }
    }
}

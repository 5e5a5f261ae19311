//! Authorize: may this caller use the model it asked for. A key lists its models (or all of them).
//! Later: team grants for JWT principals (identity issue).

use super::{Ctx, Exchange, Flow, Request, Stage};
use crate::api::error::ApiError;

pub struct Authorize;

impl Stage for Authorize {
    fn name(&self) -> &'static str {
        "authorize"
    }

    fn on_request_body(&mut self, x: &mut Exchange, _req: &Request, _ctx: &Ctx) -> Flow {
        let Some(alias) = x.ask.as_ref().map(|a| a.alias.as_str()) else { return Flow::Next };
        match x.key() {
            None => Flow::Fail(ApiError::invalid_key()),
            Some(key) if !key.may_use(alias) => Flow::Fail(ApiError::model_not_allowed(alias)),
            Some(_) => Flow::Next,
        }
    }
}

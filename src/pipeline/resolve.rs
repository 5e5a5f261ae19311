//! Resolve: what the request is for. At header time it answers the model endpoints (`/v1/models`, which
//! list what the caller may use) and checks the content type and declared size; once the body is in (the
//! client API's front door has parsed it) it finds the configured model and what a reservation assumes.

use super::{Ask, Ctx, Exchange, Flow, Request, Stage};
use crate::api::error::ApiError;
use crate::api::openai::{self as request, Operation};
use crate::http::{Headers, LocalResponse};
use crate::identity::Verified;
use serde_json::json;

pub struct Resolve;

impl Stage for Resolve {
    fn name(&self) -> &'static str {
        "resolve"
    }

    fn on_request_headers(
        &mut self,
        x: &mut Exchange,
        h: &dyn Headers,
        _v: &dyn Verified,
        end_of_stream: bool,
    ) -> Flow {
        if !x.authenticated() {
            return Flow::Fail(ApiError::invalid_key());
        }
        match x.op {
            Some(Operation::ListModels) => {
                let head = h.get(":method").is_some_and(|m| m == "HEAD");
                let body = match (head, x.key(), &x.user) {
                    (true, _, _) => Vec::new(),
                    (false, Some(key), _) => key.models_json.as_bytes().to_vec(),
                    (false, None, Some(user)) => user.models_json(&x.cfg).into_bytes(),
                    (false, None, None) => Vec::new(),
                };
                return Flow::Respond(LocalResponse::json(200, body));
            }
            Some(Operation::RetrieveModel) => {
                let id = request::retrieve_model_id(&x.path);
                let found = x.cfg.models.get(&id).filter(|_| x.may_use(&id));
                return match found {
                    Some(m) => {
                        let owner = m
                            .targets
                            .first()
                            .and_then(|t| x.cfg.provider(t.provider))
                            .map_or("switchyard", |p| p.name.as_str());
                        let body = json!({"id": m.name, "object": "model", "created": 0, "owned_by": owner});
                        Flow::Respond(LocalResponse::json(200, body.to_string()))
                    }
                    None => Flow::Fail(ApiError::model_not_found(&id)),
                };
            }
            _ => {}
        }
        if let Some(ct) = h.get("content-type") {
            if !request::is_json_content_type(&ct) {
                return Flow::Fail(ApiError::unsupported_media_type(&ct));
            }
        }
        if let Some(len) = h.get("content-length").and_then(|l| l.trim().parse::<u64>().ok()) {
            if len > x.cfg.max_body_bytes as u64 {
                return Flow::Fail(ApiError::too_large(x.cfg.max_body_bytes));
            }
        }
        if end_of_stream {
            return Flow::Fail(ApiError::invalid_request("The request has no body; send a JSON object.", None));
        }
        Flow::Next
    }

    fn on_request_body(&mut self, x: &mut Exchange, req: &Request, _ctx: &Ctx) -> Flow {
        let alias = req.model();
        let Some(model) = x.cfg.models.get(alias) else {
            return Flow::Fail(match x.cfg.unavailable.get(alias) {
                Some(provider) => ApiError::model_unavailable(alias, provider),
                None => ApiError::model_not_found(alias),
            });
        };
        // Documented estimate: request bytes / 4 for the prompt, plus the request's max output tokens or
        // the configured default.
        x.ask = Some(Ask {
            alias: model.name.clone(),
            stream: req.stream(),
            client_wants_usage: req.client_wants_usage(),
            prompt_estimate: request::estimate_tokens(req.bytes.len()),
            output_reserved: req.max_output().unwrap_or(x.cfg.default_max_output_tokens),
        });
        Flow::Next
    }
}

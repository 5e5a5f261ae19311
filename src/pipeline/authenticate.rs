//! Authenticate: who is calling. The caller presents a virtual key (`Authorization: Bearer KEY`, else
//! `x-api-key: KEY`) whose SHA-256 matches a configured key; or, where `identity.accept` lists `jwt`, a
//! JWT that Envoy's `jwt_authn` filter (before this one) verified, whose claims name a user and their
//! teams (`crate::identity`).
//!
//! In order: a configured virtual key (when keys are accepted) is that key; else (when JWTs are
//! accepted) verified claims are that user (a user claim missing or not a string: 401 `invalid_token`);
//! else a failed verification is 401 `invalid_token` with Envoy's reason and `WWW-Authenticate` when the
//! credential has the form of a JWT or keys are not accepted; else 401 `missing_api_key` /
//! `invalid_api_key` as without identity. The metadata is read only on the JWT path.

use super::{Exchange, Flow, Stage};
use crate::api::error::ApiError;
use crate::http::Headers;
use crate::identity::metadata::{self, Jwt};
use crate::identity::{looks_like_jwt, User, Verified};

/// The header a user names the team to attribute a request to (one of theirs that grants the model).
pub const H_TEAM: &str = "x-switchyard-team";

pub struct Authenticate;

impl Stage for Authenticate {
    fn name(&self) -> &'static str {
        "authenticate"
    }

    fn on_request_headers(&mut self, x: &mut Exchange, h: &dyn Headers, v: &dyn Verified, _eos: bool) -> Flow {
        let presented = presented_key(h);
        let keys = x.cfg.accepts_keys();
        if keys {
            if let Some(i) = presented.as_deref().and_then(|s| x.cfg.key_index(s)) {
                x.key = Some(i);
                x.team = x.cfg.keys.get(i).and_then(|k| k.team_id);
                return Flow::Next;
            }
        }
        if x.cfg.accepts_jwt() {
            if let Some(flow) = user(x, h, v, presented.as_deref(), keys) {
                return flow;
            }
        }
        match presented {
            None => Flow::Fail(ApiError::missing_key()),
            Some(_) => Flow::Fail(ApiError::invalid_key()),
        }
    }
}

/// The JWT path: the user, or the refusal; `None` to fall back to the virtual-key answers.
fn user(x: &mut Exchange, h: &dyn Headers, v: &dyn Verified, presented: Option<&str>, keys: bool) -> Option<Flow> {
    let bytes = v.metadata().unwrap_or_default();
    let verdict = match metadata::read(&bytes) {
        Ok(verdict) => verdict,
        Err(_) => return Some(Flow::Fail(ApiError::invalid_token("the verified claims could not be read"))),
    };
    match verdict {
        Jwt::Verified(claims) => {
            let identity = x.cfg.identity.as_ref()?;
            match User::from_claims(&x.cfg, identity, &claims) {
                Ok(u) => {
                    x.user = Some(u);
                    x.team_asked = h.get(H_TEAM).map(|t| t.trim().to_string());
                    Some(Flow::Next)
                }
                Err(e) => Some(Flow::Fail(e)),
            }
        }
        Jwt::Failed(f) if !keys || presented.is_some_and(looks_like_jwt) => {
            let reason = if f.message.is_empty() { "Envoy's jwt_authn filter did not verify it" } else { &f.message };
            Some(Flow::Fail(ApiError::invalid_token(reason)))
        }
        Jwt::Absent if !keys => Some(Flow::Fail(ApiError::invalid_token(
            "no token verified by Envoy's jwt_authn filter (it must run before this filter)",
        ))),
        Jwt::Failed(_) | Jwt::Absent => None,
    }
}

/// The presented virtual key: `Authorization: Bearer KEY`, else `x-api-key: KEY`.
pub fn presented_key(h: &dyn Headers) -> Option<String> {
    if let Some(auth) = h.get("authorization") {
        let auth = auth.trim();
        if let Some((scheme, rest)) = auth.split_once(' ') {
            if scheme.eq_ignore_ascii_case("bearer") && !rest.trim().is_empty() {
                return Some(rest.trim().to_string());
            }
        }
    }
    h.get("x-api-key").map(|k| k.trim().to_string()).filter(|k| !k.is_empty())
}

//! Authenticate: who is calling. The caller presents a virtual key (`Authorization: Bearer KEY`, else
//! `x-api-key: KEY`); its SHA-256 must match a configured key. Later: JWT principals (identity issue).

use super::{Exchange, Flow, Stage};
use crate::api::error::ApiError;
use crate::http::Headers;

pub struct Authenticate;

impl Stage for Authenticate {
    fn name(&self) -> &'static str {
        "authenticate"
    }

    fn on_request_headers(&mut self, x: &mut Exchange, h: &dyn Headers, _end_of_stream: bool) -> Flow {
        let Some(secret) = presented_key(h) else { return Flow::Fail(ApiError::missing_key()) };
        match x.cfg.key_index(&secret) {
            Some(i) => {
                x.key = Some(i);
                Flow::Next
            }
            None => Flow::Fail(ApiError::invalid_key()),
        }
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

//! Users identified by a JWT that Envoy verified: reading Envoy's verdict (`metadata.rs`), and turning
//! verified claims into a [`User`] with their teams. Envoy's `jwt_authn` filter checks the token (issuer,
//! audiences, expiry, signature against the identity provider's JWKS); this filter never reads a claim
//! from anywhere but what `jwt_authn` left in the request's dynamic metadata.
//!
//! The host hands the metadata in through [`Verified`], read only when asked: the authenticate stage asks
//! only when the config accepts JWTs and the caller presented no virtual key, so nothing is read for
//! configs without `identity.accept: [jwt]`.

pub mod metadata;
#[cfg(test)]
pub(crate) mod tests;

use crate::api::error::ApiError;
use crate::codec::sha256;
use crate::config::{Config, Identity, LogUser, TeamId};
use metadata::{Claim, Claims};

/// The longest user id accepted (the claim's value; it names limit records and appears in the log).
pub const MAX_USER_ID: usize = 256;

/// The request's dynamic metadata as Envoy holds it (`get_property(["metadata"])`: a serialised
/// `envoy.config.core.v3.Metadata`), read from the host only when asked.
pub trait Verified {
    /// The serialised metadata (`None`: the host has none).
    fn metadata(&self) -> Option<Vec<u8>>;
}

/// No metadata (callers of the pipeline that have no host, and configs that never ask).
pub struct NoMetadata;

impl Verified for NoMetadata {
    fn metadata(&self) -> Option<Vec<u8>> {
        None
    }
}

/// A user: the user claim's value and the teams their teams claim makes them a member of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: String,
    /// Sorted (so by team name) and each once.
    pub teams: Vec<TeamId>,
}

impl User {
    /// The user from verified claims, or the 401 to send: the user claim must be a non-empty string of
    /// at most [`MAX_USER_ID`] bytes.
    pub fn from_claims(cfg: &Config, identity: &Identity, claims: &Claims) -> Result<User, ApiError> {
        let unreadable = |_| ApiError::invalid_token("the verified claims could not be read");
        let id = match claims.get(&identity.user_claim).map_err(unreadable)? {
            Some(Claim::Str(s)) if !s.is_empty() && s.len() <= MAX_USER_ID => s.to_string(),
            Some(Claim::Str(s)) if !s.is_empty() => {
                return Err(ApiError::invalid_token(&format!(
                    "the claim '{}' is longer than {MAX_USER_ID} bytes",
                    identity.user_claim
                )))
            }
            _ => {
                return Err(ApiError::invalid_token(&format!(
                    "the token has no claim '{}' naming the user (a non-empty string)",
                    identity.user_claim
                )))
            }
        };
        let mut teams = Vec::new();
        if let Some(path) = &identity.teams_claim {
            if let Some(claim) = claims.get(path).map_err(unreadable)? {
                for value in claim.strings().map_err(unreadable)? {
                    teams.extend_from_slice(cfg.teams_for_claim(value));
                }
            }
        }
        teams.sort_unstable();
        teams.dedup();
        Ok(User { id, teams })
    }

    /// Whether any of the user's teams grants `model`.
    pub fn may_use(&self, cfg: &Config, model: &str) -> bool {
        self.teams.iter().filter_map(|t| cfg.team(*t)).any(|t| t.may_use(model))
    }

    /// The team a request for `model` is attributed to: `asked` (the `x-switchyard-team` header) when
    /// it is one of the user's teams and grants the model, else the first of the user's teams (by name)
    /// that grants it; or the 403 to send.
    pub fn attribute(&self, cfg: &Config, model: &str, asked: Option<&str>) -> Result<TeamId, ApiError> {
        if let Some(name) = asked {
            let Some(id) = cfg.team_id(name).filter(|t| self.teams.contains(t)) else {
                return Err(ApiError::team_not_allowed(name));
            };
            return match cfg.team(id) {
                Some(t) if t.may_use(model) => Ok(id),
                _ => Err(ApiError::model_not_granted(model, &format!("the team '{name}' does not grant it"))),
            };
        }
        let granting = self.teams.iter().copied().find(|t| cfg.team(*t).is_some_and(|t| t.may_use(model)));
        granting.ok_or_else(|| ApiError::model_not_granted(model, "none of your teams grants it"))
    }

    /// The `GET /v1/models` answer: every served model one of the user's teams grants, sorted.
    pub fn models_json(&self, cfg: &Config) -> String {
        let mut names: Vec<&str> =
            self.teams.iter().filter_map(|t| cfg.team(*t)).flat_map(|t| t.listed.iter().map(String::as_str)).collect();
        names.sort_unstable();
        names.dedup();
        cfg.models_json(&names)
    }

    /// The user as the access log shows them (`identity.log_user`).
    pub fn for_log(&self, how: LogUser) -> Option<String> {
        match how {
            LogUser::Plain => Some(self.id.clone()),
            LogUser::Hashed => {
                let hex = sha256::to_hex(&sha256::digest(self.id.as_bytes()));
                Some(hex.get(..16).unwrap_or_default().to_string())
            }
            LogUser::Off => None,
        }
    }
}

/// Whether a presented credential has the form of a JWT (three parts, two dots), as opposed to a
/// virtual key: a failed verification of such a credential is worth telling the client about.
pub fn looks_like_jwt(credential: &str) -> bool {
    credential.bytes().filter(|b| *b == b'.').count() == 2
}

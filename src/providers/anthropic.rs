//! Not implemented yet: the config refuses this provider kind while READY is false.

use super::{Attempt, Outgoing};
use crate::error::ApiError;

/// Whether the config may accept this provider kind.
pub const READY: bool = false;

pub fn prepare(a: &Attempt, _body: &[u8]) -> Result<Outgoing, ApiError> {
    Err(ApiError::gateway(format!("provider kind {} is not supported yet", a.provider.kind.name())))
}

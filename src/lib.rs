//! Switchyard: an AI model gateway that runs inside Envoy as a proxy-wasm filter.
//!
//! The crate is a pure core (everything but `host`), tested natively with `cargo test`, and a thin
//! host adapter compiled only for wasm32 that moves headers and bytes between Envoy and the core.

pub mod api;
pub mod cache;
pub mod codec;
pub mod config;
pub mod forwarding;
/// The gateway file and what the `switchyard` CLI renders from it (native only).
#[cfg(not(target_arch = "wasm32"))]
pub mod gateway;
pub mod http;
pub mod identity;
pub mod limits;
pub mod observe;
pub mod pipeline;
pub mod providers;
pub mod role;
pub mod upstream;

#[cfg(target_arch = "wasm32")]
mod host;

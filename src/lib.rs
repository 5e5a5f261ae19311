//! Switchyard: an AI model gateway that runs inside Envoy as a proxy-wasm filter.
//!
//! The crate is a pure core (everything but `adapter`), tested natively with `cargo test`, and a thin
//! host adapter compiled only for wasm32 that moves headers and bytes between Envoy and the core.

pub mod anthropic_input;
pub mod config;
pub mod error;
pub mod eventstream;
pub mod http;
pub mod limits;
pub mod messages;
pub mod observe;
pub mod providers;
pub mod request;
pub mod route;
pub mod sha256;
pub mod sigv4;
pub mod sse;
pub mod upstream;
pub mod usage;

#[cfg(target_arch = "wasm32")]
mod adapter;

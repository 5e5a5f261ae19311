//! switchyard-limits: Switchyard's fleet-wide limits and budgets. It answers Envoy's rate-limit service
//! protocol (`envoy.service.ratelimit.v3`, gRPC) with its state in Redis, one atomic Lua script call per
//! request: admission all or nothing, settlement (refund/charge) of what requests really used.
//!
//! It also serves the fleet tier of Switchyard's response cache (`switchyard.cache.v1.Cache`: Get and Put
//! of opaque entries under 32-byte keys, Redis GET / SET EX), in the same process and on the same port.
//!
//! Layout: `plan` turns descriptors into script items (`rules` for standard descriptors, `budget` for
//! periods, `keys` for Redis names); `script` + `limits.lua` decide; `store` talks to Redis; `grpc`,
//! `cache` and `admin` serve; `server` wires them up for `main`.

pub mod admin;
pub mod budget;
pub mod cache;
pub mod grpc;
pub mod keys;
pub mod log;
pub mod metrics;
pub mod plan;
pub mod rules;
pub mod script;
pub mod server;
pub mod store;

/// The protocol's messages, server and client (generated from proto/rls.proto).
pub mod proto {
    #![allow(clippy::all, clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    tonic::include_proto!("envoy.service.ratelimit.v3");
}

/// The response cache's fleet tier: messages, server and client (generated from proto/cache.proto).
pub mod cache_proto {
    #![allow(clippy::all, clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    tonic::include_proto!("switchyard.cache.v1");
}

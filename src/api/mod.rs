//! Client APIs: what the gateway accepts from clients, one folder per API (parse, pivot, streams,
//! errors), and the error type every API renders in its own shape.

pub mod anthropic;
pub mod error;
pub mod openai;

//! Wire codecs the translators share: SSE, the AWS event stream, SigV4 and SHA-256.

pub mod eventstream;
pub mod sha256;
pub mod sigv4;
pub mod sse;

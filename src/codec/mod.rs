//! Wire codecs the translators share: SSE, the AWS event stream, SigV4, SHA-256,
//! percent-encoding, and fast byte searches.

pub mod bytes;
pub mod eventstream;
pub mod percent;
pub mod protobuf;
pub mod sha256;
pub mod sigv4;
pub mod sse;

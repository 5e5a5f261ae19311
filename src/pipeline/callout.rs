//! Callouts: a stage's request to call another service through an Envoy cluster (a Wasm filter opens no
//! sockets), and the outcome it is resumed with. The pipeline keeps the request paused meanwhile
//! ([`super::Pipeline::on_callout`]); the host makes the call (`dispatch_http_call` /
//! `dispatch_grpc_call`) and hands back what came of it.

/// A call to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Callout {
    /// The Envoy cluster to call.
    pub cluster: String,
    /// How long to wait, in milliseconds (Envoy ends the call then; an answer later than this counts as
    /// a timeout here too).
    pub timeout_ms: u64,
    pub kind: CalloutKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CalloutKind {
    /// An HTTP request (`:method`, `:path` and `:authority` among the headers).
    Http { headers: Vec<(String, String)>, body: Vec<u8> },
    /// A unary gRPC call: `service` is the fully qualified service name, `message` the encoded request.
    Grpc { service: String, method: String, metadata: Vec<(String, Vec<u8>)>, message: Vec<u8> },
}

impl Callout {
    pub fn timeout_ns(&self) -> u64 {
        self.timeout_ms.saturating_mul(1_000_000)
    }
}

/// What came of a callout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CalloutOutcome {
    /// The service answered: an HTTP status, or for gRPC the grpc-status (0 is OK).
    Answer { status: u32, headers: Vec<(String, String)>, body: Vec<u8> },
    /// No answer: the cluster is unknown or has no healthy host, the connection failed or was reset, or
    /// Envoy refused to start the call.
    Failed(String),
    /// The answer did not come in time.
    TimedOut,
}

/// gRPC's DEADLINE_EXCEEDED.
pub const GRPC_DEADLINE_EXCEEDED: u32 = 4;

impl CalloutOutcome {
    /// The outcome as the stage sees it: an answer that came at or after the deadline is a timeout (time
    /// is passed in, so this does not depend on how the host reports Envoy's own timeout).
    pub fn by_deadline(self, now_ns: u64, deadline_ns: u64) -> CalloutOutcome {
        match self {
            CalloutOutcome::Answer { .. } if now_ns >= deadline_ns => CalloutOutcome::TimedOut,
            other => other,
        }
    }

    /// The outcome of a gRPC call from its status and message bytes.
    pub fn grpc(status: u32, message: Vec<u8>, detail: Option<String>) -> CalloutOutcome {
        match status {
            0 => CalloutOutcome::Answer { status, headers: Vec::new(), body: message },
            GRPC_DEADLINE_EXCEEDED => CalloutOutcome::TimedOut,
            s => CalloutOutcome::Failed(detail.unwrap_or_else(|| format!("grpc status {s}"))),
        }
    }
}

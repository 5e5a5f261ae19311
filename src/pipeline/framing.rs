//! Response framing: what becomes of a response's `content-length` when the route role may change its
//! body. A body rewritten chunk by chunk goes out without a length (chunked); a body rewritten whole at
//! its end gets a length: the headers wait for the new body, which then gives it, and the status the body
//! decided (an unreadable answer is a 502 however it began), whether the provider sent a length or not.

/// What the host does with the response headers' `content-length`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// Leave the headers as they are.
    Keep,
    /// Remove `content-length` (the body changes as it streams).
    DropLength,
    /// Hold the headers until the body is complete, then set `content-length` to the new body's length
    /// (and the status, when the body changed it).
    HoldForLength,
}

/// The framing of a response: `rewrites`, the body may change; `buffers`, it is rewritten whole at its
/// end; `has_length`, the headers carry a `content-length`; `end_of_stream`, the headers are all there is.
pub fn policy(rewrites: bool, buffers: bool, has_length: bool, end_of_stream: bool) -> Framing {
    match (rewrites, buffers && !end_of_stream, has_length) {
        (false, _, _) => Framing::Keep,
        (true, true, _) => Framing::HoldForLength,
        (true, false, true) => Framing::DropLength,
        (true, false, false) => Framing::Keep,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        use Framing::*;
        // (rewrites, buffers, has_length, end_of_stream) -> framing
        let rows = [
            ((false, false, true, false), Keep),
            ((false, true, true, false), Keep),
            ((true, false, false, false), Keep),
            // A body rewritten whole holds its headers even without a length: its status may change.
            ((true, true, false, false), HoldForLength),
            ((true, false, true, false), DropLength),
            ((true, false, true, true), DropLength),
            ((true, true, true, false), HoldForLength),
            ((true, true, true, true), DropLength),
        ];
        for ((r, b, l, e), want) in rows {
            assert_eq!(policy(r, b, l, e), want, "rewrites={r} buffers={b} length={l} eos={e}");
        }
    }
}

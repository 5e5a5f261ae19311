//! The cross-role request registry: what the route role decided for a forwarded request, by request id,
//! for the upstream role's attempts. Both roles of one worker thread run in one VM, so the host keeps one
//! registry per VM; Envoy hands every retry the request headers as the previous attempt left them, so
//! they cannot carry this past the first attempt.

use crate::http::RequestInfo;

/// Requests remembered at once; past this the upstream role falls back to a header (first attempt only).
pub const MAX_REQUESTS: usize = 65_536;

pub struct Registry {
    map: hashbrown::HashMap<String, (RequestInfo, u32)>,
    capacity: usize,
}

/// Where a request was registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    /// The id the request is known by (the client's `x-request-id`, or a fresh one).
    pub id: String,
    /// Set `x-request-id` to this: the client's id was missing, empty or already in use.
    pub new_request_id: Option<String>,
    /// The registry had no room: the first attempt reads the model from the `x-switchyard-model` header
    /// set to this (retries cannot).
    pub model_header: Option<String>,
}

impl Default for Registry {
    fn default() -> Self {
        Registry::with_capacity(MAX_REQUESTS)
    }
}

impl Registry {
    pub fn with_capacity(capacity: usize) -> Self {
        Registry { map: hashbrown::HashMap::new(), capacity }
    }

    /// Remembers `info` under the client's request id, or a fresh id (`sy-{now:x}-{seq:x}`) when the
    /// client's is missing, empty or taken.
    pub fn register(&mut self, client_id: Option<&str>, info: RequestInfo, now_ns: u64, seq: u64) -> Registration {
        let (id, new_request_id) = match client_id.filter(|id| !id.is_empty()) {
            Some(id) if !self.map.contains_key(id) => (id.to_string(), None),
            _ => {
                let fresh = format!("sy-{now_ns:x}-{seq:x}");
                (fresh.clone(), Some(fresh))
            }
        };
        let model_header = if self.map.len() < self.capacity {
            self.map.insert(id.clone(), (info, 0));
            None
        } else {
            Some(info.alias)
        };
        Registration { id, new_request_id, model_header }
    }

    /// An upstream attempt of request `id` starts: counts it and returns what the route role decided.
    pub fn attempt(&mut self, id: &str) -> Option<RequestInfo> {
        self.map.get_mut(id).map(|(info, attempts)| {
            *attempts += 1;
            info.clone()
        })
    }

    /// How many attempts request `id` made so far.
    pub fn attempts(&self, id: &str) -> u32 {
        self.map.get(id).map_or(0, |(_, n)| *n)
    }

    /// The request is over.
    pub fn remove(&mut self, id: &str) {
        self.map.remove(id);
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::openai::Operation;

    fn info(alias: &str) -> RequestInfo {
        RequestInfo {
            op: Operation::ChatCompletions,
            alias: alias.into(),
            body_ready: false,
            path: "/v1/chat/completions".into(),
            translated: None,
            steering: Vec::new(),
        }
    }

    #[test]
    fn keeps_the_clients_id_and_counts_attempts() {
        let mut r = Registry::default();
        let reg = r.register(Some("abc"), info("m"), 1, 1);
        assert_eq!(reg, Registration { id: "abc".into(), new_request_id: None, model_header: None });
        assert_eq!(r.attempts("abc"), 0);
        assert_eq!(r.attempt("abc").map(|i| i.alias), Some("m".into()));
        assert_eq!(r.attempt("abc").map(|i| i.alias), Some("m".into()));
        assert_eq!(r.attempts("abc"), 2);
        assert_eq!(r.attempt("other"), None);
        r.remove("abc");
        assert!(r.is_empty());
        assert_eq!(r.attempts("abc"), 0);
    }

    #[test]
    fn a_missing_empty_or_taken_id_gets_a_fresh_one() {
        let mut r = Registry::default();
        let none = r.register(None, info("a"), 0x10, 1);
        assert_eq!(none.id, "sy-10-1");
        assert_eq!(none.new_request_id.as_deref(), Some("sy-10-1"));
        let empty = r.register(Some(""), info("b"), 0x10, 2);
        assert_eq!(empty.id, "sy-10-2");
        r.register(Some("dup"), info("c"), 0x10, 3);
        let taken = r.register(Some("dup"), info("d"), 0x10, 4);
        assert_eq!(taken.id, "sy-10-4", "a colliding id must not overwrite the first request's decision");
        assert_eq!(r.attempt("dup").map(|i| i.alias), Some("c".into()));
        assert_eq!(r.attempt("sy-10-4").map(|i| i.alias), Some("d".into()));
        assert_eq!(r.len(), 4);
    }

    #[test]
    fn past_capacity_the_model_travels_in_a_header() {
        let mut r = Registry::with_capacity(2);
        assert_eq!(r.register(Some("1"), info("a"), 0, 1).model_header, None);
        assert_eq!(r.register(Some("2"), info("b"), 0, 2).model_header, None);
        let full = r.register(Some("3"), info("c"), 0, 3);
        assert_eq!(full.model_header.as_deref(), Some("c"));
        assert_eq!(full.id, "3");
        assert_eq!(r.attempt("3"), None, "not remembered");
        r.remove("1");
        assert_eq!(r.register(Some("4"), info("d"), 0, 4).model_header, None, "room again once one is done");
    }
}

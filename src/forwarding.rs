//! Which of the client's request headers reach a provider. The gateway calls the provider with its own
//! credential, so a header that steers the provider account (`openai-organization` and `openai-project`
//! choose which OpenAI organization or project the gateway's key bills, `anthropic-beta` turns on beta
//! features) must not pass from any caller. The route role forwards an allow-list ([`by_default`]) and
//! removes every other header the client sent, in one pass over the names present; a provider's
//! `forward_headers` (config) adds names that then reach that provider only.
//!
//! Where it is decided: at header time the route role keeps the allow-list and the names some
//! provider forwards (their values noted in the exchange); once the model is known, dispatch removes
//! those none of its targets forwards; with several targets, each attempt (upstream role) sets or
//! removes them for the provider Envoy picked, from the values the route role noted (an earlier
//! attempt may have removed them from the headers the retry gets).

use crate::config::ProviderId;
use crate::http::{Headers, CREDENTIAL_HEADERS, INTERNAL_HEADERS};
use std::rc::Rc;

/// The most distinct names all providers' `forward_headers` may list together.
pub const MAX_NAMES: usize = 64;

/// Forwarded to every provider: pseudo-headers, the body's framing and type, `accept`, `user-agent`,
/// the request id and the tracing headers (W3C, B3, Datadog, Google Cloud, AWS X-Ray, OpenTracing).
/// Not on it, among others: `accept-encoding` (the filter reads every answer, which must not come back
/// compressed), cookies, `x-forwarded-for`, the SDKs' `x-stainless-*`, Envoy's `x-envoy-*` (so a client
/// cannot set Envoy's retries or timeouts either) and every provider-steering header.
pub fn by_default(name: &str) -> bool {
    name.starts_with(':')
        || matches!(
            name,
            "content-type"
                | "content-length"
                | "transfer-encoding"
                | "accept"
                | "user-agent"
                | "x-request-id"
                | "x-forwarded-proto"
                | "traceparent"
                | "tracestate"
                | "b3"
                | "x-ot-span-context"
                | "x-cloud-trace-context"
                | "grpc-trace-bin"
                | "x-amzn-trace-id"
        )
        || name.starts_with("x-b3-")
        || name.starts_with("x-datadog-")
}

/// Headers the route role removes by name anyway (credentials, its own routing headers).
fn removed_by_name(name: &str) -> bool {
    CREDENTIAL_HEADERS.contains(&name) || INTERNAL_HEADERS.contains(&name)
}

/// Why a name may not be listed in `forward_headers`, if it may not.
pub fn refused(name: &str) -> Option<&'static str> {
    let token = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b"!#$%&'*+-.^_`|~".contains(&b);
    if name.is_empty() || !name.bytes().all(token) {
        return Some("must be a lower-case header name (letters, digits and !#$%&'*+-.^_`|~)");
    }
    if CREDENTIAL_HEADERS.contains(&name) {
        return Some("carries a credential: the gateway sends the provider its own");
    }
    if name.starts_with("x-switchyard-") {
        return Some("is the gateway's own header");
    }
    if name.starts_with("x-envoy-") {
        return Some("is Envoy's own header");
    }
    if name == "accept-encoding" {
        return Some("cannot be forwarded: the filter reads the provider's answers, which must not be compressed");
    }
    if matches!(name, "connection" | "keep-alive" | "proxy-connection" | "te" | "trailer" | "upgrade" | "host") {
        return Some("belongs to the connection, not to the provider");
    }
    if matches!(name, "anthropic-version" | "x-amz-date" | "x-amz-security-token" | "x-amz-content-sha256") {
        return Some("is set by the gateway for the provider");
    }
    if by_default(name) {
        return Some("is forwarded to every provider already");
    }
    None
}

/// The names providers forward beyond the allow-list, and which provider forwards which: built at
/// config load.
#[derive(Debug, Default)]
pub struct Forwarding {
    /// Every name some provider's `forward_headers` lists (at most [`MAX_NAMES`]).
    names: Vec<Rc<str>>,
    /// Per provider id: bit `i` set when it forwards `names[i]`.
    masks: Vec<u64>,
}

/// A forwarded name the client sent: its index in [`Forwarding`]'s names, and its value.
pub type Noted = (u8, String);

impl Forwarding {
    /// From each provider's list (by provider id); `Err` gives the provider and position of the name
    /// past [`MAX_NAMES`].
    pub fn new(lists: &[&[String]]) -> Result<Forwarding, (usize, usize)> {
        let mut f = Forwarding { names: Vec::new(), masks: vec![0; lists.len()] };
        for (p, list) in lists.iter().enumerate() {
            for (j, name) in list.iter().enumerate() {
                let i = match f.index(name) {
                    Some(i) => i as usize,
                    None if f.names.len() < MAX_NAMES => {
                        f.names.push(Rc::from(name.as_str()));
                        f.names.len() - 1
                    }
                    None => return Err((p, j)),
                };
                if let Some(m) = f.masks.get_mut(p) {
                    *m |= 1 << i;
                }
            }
        }
        Ok(f)
    }

    /// No provider forwards anything beyond the allow-list.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    fn index(&self, name: &str) -> Option<u8> {
        self.names.iter().position(|n| **n == *name).map(|i| i as u8)
    }

    /// Whether provider `p` forwards the name at index `i`.
    pub fn allows(&self, p: ProviderId, i: u8) -> bool {
        self.masks.get(p).is_some_and(|m| m & (1u64 << (i & 63)) != 0)
    }

    /// Whether provider `p` forwards header `name` beyond the allow-list.
    pub fn forwards(&self, p: ProviderId, name: &str) -> bool {
        self.index(name).is_some_and(|i| self.allows(p, i))
    }

    fn name(&self, i: u8) -> Option<&Rc<str>> {
        self.names.get(i as usize)
    }

    /// The route role at header time, in one pass over the names present: the positions of the headers
    /// not forwarded go to `drop` (credentials and the gateway's own headers are removed by name
    /// elsewhere), the names some provider forwards are noted with their values in `noted`.
    pub fn sort(&self, h: &dyn Headers, drop: &mut Vec<u32>, noted: &mut Vec<Noted>) {
        let mut at = 0u32;
        h.each_name(&mut |name| {
            if !by_default(name) && !removed_by_name(name) {
                match self.index(name) {
                    None => drop.push(at),
                    Some(i) if !noted.iter().any(|(j, _)| *j == i) => {
                        if let Some(v) = h.get(name) {
                            noted.push((i, v));
                        }
                    }
                    Some(_) => {}
                }
            }
            at += 1;
        });
    }

    /// Dispatch, once the model's targets are known: the noted headers that none of `targets` forwards
    /// are removed (into `edits`); with several targets, the ones some target forwards are returned for
    /// the attempts to set or remove ([`Forwarding::for_attempt`]).
    pub fn at_dispatch(
        &self,
        targets: &[ProviderId],
        noted: &[Noted],
        edits: &mut Vec<(Rc<str>, Option<String>)>,
    ) -> Vec<Noted> {
        let mut per_attempt = Vec::new();
        for (i, v) in noted {
            let forwarded_by = targets.iter().filter(|p| self.allows(**p, *i)).count();
            if forwarded_by == 0 {
                edits.extend(self.name(*i).map(|n| (n.clone(), None)));
            } else if forwarded_by < targets.len() {
                per_attempt.push((*i, v.clone()));
            }
        }
        per_attempt
    }

    /// One attempt to provider `p`: the noted headers it forwards are set, the others removed. Without
    /// notes (the route role could not register the request), every name `p` does not forward that is
    /// present is removed.
    pub fn for_attempt(
        &self,
        p: ProviderId,
        noted: Option<&[Noted]>,
        h: &dyn Headers,
        edits: &mut Vec<(Rc<str>, Option<String>)>,
    ) {
        match noted {
            Some(noted) => {
                for (i, v) in noted {
                    let value = self.allows(p, *i).then(|| v.clone());
                    edits.extend(self.name(*i).map(|n| (n.clone(), value)));
                }
            }
            None => {
                for (i, n) in self.names.iter().enumerate() {
                    if !self.allows(p, i as u8) && h.get(n).is_some() {
                        edits.push((n.clone(), None));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::testing::MapHeaders;

    fn strings(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_allow_list() {
        for name in [
            ":path",
            ":authority",
            "content-type",
            "accept",
            "x-request-id",
            "traceparent",
            "x-b3-traceid",
            "x-datadog-trace-id",
        ] {
            assert!(by_default(name), "{name}");
        }
        for name in [
            "accept-encoding",
            "openai-organization",
            "openai-project",
            "anthropic-beta",
            "cookie",
            "x-stainless-os",
            "x-envoy-retry-on",
            "x-forwarded-for",
            "authorization",
        ] {
            assert!(!by_default(name), "{name}");
        }
    }

    #[test]
    fn names_a_config_may_list() {
        for ok in ["openai-organization", "openai-project", "anthropic-beta", "x-goog-user-project", "x-custom_1"] {
            assert_eq!(refused(ok), None, "{ok}");
        }
        for (bad, why) in [
            ("OpenAI-Organization", "lower-case"),
            ("", "lower-case"),
            ("a b", "lower-case"),
            (":path", "lower-case"),
            ("authorization", "credential"),
            ("x-goog-api-key", "credential"),
            ("x-switchyard-cluster", "gateway's own"),
            ("x-envoy-retry-on", "Envoy's own"),
            ("accept-encoding", "compressed"),
            ("connection", "connection"),
            ("x-amz-date", "set by the gateway"),
            ("traceparent", "already"),
        ] {
            assert!(refused(bad).is_some_and(|r| r.contains(why)), "{bad}: {:?}", refused(bad));
        }
    }

    #[test]
    fn header_time_drops_what_is_not_forwarded_and_notes_what_a_provider_may() {
        // Provider 0 forwards openai-organization, provider 1 anthropic-beta, provider 2 nothing.
        let f = Forwarding::new(&[&strings(&["openai-organization"]), &strings(&["anthropic-beta"]), &[]]).unwrap();
        let h = MapHeaders::new(&[
            (":method", "POST"),
            ("authorization", "Bearer k"),
            ("accept-encoding", "gzip"),
            ("openai-organization", "org-1"),
            ("content-type", "application/json"),
            ("openai-project", "proj-1"),
            ("anthropic-beta", "b1"),
            ("x-switchyard-cluster", "c"),
            ("x-stainless-os", "Linux"),
        ]);
        let (mut drop, mut noted) = (Vec::new(), Vec::new());
        f.sort(&h, &mut drop, &mut noted);
        assert_eq!(drop, vec![2, 5, 8]);
        assert_eq!(noted, vec![(0, "org-1".to_string()), (1, "b1".to_string())]);

        // One target: what it does not forward goes; several: the attempts decide.
        let mut edits = Vec::new();
        assert!(f.at_dispatch(&[0], &noted, &mut edits).is_empty());
        assert_eq!(edits, vec![(Rc::from("anthropic-beta"), None)]);
        let mut edits = Vec::new();
        assert!(f.at_dispatch(&[2], &noted, &mut edits).is_empty());
        assert_eq!(edits.len(), 2);
        let mut edits = Vec::new();
        let per_attempt = f.at_dispatch(&[1, 0], &noted, &mut edits);
        assert!(edits.is_empty());
        assert_eq!(per_attempt, noted);

        let mut edits = Vec::new();
        f.for_attempt(1, Some(&per_attempt), &h, &mut edits);
        assert_eq!(
            edits,
            vec![(Rc::from("openai-organization"), None), (Rc::from("anthropic-beta"), Some("b1".to_string()))]
        );
        let mut edits = Vec::new();
        f.for_attempt(0, None, &h, &mut edits);
        assert_eq!(edits, vec![(Rc::from("anthropic-beta"), None)]);
    }

    #[test]
    fn at_most_64_names() {
        let many: Vec<String> = (0..=MAX_NAMES).map(|i| format!("x-h{i}")).collect();
        assert_eq!(Forwarding::new(&[&many[..MAX_NAMES], &many[..3]]).map(|_| ()), Ok(()));
        assert_eq!(Forwarding::new(&[&many[..40], &many[30..]]).map(|_| ()), Err((1, 34)));
        let f = Forwarding::new(&[&many[..MAX_NAMES]]).unwrap();
        assert!(f.allows(0, 63) && !f.allows(1, 0));
    }
}

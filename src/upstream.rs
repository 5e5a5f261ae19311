//! The upstream role: runs as an upstream HTTP filter inside a model's Envoy cluster, once per attempt,
//! after Envoy has picked the endpoint. It reads which provider that endpoint is (endpoint metadata), and
//! rewrites the attempt for it: path, credential, body. Responses get headers naming what served them.

use crate::api::error::ApiError;
use crate::api::openai::{self as request, Operation};
use crate::config::{Config, ProviderId};
use crate::http::{
    Decision, Headers, RequestInfo, Step, CREDENTIAL_HEADERS, H_CLUSTER, H_MODEL, H_ROUTE, H_SERVED_MODEL,
    H_SERVED_PROVIDER, INTERNAL_HEADERS,
};
use crate::providers::{self, BodyMode, ResponseTranslator};
use std::rc::Rc;

struct NoHeaders;

impl Headers for NoHeaders {
    fn get(&self, _name: &str) -> Option<String> {
        None
    }
}

/// What Envoy's chosen endpoint says about itself, from its `filter_metadata.switchyard`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EndpointMeta {
    /// A provider name from the config.
    pub provider: Option<String>,
    /// The provider's model name, when the endpoint pins one.
    pub model: Option<String>,
}

pub struct UpstreamFilter {
    cfg: Rc<Config>,
    /// The body is final already: nothing to do at body time.
    body_ready: bool,
    op: Option<Operation>,
    provider: Option<ProviderId>,
    alias: String,
    model: String,
    response: Option<Box<dyn ResponseTranslator>>,
    mode: Option<BodyMode>,
    /// Header-only attempt (see [`UpstreamFilter::on_ready_request`]): the response passes untouched and
    /// the route role names what served it.
    quiet: bool,
    /// The route role's translation, when this attempt must be prepared from the client's body instead.
    client_body: Option<std::rc::Rc<crate::http::Translated>>,
}

/// What to change on the request once its body is complete.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct BodyEdit {
    pub set: Vec<(&'static str, String)>,
    /// The new body; `None` keeps the client's.
    pub body: Option<Vec<u8>>,
}

/// What to change on the response headers.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ResponseHeadersEdit {
    pub status: Option<u16>,
    pub set: Vec<(&'static str, String)>,
    pub remove: Vec<&'static str>,
    /// `None`: the body passes through untouched.
    pub mode: Option<BodyMode>,
}

impl UpstreamFilter {
    pub fn new(cfg: Rc<Config>) -> Self {
        UpstreamFilter {
            cfg,
            body_ready: false,
            op: None,
            provider: None,
            alias: String::new(),
            model: String::new(),
            response: None,
            mode: None,
            quiet: false,
            client_body: None,
        }
    }

    /// The fast path for an attempt whose body the route role already wrote for the model's only target
    /// (`info.body_ready`): decided from the registry and the endpoint's metadata alone, with no look at
    /// the request headers (the route role removed the client's credentials and set `content-length`; only
    /// its routing header is left to drop). `None`: this attempt needs the general path
    /// ([`UpstreamFilter::on_request_headers`]).
    pub fn on_ready_request(&mut self, meta: &EndpointMeta, info: &RequestInfo) -> Option<Decision> {
        if !info.body_ready {
            return None;
        }
        match self.plan(&NoHeaders, meta, Some(info)) {
            Ok(mut d) if self.body_ready => {
                d.remove.clear();
                d.remove.extend_from_slice(&[H_CLUSTER, H_ROUTE]);
                self.quiet = true;
                Some(d)
            }
            Ok(_) => None,
            Err(e) => {
                log::warn!("upstream attempt refused: {}", e.message);
                Some(Decision::respond(e))
            }
        }
    }

    /// The response passes through untouched (no headers to read or add).
    pub fn passes_response(&self) -> bool {
        self.quiet
    }

    /// `info` is what the route-level filter registered for this request (present from the second attempt
    /// on, when the headers no longer say it).
    pub fn on_request_headers(&mut self, h: &dyn Headers, meta: &EndpointMeta, info: Option<&RequestInfo>) -> Decision {
        match self.plan(h, meta, info) {
            Ok(d) => d,
            Err(e) => {
                log::warn!("upstream attempt refused: {}", e.message);
                Decision::respond(e)
            }
        }
    }

    fn plan(&mut self, h: &dyn Headers, meta: &EndpointMeta, info: Option<&RequestInfo>) -> Result<Decision, ApiError> {
        let alias = match info {
            Some(i) => i.alias.clone(),
            // Only when the route filter's registry had no room (see the adapter).
            None => h.get(H_MODEL).ok_or_else(|| {
                ApiError::gateway("request reached a provider cluster without passing the route-level filter")
            })?,
        };
        let model = self
            .cfg
            .models
            .get(&alias)
            .ok_or_else(|| ApiError::gateway(format!("model '{alias}' is not in the upstream filter's config")))?;
        let target = match &meta.provider {
            Some(name) => {
                let (pid, _) = self
                    .cfg
                    .provider_by_name(name)
                    .ok_or_else(|| ApiError::gateway(format!("endpoint metadata names unknown provider '{name}'")))?;
                // An endpoint that is no target of this model is a configuration mismatch: never send the
                // request (with that provider's credential) to it.
                // The endpoint's `model` picks among several targets of one provider; an endpoint may also
                // pin a model name of its own for its provider's target.
                let t = model.target(pid, meta.model.as_deref()).or_else(|| model.target(pid, None)).ok_or_else(|| {
                    ApiError::gateway(format!(
                        "cluster '{}' picked an endpoint of provider '{name}', which is not a target of model '{alias}'",
                        model.cluster
                    ))
                })?;
                (pid, meta.model.clone().unwrap_or_else(|| t.model.clone()))
            }
            None => {
                let t = model.targets.first().ok_or_else(|| ApiError::gateway("model has no targets"))?;
                (t.provider, meta.model.clone().unwrap_or_else(|| t.model.clone()))
            }
        };
        if self.cfg.provider(target.0).is_none() {
            return Err(ApiError::gateway("unknown provider"));
        }
        self.op = Some(match info {
            Some(i) => i.op,
            None => {
                let method = h.get(":method").unwrap_or_default();
                let path = h.get(":path").unwrap_or_default();
                request::classify(&method, &path)?
            }
        });
        self.provider = Some(target.0);
        self.model = target.1;
        self.alias = alias;

        let mut d = Decision::new(Step::NeedBody);
        d.remove.extend_from_slice(CREDENTIAL_HEADERS);
        d.remove.extend_from_slice(INTERNAL_HEADERS);
        // Provider-steering headers: those this attempt's provider forwards, and no others.
        if !self.cfg.forwarding.is_empty() {
            self.cfg.forwarding.for_attempt(target.0, info.map(|i| i.steering.as_slice()), h, &mut d.steer);
        }
        // The route filter wrote the body for this very target: set path and credential now and let the
        // body through untouched (unless this endpoint pins another model name).
        let pinned_other = meta.model.as_ref().is_some_and(|m| Some(m) != model.targets.first().map(|t| &t.model));
        let ready = info.filter(|i| i.body_ready);
        if let (Some(info), false, Some(op), Some(p)) = (ready, pinned_other, self.op, self.cfg.provider(target.0)) {
            let call = match &info.translated {
                Some(t) => providers::UpstreamCall { path: t.path.clone(), auth: providers::credential(p) },
                None => providers::plan(p, op, &self.model)?,
            };
            d.step = Step::Continue;
            if info.path != call.path {
                d.set.push((":path", call.path));
            }
            d.set.extend(call.auth);
            self.body_ready = true;
        }
        // This attempt's body is written below: its length is not the one the headers say.
        if !self.body_ready {
            d.remove.push("content-length");
        }
        // A body translated for the model's target, at an endpoint that pins another model: this attempt
        // is prepared again from the client's body.
        self.client_body = info.and_then(|i| i.translated.clone()).filter(|_| !self.body_ready);
        Ok(d)
    }

    /// Whether the request body must be shown to [`UpstreamFilter::on_request_body`].
    pub fn wants_body(&self) -> bool {
        !self.body_ready
    }

    /// Given the whole request body: the path, headers and body to send for this attempt.
    pub fn on_request_body(&mut self, bytes: &[u8], now_unix: u64) -> Result<BodyEdit, ApiError> {
        let (Some(op), Some(pid)) = (self.op, self.provider) else { return Ok(BodyEdit::default()) };
        let provider = self.cfg.provider(pid).ok_or_else(|| ApiError::gateway("unknown provider"))?;
        let attempt = providers::Attempt {
            op,
            provider,
            model: &self.model,
            alias: &self.alias,
            now_unix,
            now_ns: now_unix.saturating_mul(1_000_000_000),
            usage_chunk: true,
            chat: None,
        };
        let body = self.client_body.as_ref().map_or(bytes, |t| t.client_body.as_slice());
        let out = providers::prepare(&attempt, body)?;
        self.response = out.response;
        let mut set = vec![(":path", out.path)];
        set.extend(out.headers);
        Ok(BodyEdit { set, body: out.body })
    }

    /// The provider's response headers are in.
    pub fn on_response_headers(&mut self, status: u16, content_type: Option<&str>) -> ResponseHeadersEdit {
        let mut edit = ResponseHeadersEdit::default();
        if let Some(p) = self.provider.and_then(|id| self.cfg.provider(id)) {
            edit.set.push((H_SERVED_PROVIDER, p.name.clone()));
            edit.set.push((H_SERVED_MODEL, self.model.clone()));
        }
        if let Some(t) = self.response.as_mut() {
            let (client_status, mode) = t.on_headers(status, content_type);
            if client_status != status {
                edit.status = Some(client_status);
            }
            edit.set.push(("content-type", t.content_type().to_string()));
            edit.remove.push("content-length");
            edit.mode = Some(mode);
            self.mode = Some(mode);
        }
        edit
    }

    /// `BodyMode::Buffer`: the whole response body; returns the client's body.
    pub fn on_response_body(&mut self, body: &[u8]) -> Option<Vec<u8>> {
        self.response.as_mut().map(|t| t.on_body(body))
    }

    /// `BodyMode::Stream`: a piece of the response as it arrives; returns the bytes to send instead.
    pub fn on_response_chunk(&mut self, bytes: &[u8], end: bool) -> Option<Vec<u8>> {
        let t = self.response.as_mut()?;
        let mut out = Vec::with_capacity(bytes.len() + 64);
        t.on_stream(bytes, end, &mut out);
        Some(out)
    }

    pub fn mode(&self) -> Option<BodyMode> {
        self.mode
    }

    /// After [`UpstreamFilter::on_response_body`]: the status the client gets when the body changed it
    /// (an unreadable 2xx is a 502). The host holds the response head of a body translated whole until
    /// the body is in, so that it can still change.
    pub fn body_status(&self) -> Option<u16> {
        self.response.as_ref().and_then(|t| t.body_status())
    }

    pub fn usage(&self) -> Option<providers::Usage> {
        self.response.as_ref().and_then(|t| t.usage())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::{sample, MapEnv};
    use crate::http::testing::MapHeaders;

    fn filter() -> UpstreamFilter {
        let cfg = Config::parse(sample().as_bytes(), &MapEnv(vec![("OPENAI_API_KEY", "sk-openai-secret")])).unwrap();
        UpstreamFilter::new(Rc::new(cfg))
    }

    fn headers(alias: &str) -> MapHeaders {
        MapHeaders::new(&[
            (":method", "POST"),
            (":path", "/v1/chat/completions"),
            (H_MODEL, alias),
            ("authorization", "Bearer sk-client"),
        ])
    }

    #[test]
    #[allow(clippy::type_complexity)]
    fn table_of_attempts() {
        let table: &[(&str, EndpointMeta, &str, &str, &str, Option<(&str, &str)>)] = &[
            (
                "gpt-4o-mini",
                EndpointMeta { provider: Some("openai".into()), model: None },
                "openai",
                "gpt-4o-mini",
                "/v1/chat/completions",
                Some(("authorization", "Bearer sk-openai-secret")),
            ),
            (
                "gpt-prod",
                EndpointMeta::default(),
                "azure",
                "prod-deployment",
                "/openai/deployments/prod-deployment/chat/completions?api-version=2024-10-21",
                Some(("api-key", "az-inline")),
            ),
            (
                "qwen",
                EndpointMeta { provider: Some("ollama".into()), model: Some("qwen-pinned".into()) },
                "ollama",
                "qwen-pinned",
                "/v1/chat/completions",
                None,
            ),
        ];
        for (alias, meta, provider, model, path, auth) in table {
            let mut f = filter();
            let d = f.on_request_headers(&headers(alias), meta, None);
            assert_eq!(d.step, Step::NeedBody, "{alias}");
            for h in ["authorization", "x-api-key", "content-length", H_MODEL] {
                assert!(d.remove.contains(&h));
            }
            let body = br#"{"model":"x","messages":[{"role":"user","content":"hi"}]}"#;
            let edit = f.on_request_body(body, 0).unwrap();
            let get = |k: &str| edit.set.iter().find(|(n, _)| *n == k).map(|(_, v)| v.as_str());
            assert_eq!(get(":path"), Some(*path));
            match auth {
                Some((k, v)) => assert_eq!(get(k), Some(*v)),
                None => assert!(get("authorization").is_none()),
            }
            let v: serde_json::Value = serde_json::from_slice(&edit.body.unwrap()).unwrap();
            assert_eq!(v["model"], *model);
            let r = f.on_response_headers(200, Some("application/json"));
            assert_eq!(r.set, vec![(H_SERVED_PROVIDER, provider.to_string()), (H_SERVED_MODEL, model.to_string())]);
            assert_eq!(r.mode, None, "OpenAI-family responses pass through");
        }
    }

    #[test]
    fn a_retry_uses_what_the_route_filter_registered() {
        // The first attempt rewrote the headers for its provider and removed the internal ones.
        let after_first = MapHeaders::new(&[(":method", "POST"), (":path", "/openai/deployments/x/chat/completions")]);
        let info = RequestInfo {
            op: Operation::ChatCompletions,
            alias: "gpt-4o-mini".into(),
            body_ready: false,
            path: "/v1/chat/completions".into(),
            translated: None,
            steering: Vec::new(),
        };
        let mut f = filter();
        let meta = EndpointMeta { provider: Some("openai".into()), model: None };
        assert_eq!(f.on_request_headers(&after_first, &meta, Some(&info)).step, Step::NeedBody);
        let edit = f.on_request_body(br#"{"model":"gpt-4o-mini","messages":[]}"#, 0).unwrap();
        assert!(edit.set.contains(&(":path", "/v1/chat/completions".to_string())));
    }

    #[test]
    fn a_ready_body_needs_only_path_and_credential() {
        let after_first = MapHeaders::new(&[(":method", "POST"), (":path", "/v1/chat/completions")]);
        let info = RequestInfo {
            op: Operation::ChatCompletions,
            alias: "gpt-prod".into(),
            body_ready: true,
            path: "/v1/chat/completions".into(),
            translated: None,
            steering: Vec::new(),
        };
        let azure_path = "/openai/deployments/prod-deployment/chat/completions?api-version=2024-10-21";
        let mut f = filter();
        let d = f.on_request_headers(&after_first, &EndpointMeta::default(), Some(&info));
        assert_eq!(d.step, Step::Continue);
        assert_eq!(d.set(":path"), Some(azure_path));
        assert_eq!(d.set("api-key"), Some("az-inline"));
        assert!(!f.wants_body());
        assert!(!f.passes_response());
        // The fast path: the same, without the request headers, and the response left alone.
        let mut f = filter();
        let d = f.on_ready_request(&EndpointMeta::default(), &info).unwrap();
        assert_eq!(d.step, Step::Continue);
        assert_eq!(d.set(":path"), Some(azure_path));
        assert_eq!(d.set("api-key"), Some("az-inline"));
        assert_eq!(d.remove, vec![H_CLUSTER, H_ROUTE]);
        assert!(!f.wants_body() && f.passes_response());
        // A provider path equal to the client's is not set again.
        let openai = RequestInfo { alias: "gpt-4o-mini".into(), ..info.clone() };
        let d = filter().on_ready_request(&EndpointMeta::default(), &openai).unwrap();
        assert_eq!(d.set(":path"), None);
        assert_eq!(d.set("authorization"), Some("Bearer sk-openai-secret"));
        // Not ready, or an endpoint pinning another model name: the general path.
        assert!(filter()
            .on_ready_request(&EndpointMeta::default(), &RequestInfo { body_ready: false, ..info.clone() })
            .is_none());
        let pinned = EndpointMeta { provider: Some("azure".into()), model: Some("other-deployment".into()) };
        assert!(filter().on_ready_request(&pinned, &info).is_none());
        // An endpoint of a provider the model does not use is refused there too.
        let wrong = EndpointMeta { provider: Some("openai".into()), model: None };
        assert_eq!(filter().on_ready_request(&wrong, &info).map(|d| matches!(d.step, Step::Respond(_))), Some(true));
        // An endpoint that pins another model name gets its body rewritten per attempt.
        let mut f = filter();
        let meta = EndpointMeta { provider: Some("azure".into()), model: Some("other-deployment".into()) };
        assert_eq!(f.on_request_headers(&after_first, &meta, Some(&info)).step, Step::NeedBody);
        assert!(f.wants_body());
    }

    #[test]
    fn refuses_requests_that_skipped_the_route_filter() {
        let mut f = filter();
        let d = f.on_request_headers(
            &MapHeaders::new(&[(":method", "POST"), (":path", "/v1/chat/completions")]),
            &EndpointMeta::default(),
            None,
        );
        let Step::Respond(r) = d.step else { panic!() };
        assert_eq!(r.status, 502);
        for p in ["nobody", "azure"] {
            let d = f.on_request_headers(
                &headers("gpt-4o-mini"),
                &EndpointMeta { provider: Some(p.into()), model: None },
                None,
            );
            let Step::Respond(r) = d.step else { panic!("{p}") };
            assert_eq!(r.status, 502);
            assert!(!String::from_utf8_lossy(&r.body).contains("az-inline"));
        }
    }
}

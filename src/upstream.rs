//! The upstream role: runs as an upstream HTTP filter inside a model's Envoy cluster, once per attempt,
//! after Envoy has picked the endpoint. It reads which provider that endpoint is (endpoint metadata), and
//! rewrites the attempt for it: path, credential, body. Responses get headers naming what served them.

use crate::config::{Config, ProviderId};
use crate::error::ApiError;
use crate::http::{
    Decision, Headers, Step, CREDENTIAL_HEADERS, H_MODEL, H_SERVED_MODEL, H_SERVED_PROVIDER, INTERNAL_HEADERS,
};
use crate::providers;
use crate::request::{self, Operation};
use std::rc::Rc;

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
    op: Option<Operation>,
    provider: Option<ProviderId>,
    model: String,
}

impl UpstreamFilter {
    pub fn new(cfg: Rc<Config>) -> Self {
        UpstreamFilter { cfg, op: None, provider: None, model: String::new() }
    }

    pub fn on_request_headers(&mut self, h: &dyn Headers, meta: &EndpointMeta) -> Decision {
        match self.plan(h, meta) {
            Ok(d) => d,
            Err(e) => {
                log::warn!("upstream attempt refused: {}", e.message);
                Decision::respond(e)
            }
        }
    }

    fn plan(&mut self, h: &dyn Headers, meta: &EndpointMeta) -> Result<Decision, ApiError> {
        let alias = h.get(H_MODEL).ok_or_else(|| {
            ApiError::gateway("request reached a provider cluster without passing the route-level filter")
        })?;
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
                let t = model.targets.iter().find(|t| t.provider == pid).ok_or_else(|| {
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
        let provider = self.cfg.provider(target.0).ok_or_else(|| ApiError::gateway("unknown provider"))?;
        let method = h.get(":method").unwrap_or_default();
        let path = h.get(":path").unwrap_or_default();
        let op = request::classify(&method, &path)?;
        let call = providers::plan(provider, op, &target.1)?;

        self.op = Some(op);
        self.provider = Some(target.0);
        self.model = target.1;

        let mut d = Decision::new(Step::NeedBody);
        d.remove.extend_from_slice(CREDENTIAL_HEADERS);
        d.remove.extend_from_slice(INTERNAL_HEADERS);
        d.remove.push("content-length");
        d.set.push((":path", call.path));
        if let Some(auth) = call.auth {
            d.set.push(auth);
        }
        Ok(d)
    }

    /// Given the whole request body, returns the body to send instead (`None`: send it as it is).
    pub fn on_request_body(&mut self, bytes: &[u8]) -> Result<Option<Vec<u8>>, ApiError> {
        let (Some(op), Some(pid)) = (self.op, self.provider) else { return Ok(None) };
        let provider = self.cfg.provider(pid).ok_or_else(|| ApiError::gateway("unknown provider"))?;
        providers::rewrite_body(provider, op, bytes, &self.model)
    }

    /// Headers to add to the provider's response.
    pub fn on_response_headers(&mut self) -> Vec<(&'static str, String)> {
        let Some(p) = self.provider.and_then(|id| self.cfg.provider(id)) else { return Vec::new() };
        vec![(H_SERVED_PROVIDER, p.name.clone()), (H_SERVED_MODEL, self.model.clone())]
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
            let d = f.on_request_headers(&headers(alias), meta);
            assert_eq!(d.step, Step::NeedBody, "{alias}");
            assert_eq!(d.set(":path"), Some(*path));
            for h in ["authorization", "x-api-key", "content-length", H_MODEL] {
                assert!(d.remove.contains(&h));
            }
            match auth {
                Some((k, v)) => assert_eq!(d.set(k), Some(*v)),
                None => assert!(d.set("authorization").is_none()),
            }
            let body = br#"{"model":"x","messages":[{"role":"user","content":"hi"}]}"#;
            let out = f.on_request_body(body).unwrap().unwrap();
            let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
            assert_eq!(v["model"], *model);
            assert_eq!(
                f.on_response_headers(),
                vec![(H_SERVED_PROVIDER, provider.to_string()), (H_SERVED_MODEL, model.to_string())]
            );
        }
    }

    #[test]
    fn refuses_requests_that_skipped_the_route_filter() {
        let mut f = filter();
        let d = f.on_request_headers(
            &MapHeaders::new(&[(":method", "POST"), (":path", "/v1/chat/completions")]),
            &EndpointMeta::default(),
        );
        let Step::Respond(r) = d.step else { panic!() };
        assert_eq!(r.status, 502);
        for p in ["nobody", "azure"] {
            let d =
                f.on_request_headers(&headers("gpt-4o-mini"), &EndpointMeta { provider: Some(p.into()), model: None });
            let Step::Respond(r) = d.step else { panic!("{p}") };
            assert_eq!(r.status, 502);
            assert!(!String::from_utf8_lossy(&r.body).contains("az-inline"));
        }
    }
}

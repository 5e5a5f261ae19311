//! The settings of kinds `gemini` (`api_version`: v1 or v1beta, default v1beta) and `vertex` (required
//! `project` and `location`, which go into the request path). Both require a key: the Gemini API key, or
//! the Vertex access token.

use crate::config::fields::{err, join, opt_str, req_str};
use crate::config::provider_kinds::{read, KindResult};
use crate::config::{Env, ProviderKind};
use serde_json::{Map, Value};

pub(crate) fn settings(o: &Map<String, Value>, path: &str, _env: &dyn Env) -> KindResult {
    let v = opt_str(o, path, "api_version")?.unwrap_or("v1beta");
    if v != "v1" && v != "v1beta" {
        return Err(err(join(path, "api_version"), "must be v1 or v1beta"));
    }
    let kind = ProviderKind::Gemini { api_version: v.to_string() };
    read(kind, &["kind", "cluster", "api_key", "api_version"])
}

pub(crate) fn vertex_settings(o: &Map<String, Value>, path: &str, _env: &dyn Env) -> KindResult {
    let project = req_str(o, path, "project")?;
    let location = req_str(o, path, "location")?;
    for (k, v) in [("project", project), ("location", location)] {
        if !v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            return Err(err(join(path, k), "may hold only letters, digits, '-' and '_'"));
        }
    }
    let kind = ProviderKind::Vertex { project: project.to_string(), location: location.to_string() };
    read(kind, &["kind", "cluster", "api_key", "project", "location"])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::provider_kinds::KindSettings;
    use crate::config::tests::MapEnv;
    use serde_json::json;

    type Read = fn(&Map<String, Value>, &str, &dyn Env) -> KindResult;

    fn parse(f: Read, o: Value) -> Result<KindSettings, (String, String)> {
        match f(o.as_object().unwrap(), "providers.g", &MapEnv(vec![])) {
            Ok(Some(s)) => Ok(s),
            Ok(None) => panic!("left out"),
            Err(e) => Err((e.field, e.reason)),
        }
    }

    #[test]
    fn gemini_api_version_defaults_to_v1beta() {
        let kind = |v: &str| ProviderKind::Gemini { api_version: v.into() };
        assert_eq!(parse(settings, json!({})).map(|s| s.kind), Ok(kind("v1beta")));
        assert_eq!(parse(settings, json!({"api_version": "v1"})).map(|s| s.kind), Ok(kind("v1")));
        let e = parse(settings, json!({"api_version": "v2"})).err();
        assert_eq!(e, Some(("providers.g.api_version".into(), "must be v1 or v1beta".into())));
        let s = parse(settings, json!({})).unwrap();
        assert_eq!(s.fields, &["kind", "cluster", "api_key", "api_version"][..]);
        assert!(s.kind.requires_key());
    }

    #[test]
    fn vertex_needs_project_and_location() {
        let s = parse(vertex_settings, json!({"project": "my-proj_1", "location": "us-central1"})).unwrap();
        assert_eq!(s.kind, ProviderKind::Vertex { project: "my-proj_1".into(), location: "us-central1".into() });
        assert_eq!(s.fields, &["kind", "cluster", "api_key", "project", "location"][..]);
        assert!(s.kind.requires_key());
        let e = parse(vertex_settings, json!({"project": "p"})).err();
        assert_eq!(e, Some(("providers.g.location".into(), "is required".into())));
        let e = parse(vertex_settings, json!({"project": "p/q", "location": "l"})).err();
        assert_eq!(e, Some(("providers.g.project".into(), "may hold only letters, digits, '-' and '_'".into())));
    }
}

//! The settings of kind `anthropic`: the `anthropic-version` header (`version`, default `2023-06-01`) and
//! `default_max_tokens` (default 4096), the `max_tokens` of requests that name none.

use crate::config::fields::{err, is_header_safe, join, opt_str};
use crate::config::provider_kinds::{read, KindResult};
use crate::config::{Env, ProviderKind};
use serde_json::{Map, Value};

pub(crate) fn settings(o: &Map<String, Value>, path: &str, _env: &dyn Env) -> KindResult {
    let version = opt_str(o, path, "version")?.unwrap_or("2023-06-01");
    if !is_header_safe(version) {
        return Err(err(join(path, "version"), "must be printable ASCII"));
    }
    let default_max_tokens = match o.get("default_max_tokens") {
        None => 4096,
        Some(v) => match v.as_u64() {
            Some(n) if (1..=1_000_000).contains(&n) => n as u32,
            _ => return Err(err(join(path, "default_max_tokens"), "must be an integer from 1 to 1000000")),
        },
    };
    let kind = ProviderKind::Anthropic { version: version.to_string(), default_max_tokens };
    read(kind, &["kind", "cluster", "api_key", "version", "default_max_tokens"])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::MapEnv;
    use serde_json::json;

    fn parse(o: Value) -> Result<ProviderKind, (String, String)> {
        let env = MapEnv(vec![]);
        match settings(o.as_object().unwrap(), "providers.a", &env) {
            Ok(Some(s)) => Ok(s.kind),
            Ok(None) => panic!("left out"),
            Err(e) => Err((e.field, e.reason)),
        }
    }

    #[test]
    fn defaults_values_and_rejections() {
        let kind =
            |version: &str, default_max_tokens| ProviderKind::Anthropic { version: version.into(), default_max_tokens };
        assert_eq!(parse(json!({})), Ok(kind("2023-06-01", 4096)));
        assert_eq!(parse(json!({"version": "2024-01-01", "default_max_tokens": 1})), Ok(kind("2024-01-01", 1)));
        assert_eq!(parse(json!({"default_max_tokens": 1_000_000})), Ok(kind("2023-06-01", 1_000_000)));
        let range = "must be an integer from 1 to 1000000";
        for bad in [json!(0), json!(1_000_001), json!(-1), json!(2.5), json!("10")] {
            let got = parse(json!({ "default_max_tokens": bad }));
            assert_eq!(got, Err(("providers.a.default_max_tokens".into(), range.into())), "{bad}");
        }
        assert_eq!(
            parse(json!({"version": "2023\n06"})),
            Err(("providers.a.version".into(), "must be printable ASCII".into()))
        );
        let env = MapEnv(vec![]);
        let s = settings(json!({}).as_object().unwrap(), "providers.a", &env).unwrap().unwrap();
        assert_eq!(s.fields, &["kind", "cluster", "api_key", "version", "default_max_tokens"][..]);
        assert!(s.kind.requires_key());
    }
}

//! The settings of kind `bedrock`: the `region` and the AWS key pair (`access_key_id`,
//! `secret_access_key`, optional `session_token`) the filter signs requests with. Bedrock takes no
//! `api_key`.

use crate::config::fields::{credential, err, join, req_str};
use crate::config::provider_kinds::{read, KindResult};
use crate::config::{Env, ProviderKind};
use serde_json::{Map, Value};

pub(crate) fn settings(o: &Map<String, Value>, path: &str, env: &dyn Env) -> KindResult {
    let region = req_str(o, path, "region")?;
    if !region.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
        return Err(err(join(path, "region"), "must look like us-east-1"));
    }
    // The access key pair is required; an optional one that is not set leaves the provider out.
    let mut pair = Vec::with_capacity(2);
    for k in ["access_key_id", "secret_access_key"] {
        let Some(v) = o.get(k) else {
            return Err(err(join(path, k), "is required for kind bedrock"));
        };
        match credential(v, &join(path, k), env)? {
            Some(s) => pair.push(s),
            None => return Ok(None),
        }
    }
    let session_token = match o.get("session_token") {
        None => None,
        Some(v) => credential(v, &join(path, "session_token"), env)?,
    };
    let mut pair = pair.into_iter();
    let (Some(access_key_id), Some(secret_access_key)) = (pair.next(), pair.next()) else {
        return Err(err(path, "bedrock credentials are incomplete"));
    };
    let kind = ProviderKind::Bedrock { region: region.to_string(), access_key_id, secret_access_key, session_token };
    read(kind, &["kind", "cluster", "region", "access_key_id", "secret_access_key", "session_token"])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::provider_kinds::KindSettings;
    use crate::config::tests::MapEnv;
    use crate::config::Secret;
    use serde_json::json;

    fn parse(o: Value, env: &MapEnv) -> Result<Option<KindSettings>, (String, String)> {
        settings(o.as_object().unwrap(), "providers.b", env).map_err(|e| (e.field, e.reason))
    }

    #[test]
    fn region_and_key_pair() {
        let env = MapEnv(vec![("AWS_SECRET", "s3cret")]);
        let o = json!({"region": "eu-west-3", "access_key_id": "AKID", "secret_access_key": {"env": "AWS_SECRET"}});
        let s = parse(o, &env).unwrap().unwrap();
        let want = ProviderKind::Bedrock {
            region: "eu-west-3".into(),
            access_key_id: Secret::for_tests("AKID"),
            secret_access_key: Secret::for_tests("s3cret"),
            session_token: None,
        };
        assert_eq!(s.kind, want);
        assert_eq!(s.fields, &["kind", "cluster", "region", "access_key_id", "secret_access_key", "session_token"][..]);
        assert!(!s.fields.contains(&"api_key"));
        assert!(!s.kind.requires_key());
        let o = json!({"region": "us-east-1", "access_key_id": "a", "secret_access_key": "s", "session_token": "t"});
        let Some(ProviderKind::Bedrock { session_token, .. }) = parse(o, &env).unwrap().map(|s| s.kind) else {
            panic!("not bedrock")
        };
        assert_eq!(session_token, Some(Secret::for_tests("t")));
    }

    #[test]
    fn rejections_name_the_field_and_optional_pairs_leave_it_out() {
        let env = MapEnv(vec![]);
        let e = parse(json!({"region": "US_EAST", "access_key_id": "a", "secret_access_key": "s"}), &env).err();
        assert_eq!(e, Some(("providers.b.region".into(), "must look like us-east-1".into())));
        let e = parse(json!({"region": "us-east-1", "access_key_id": "a"}), &env).err();
        assert_eq!(e, Some(("providers.b.secret_access_key".into(), "is required for kind bedrock".into())));
        let e = parse(json!({"access_key_id": "a", "secret_access_key": "s"}), &env).err();
        assert_eq!(e, Some(("providers.b.region".into(), "is required".into())));
        let optional = json!({"env": "AWS_KEY", "optional": true});
        let o = json!({"region": "us-east-1", "access_key_id": optional, "secret_access_key": "s"});
        assert!(parse(o, &env).unwrap().is_none());
    }
}

//! The JSON-walking helpers every section parser uses: each one names the JSON path of the field it
//! rejects, so that a configuration error always says where it is.

use super::{ConfigError, Env, Secret};
use serde_json::{Map, Value};

pub(crate) type R<T> = Result<T, ConfigError>;

pub(crate) fn err(field: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError { field: field.into(), reason: reason.into() }
}

pub(crate) fn as_obj<'a>(v: &'a Value, path: &str) -> R<&'a Map<String, Value>> {
    v.as_object().ok_or_else(|| err(path, format!("must be an object, got {}", type_name(v))))
}

pub(crate) fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Rejects the first field of `o` that is not in `known`.
pub(crate) fn check_fields(o: &Map<String, Value>, path: &str, known: &[&str]) -> R<()> {
    for k in o.keys() {
        if !known.contains(&k.as_str()) {
            return Err(err(join(path, k), format!("unknown field (expected one of: {})", known.join(", "))));
        }
    }
    Ok(())
}

/// The path of field `k` inside `path` (the root's path is empty).
pub(crate) fn join(path: &str, k: &str) -> String {
    if path.is_empty() {
        k.to_string()
    } else {
        format!("{path}.{k}")
    }
}

pub(crate) fn opt_str<'a>(o: &'a Map<String, Value>, path: &str, k: &str) -> R<Option<&'a str>> {
    match o.get(k) {
        None => Ok(None),
        Some(Value::String(s)) if !s.is_empty() => Ok(Some(s)),
        Some(Value::String(_)) => Err(err(join(path, k), "must not be empty")),
        Some(v) => Err(err(join(path, k), format!("must be a string, got {}", type_name(v)))),
    }
}

pub(crate) fn req_str<'a>(o: &'a Map<String, Value>, path: &str, k: &str) -> R<&'a str> {
    opt_str(o, path, k)?.ok_or_else(|| err(join(path, k), "is required"))
}

pub(crate) fn is_header_safe(s: &str) -> bool {
    s.bytes().all(|b| (0x20..0x7f).contains(&b))
}

/// A credential: inline, or `{"env": NAME, "optional": bool}` read from the VM's environment.
/// `None` when an optional credential's variable is not set (its provider is then left out).
pub(crate) fn credential(v: &Value, path: &str, env: &dyn Env) -> R<Option<Secret>> {
    match v {
        Value::String(s) if s.is_empty() => Err(err(path, "must not be empty")),
        Value::String(s) => {
            if !is_header_safe(s) {
                return Err(err(path, "must be printable ASCII"));
            }
            Ok(Some(Secret(s.clone())))
        }
        Value::Object(o) => {
            check_fields(o, path, &["env", "optional"])?;
            let name = req_str(o, path, "env")?;
            let optional = match o.get("optional") {
                None => false,
                Some(Value::Bool(b)) => *b,
                Some(v) => return Err(err(join(path, "optional"), format!("must be a boolean, got {}", type_name(v)))),
            };
            match env.var(name).filter(|s| !s.is_empty()) {
                Some(s) if is_header_safe(&s) => Ok(Some(Secret(s))),
                // The value is never quoted: it is a secret.
                Some(_) => Err(err(join(path, "env"), format!("environment variable {name} holds characters a header cannot carry"))),
                None if optional => Ok(None),
                None => Err(err(
                    join(path, "env"),
                    format!("environment variable {name} is not set in the VM: set it in Envoy's environment (a hand-written config must also list it in vm_config.environment_variables.host_env_keys), or mark the credential optional"),
                )),
            }
        }
        v => Err(err(path, format!("must be a string or {{\"env\": NAME}}, got {}", type_name(v)))),
    }
}

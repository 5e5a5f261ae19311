//! `switchyard`: checks a gateway file and renders the Envoy bootstrap or the Istio resources from it,
//! with the filter's own configuration parser (so its messages are the filter's). See README.md.

use std::io::Read;
use std::process::ExitCode;

use serde_json::{Map, Number, Value};
use switchyard::codec::sha256;
use switchyard::gateway::{self, Gateway};
use yaml_rust2::{Yaml, YamlLoader};

const USAGE: &str = "usage:
  switchyard check FILE                 validate a gateway file (YAML or JSON); prints a summary
  switchyard render FILE [-o OUT]       the Envoy bootstrap (YAML) for it
  switchyard render --istio FILE [-o OUT]
                                        the Istio resources for an ingress gateway
  switchyard key new ID                 a fresh virtual key (printed once) and its config entry
  switchyard plugin-config FILE         the filter's JSON configuration alone (for hand-written Envoy config)";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(msg)) => {
            eprintln!("{msg}\n\n{USAGE}");
            ExitCode::from(2)
        }
        Err(Failure::Invalid(msg)) => {
            eprintln!("{msg}");
            ExitCode::from(1)
        }
    }
}

enum Failure {
    Usage(String),
    Invalid(String),
}

fn run(args: &[String]) -> Result<(), Failure> {
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    match words.as_slice() {
        ["check", file] => check(file),
        ["render", rest @ ..] => render(rest),
        ["plugin-config", file] => {
            let (g, _) = load(file)?;
            println!("{}", g.plugin_json_pretty());
            Ok(())
        }
        ["key", "new", id] => new_key(id),
        ["help" | "-h" | "--help"] => {
            println!("{USAGE}");
            Ok(())
        }
        [] => Err(Failure::Usage("no command given".into())),
        _ => Err(Failure::Usage(format!("unknown command: {}", words.join(" ")))),
    }
}

/// Reads and checks a gateway file: the checked gateway and the file as read.
fn load(file: &str) -> Result<(Gateway, Value), Failure> {
    let text = if file == "-" {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s).map_err(|e| Failure::Invalid(format!("stdin: {e}")))?;
        s
    } else {
        std::fs::read_to_string(file).map_err(|e| Failure::Invalid(format!("{file}: {e}")))?
    };
    let root = read_document(&text).map_err(|e| Failure::Invalid(format!("{file}: {e}")))?;
    let g = gateway::parse(&root).map_err(|e| Failure::Invalid(format!("{file}: {e}")))?;
    Ok((g, root))
}

/// JSON when it is JSON, else YAML (one document).
fn read_document(text: &str) -> Result<Value, String> {
    if let Ok(v) = serde_json::from_str::<Value>(text) {
        return Ok(v);
    }
    let docs = YamlLoader::load_from_str(text).map_err(|e| format!("not valid YAML: {e}"))?;
    match docs.as_slice() {
        [doc] => yaml_to_json(doc, "(root)"),
        [] => Err("the file is empty".into()),
        _ => Err("holds several YAML documents; a gateway file is one".into()),
    }
}

fn yaml_to_json(y: &Yaml, path: &str) -> Result<Value, String> {
    Ok(match y {
        Yaml::Null => Value::Null,
        Yaml::Boolean(b) => Value::Bool(*b),
        Yaml::Integer(i) => Value::Number((*i).into()),
        Yaml::Real(r) => {
            let f: f64 = r.parse().map_err(|_| format!("{path}: '{r}' is not a number"))?;
            Value::Number(Number::from_f64(f).ok_or_else(|| format!("{path}: '{r}' is not a finite number"))?)
        }
        Yaml::String(s) => Value::String(s.clone()),
        Yaml::Array(items) => Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, v)| yaml_to_json(v, &format!("{path}[{i}]")))
                .collect::<Result<_, _>>()?,
        ),
        Yaml::Hash(h) => {
            let mut m = Map::new();
            for (k, v) in h {
                let key = match k {
                    Yaml::String(s) => s.clone(),
                    Yaml::Integer(i) => i.to_string(),
                    Yaml::Boolean(b) => b.to_string(),
                    _ => return Err(format!("{path}: keys must be strings")),
                };
                let child = if path == "(root)" { key.clone() } else { format!("{path}.{key}") };
                if m.insert(key, yaml_to_json(v, &child)?).is_some() {
                    return Err(format!("{child}: given twice"));
                }
            }
            Value::Object(m)
        }
        Yaml::Alias(_) | Yaml::BadValue => return Err(format!("{path}: a value YAML could not read")),
    })
}

fn check(file: &str) -> Result<(), Failure> {
    let (g, _) = load(file)?;
    println!("{file}: ok");
    print!("{}", summary(&g));
    Ok(())
}

/// The process environment, as Envoy's VM would see it if started from here.
struct ProcessEnv;

impl switchyard::config::Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

/// What the gateway serves when Envoy starts with this process's environment: the filter's own parser
/// says which providers are off for want of their key.
fn summary(g: &Gateway) -> String {
    let mut out = format!("  listener  http://{}:{}/v1\n", g.listener.address, g.listener.port);
    let cfg = match switchyard::config::Config::parse(g.plugin_json().as_bytes(), &ProcessEnv) {
        Ok(cfg) => cfg,
        Err(e) => return format!("{out}  not startable with this environment: {e}\n"),
    };
    let mut served: Vec<&str> = cfg.models.keys().map(String::as_str).collect();
    served.sort_unstable();
    out.push_str(&format!("  models    {}\n", if served.is_empty() { "(none)".into() } else { served.join(", ") }));
    for p in &cfg.disabled {
        let vars: Vec<&str> = g.env_vars.iter().filter(|e| &e.provider == p).map(|e| e.name.as_str()).collect();
        let mut models: Vec<&str> =
            cfg.unavailable.iter().filter(|(_, by)| *by == p).map(|(m, _)| m.as_str()).collect();
        models.sort_unstable();
        out.push_str(&format!("  off       {p} (no {}): {}\n", vars.join(" / "), models.join(", ")));
    }
    for p in &g.jwt_providers {
        out.push_str(&format!(
            "  jwt       {}: issuer {}, audiences {}, keys {} (refetched every {} s)\n",
            p.name,
            p.issuer,
            p.audiences.join(", "),
            p.jwks_uri,
            p.jwks_cache_ms / 1000
        ));
    }
    if let Some(f) = &cfg.fleet {
        let url = g.services.iter().find(|s| s.name == f.cluster).map_or(String::new(), |s| {
            format!("{}://{}:{}", if s.url.tls { "https" } else { "http" }, s.url.host, s.url.port)
        });
        let keys = cfg.keys.iter().filter(|k| k.limits.fleet.is_some()).count();
        out.push_str(&format!(
            "  fleet     {} {url} ({} protocol, {} ms, fail {}): {keys} key(s) with fleet-wide limits\n",
            f.cluster,
            if f.standard { "standard" } else { "switchyard" },
            f.timeout_ms,
            if f.fail_open { "open" } else { "closed" }
        ));
    }
    out
}

fn render(rest: &[&str]) -> Result<(), Failure> {
    let mut istio = false;
    let mut out: Option<&str> = None;
    let mut file: Option<&str> = None;
    let mut i = 0;
    while i < rest.len() {
        match rest[i] {
            "--istio" => istio = true,
            "-o" | "--output" => {
                i += 1;
                out = Some(rest.get(i).copied().ok_or_else(|| Failure::Usage("-o needs a file".into()))?);
            }
            f if file.is_none() && !f.starts_with('-') || f == "-" => file = Some(f),
            other => return Err(Failure::Usage(format!("unexpected argument: {other}"))),
        }
        i += 1;
    }
    let file = file.ok_or_else(|| Failure::Usage("render needs a gateway file".into()))?;
    let (g, root) = load(file)?;
    let text = if istio {
        gateway::istio::render(&g, &root).map_err(|e| Failure::Invalid(format!("{file}: {e}")))?
    } else {
        gateway::yaml::to_string(&gateway::envoy::render(&g))
    };
    match out {
        None | Some("-") => print!("{text}"),
        Some(path) => std::fs::write(path, text).map_err(|e| Failure::Invalid(format!("{path}: {e}")))?,
    }
    Ok(())
}

fn new_key(id: &str) -> Result<(), Failure> {
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b)) {
        return Err(Failure::Invalid(format!("key id '{id}': may hold only letters, digits and - _ . :")));
    }
    let mut bytes = [0u8; 24];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| Failure::Invalid(format!("no randomness from /dev/urandom: {e}")))?;
    let secret: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let key = format!("sk-sy-{secret}");
    let digest = sha256::to_hex(&sha256::digest(key.as_bytes()));
    println!("key (shown once; give it to the caller, keep only the hash):\n  {key}\n");
    println!("gateway file entry (under keys:):\n  - id: {id}\n    models: [\"*\"]\n    sha256: {digest}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_and_json_read_alike() {
        let y =
            read_document("providers:\n  a: { kind: mock }\nn: 1.5\nlist: [1, \"x\"]\nb: true\n").unwrap_or_default();
        let j =
            read_document(r#"{"providers":{"a":{"kind":"mock"}},"n":1.5,"list":[1,"x"],"b":true}"#).unwrap_or_default();
        assert_eq!(y, j);
        assert!(read_document("a: 1\na: 2\n").is_err_and(|e| e.contains("duplicated key")));
        assert!(read_document("a: [\n").is_err());
        assert!(read_document("").is_err());
    }
}

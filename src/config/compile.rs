//! Stage 2: the raw configuration turned into the lookup tables the request path reads. This is where
//! the checks that need the whole file happen: a model's targets name providers, keys name models,
//! ids and digests are unique; and where what comes from elsewhere is filled in: defaults, a
//! model's cluster taken from its provider, providers and models left out for a missing optional
//! credential, each key's `GET /v1/models` answer and limit record names.
//!
//! A new top-level section is one compile step here, called from `compile`, turning its raw type
//! (`raw.rs`) into a field of `Config`.

use super::fields::{err, is_header_safe, join, R};
use super::identity::{compile_identity, compile_teams, Identity, TeamId};
use super::raw::{RawConfig, RawKey, RawLimits, RawModel, RawProvider};
use super::{
    Allowed, CacheBounds, Config, Key, KeyLimits, Model, ModelLimits, Provider, ProviderId, Target,
    DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_OUTPUT_TOKENS,
};
use crate::forwarding::Forwarding;
use crate::limits::fleet::{FleetLimits, FleetService};
use crate::limits::Rate;
use hashbrown::{HashMap, HashSet};
use serde_json::Value;

/// Stage 2: cross-checks the raw configuration and builds the lookup tables.
pub fn compile(raw: RawConfig) -> R<Config> {
    let RawConfig {
        max_body_bytes,
        default_max_output_tokens,
        log_bodies,
        providers,
        models,
        keys,
        fleet,
        cache,
        identity,
        teams,
    } = raw;
    // Keys and limits may name a model that is unavailable (its provider left out): it is still a model.
    let model_names: HashSet<String> = models.iter().map(|m| m.name.clone()).collect();
    let cache = super::cache::compile_bounds(cache, fleet.as_ref())?;
    let providers = compile_providers(providers)?;
    let models = compile_models(models, &providers, &cache)?;
    let with_teams = teams.is_some();
    let subjects = identity.is_some() || with_teams;
    let limits_of = |l: RawLimits| compile_limits(l, &model_names);
    let served: HashSet<&str> = models.by_name.keys().map(String::as_str).collect();
    let teams = compile_teams(teams.unwrap_or_default(), &model_names, &served, limits_of)?;
    drop(served);
    let identity = identity.map(|i| compile_identity(i, limits_of)).transpose()?;
    if let Some(i) = identity.as_ref().filter(|i| i.accept_jwt) {
        check_users(i, with_teams)?;
    }
    let team_ids = with_teams.then_some(&teams.by_name);
    let keys = compile_keys(keys, &model_names, &models.by_name, &providers.list, team_ids, subjects)?;
    let mut fleet_limits: Vec<(String, &FleetLimits)> = Vec::new();
    for (i, path) in &keys.fleet_paths {
        fleet_limits.extend(keys.list.get(*i).and_then(|k| k.limits.fleet.as_ref()).map(|f| (path.clone(), f)));
    }
    for (i, path) in &teams.fleet_paths {
        fleet_limits.extend(teams.list.get(*i).and_then(|t| t.limits.fleet.as_ref()).map(|f| (path.clone(), f)));
    }
    if let Some(f) = identity.as_ref().and_then(|i| i.user_limits.fleet.as_ref()) {
        fleet_limits.push(("identity.user_limits.fleet".to_string(), f));
    }
    check_fleet(&fleet_limits, fleet.as_ref())?;
    let caches = models.by_name.values().any(|m| m.cache.is_some());
    Ok(Config {
        identity,
        teams: teams.list,
        teams_by_name: teams.by_name,
        teams_by_claim: teams.by_claim,
        caches,
        max_body_bytes: max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES),
        default_max_output_tokens: default_max_output_tokens.unwrap_or(DEFAULT_MAX_OUTPUT_TOKENS),
        log_bodies_max_bytes: log_bodies.map(|l| l.max_bytes),
        providers: providers.list,
        forwarding: providers.forwarding,
        models: models.by_name,
        keys: keys.list,
        keys_by_digest: keys.by_digest,
        disabled: providers.disabled,
        unavailable: models.unavailable,
        fleet,
        cache,
    })
}

struct Providers {
    /// Indexed by `ProviderId`.
    list: Vec<Provider>,
    ids: HashMap<String, ProviderId>,
    /// Left out: an optional credential is not set.
    disabled: Vec<String>,
    /// Which provider forwards which client headers beyond the allow-list.
    forwarding: Forwarding,
}

fn compile_providers(raw: Vec<RawProvider>) -> R<Providers> {
    let mut p =
        Providers { list: Vec::new(), ids: HashMap::new(), disabled: Vec::new(), forwarding: Forwarding::default() };
    let mut forward_lists = Vec::new();
    for RawProvider { name, settings } in raw {
        let Some(s) = settings else {
            p.disabled.push(name);
            continue;
        };
        p.ids.insert(name.clone(), p.list.len());
        let cluster = s.cluster.unwrap_or_else(|| name.clone());
        forward_lists.push(s.forward_headers);
        p.list.push(Provider { name, kind: s.kind, cluster, credential: s.credential });
    }
    let lists: Vec<&[String]> = forward_lists.iter().map(Vec::as_slice).collect();
    p.forwarding = Forwarding::new(&lists).map_err(|(id, j)| {
        let name = p.list.get(id).map_or("", |x| x.name.as_str());
        err(
            format!("providers.{name}.forward_headers[{j}]"),
            format!("more than {} distinct names across all providers", crate::forwarding::MAX_NAMES),
        )
    })?;
    Ok(p)
}

struct Models {
    by_name: HashMap<String, Model>,
    /// Model name → the left-out provider that would have served it.
    unavailable: HashMap<String, String>,
}

fn compile_models(raw: Vec<RawModel>, providers: &Providers, bounds: &CacheBounds) -> R<Models> {
    let mut out = Models { by_name: HashMap::new(), unavailable: HashMap::new() };
    for RawModel { name, path, cluster, targets: raw_targets, cache } in raw {
        let cache = cache.map(|c| super::cache::compile_model(c, bounds)).transpose()?;
        let several = raw_targets.len() > 1;
        let mut targets: Vec<Target> = Vec::new();
        let mut disabled_provider = None;
        for t in raw_targets {
            let upstream = t.model.unwrap_or_else(|| name.clone());
            let pid = match providers.ids.get(t.provider.as_str()) {
                Some(id) => *id,
                None if providers.disabled.contains(&t.provider) => {
                    disabled_provider.get_or_insert(t.provider);
                    continue;
                }
                None => {
                    let reason = format!("names no provider '{}' in providers", t.provider);
                    return Err(err(join(&t.path, "provider"), reason));
                }
            };
            if several && providers.list.get(pid).is_some_and(|p| p.kind.answers_locally()) {
                return Err(err(
                    join(&t.path, "provider"),
                    "a mock provider answers locally and cannot be one of several targets",
                ));
            }
            if targets.iter().any(|x| x.provider == pid && x.model == upstream) {
                return Err(err(t.path, format!("target {}/{upstream} is listed twice", t.provider)));
            }
            targets.push(Target { provider: pid, model: upstream, price: t.price });
        }
        let Some(first) = targets.first() else {
            out.unavailable.insert(name, disabled_provider.unwrap_or_default());
            continue;
        };
        let cluster = match cluster {
            Some(c) if is_header_safe(&c) => c,
            Some(_) => return Err(err(join(&path, "cluster"), "must be printable ASCII")),
            None => providers.list.get(first.provider).map(|p| p.cluster.clone()).unwrap_or_default(),
        };
        out.by_name.insert(name.clone(), Model { name, targets, cluster, cache });
    }
    Ok(out)
}

struct Keys {
    list: Vec<Key>,
    /// SHA-256 of the key → index in `list`.
    by_digest: HashMap<[u8; 32], usize>,
    /// (index in `list`, the path of its `limits.fleet`).
    fleet_paths: Vec<(usize, String)>,
}

/// JWT users get models only through their teams, which they join through `teams_claim`.
fn check_users(i: &Identity, with_teams: bool) -> R<()> {
    if !with_teams {
        return Err(err(
            "identity.accept",
            "JWT users may use only what their teams grant: add a teams section (or accept keys only)",
        ));
    }
    if i.teams_claim.is_none() {
        return Err(err(
            "identity.teams_claim",
            "is required with teams and jwt: users join teams through this claim (groups, roles, ...)",
        ));
    }
    Ok(())
}

fn compile_keys(
    raw: Vec<RawKey>,
    model_names: &HashSet<String>,
    models: &HashMap<String, Model>,
    providers: &[Provider],
    teams: Option<&HashMap<String, TeamId>>,
    subjects: bool,
) -> R<Keys> {
    let mut all_names: Vec<&str> = models.keys().map(|s| s.as_str()).collect();
    all_names.sort_unstable();
    let mut out = Keys { list: Vec::new(), by_digest: HashMap::new(), fleet_paths: Vec::new() };
    let mut ids = HashSet::new();
    for RawKey { path, id, sha256, models: listed, limits, team } in raw {
        if !ids.insert(id.clone()) {
            return Err(err(join(&path, "id"), format!("duplicate key id '{id}'")));
        }
        // Limit records and the fleet tier name users and teams `user:<id>` and `team:<name>`.
        if subjects && (id.starts_with("user:") || id.starts_with("team:")) {
            return Err(err(
                join(&path, "id"),
                "must not start with user: or team: (the subject ids of users and teams)",
            ));
        }
        let team_id = match (teams, &team) {
            (Some(by_name), Some(t)) => match by_name.get(t) {
                Some(id) => Some(*id),
                None => return Err(err(join(&path, "team"), format!("names no team '{t}' in teams"))),
            },
            _ => None,
        };
        if out.by_digest.insert(sha256, out.list.len()).is_some() {
            return Err(err(join(&path, "sha256"), "the same key digest appears twice"));
        }
        let mut allowed_set = HashSet::new();
        let mut all = false;
        for (j, m) in listed.into_iter().enumerate() {
            if m == "*" {
                all = true;
            } else if model_names.contains(&m) {
                allowed_set.insert(m);
            } else {
                return Err(err(format!("{path}.models[{j}]"), format!("names no model '{m}' in models")));
            }
        }
        let allowed = if all { Allowed::All } else { Allowed::Only(allowed_set) };
        let visible: Vec<&str> = all_names
            .iter()
            .copied()
            .filter(|n| match &allowed {
                Allowed::All => true,
                Allowed::Only(s) => s.contains(*n),
            })
            .collect();
        let models_json = models_list_json(&visible, models, providers);
        let mut limits = match limits {
            None => KeyLimits::default(),
            Some(l) => {
                if l.fleet.is_some() {
                    out.fleet_paths.push((out.list.len(), l.fleet_path.clone()));
                }
                compile_limits(l, model_names)?
            }
        };
        crate::limits::name_records(&id, &mut limits);
        out.list.push(Key { id, allowed, limits, models_json, team, team_id });
    }
    Ok(out)
}

/// `keys[i].limits` (also a team's and the users' limits) checked against the models.
fn compile_limits(raw: RawLimits, model_names: &HashSet<String>) -> R<KeyLimits> {
    let RawLimits { requests, tokens, concurrent, budget, models, fleet, .. } = raw;
    let mut l = KeyLimits { requests, tokens, concurrent, budget, ..KeyLimits::default() };
    for m in models {
        if !model_names.contains(&m.model) {
            return Err(err(m.path, format!("names no model '{}' in models", m.model)));
        }
        l.per_model.insert(m.model, ModelLimits { requests: m.requests, tokens: m.tokens, ..ModelLimits::default() });
    }
    if let Some(f) = fleet {
        let mut fl = FleetLimits { requests: f.requests, tokens: f.tokens, budget: f.budget, ..FleetLimits::default() };
        for m in f.models {
            if !model_names.contains(&m.model) {
                return Err(err(m.path, format!("names no model '{}' in models", m.model)));
            }
            fl.per_model.insert(m.model, (m.requests, m.tokens));
        }
        l.fleet = Some(fl).filter(|f| !f.is_empty());
    }
    Ok(l)
}

/// Fleet-wide limits (each with the path of its `limits.fleet`) need the service's section; a standard
/// service cannot hold budgets.
fn check_fleet(limits: &[(String, &FleetLimits)], fleet: Option<&FleetService>) -> R<()> {
    for (path, f) in limits {
        match fleet {
            None => {
                return Err(err(
                    path.clone(),
                    "needs the top-level fleet_limits section (the rate-limit service's cluster)",
                ))
            }
            Some(s) if s.standard && f.budget.is_some() => {
                return Err(err(
                    join(path, "budget"),
                    "needs protocol \"switchyard\" in fleet_limits (a standard rate-limit service keeps no money)",
                ))
            }
            Some(s) if s.standard => check_standard_windows(f, path)?,
            Some(_) => {}
        }
    }
    Ok(())
}

/// A standard service knows windows of a second, minute, hour or day only (the protocol's units).
fn check_standard_windows(f: &FleetLimits, path: &str) -> R<()> {
    let mut rates: Vec<(String, Rate)> = Vec::new();
    rates.extend(f.requests.map(|r| (join(path, "requests"), r)));
    rates.extend(f.tokens.map(|r| (join(path, "tokens"), r)));
    let mut names: Vec<&String> = f.per_model.keys().collect();
    names.sort();
    for m in names {
        let (req, tok) = &f.per_model[m];
        let base = join(&join(path, "models"), m);
        rates.extend(req.map(|r| (join(&base, "requests"), r)));
        rates.extend(tok.map(|r| (join(&base, "tokens"), r)));
    }
    for (p, r) in rates {
        if ![1, 60, 3600, 86_400].contains(&r.window_secs) {
            return Err(err(
                join(&p, "window_secs"),
                "must be 1, 60, 3600 or 86400 with protocol \"standard\" (the rate-limit protocol's units)",
            ));
        }
    }
    Ok(())
}

/// A `GET /v1/models` answer listing `names` (in that order).
pub(crate) fn models_list_json(names: &[&str], models: &HashMap<String, Model>, providers: &[Provider]) -> String {
    let data: Vec<Value> = names
        .iter()
        .map(|n| {
            let owner = models
                .get(*n)
                .and_then(|m| m.targets.first())
                .and_then(|t| providers.get(t.provider))
                .map(|p| p.name.as_str())
                .unwrap_or("switchyard");
            serde_json::json!({"id": n, "object": "model", "created": 0, "owned_by": owner})
        })
        .collect();
    serde_json::json!({"object": "list", "data": data}).to_string()
}

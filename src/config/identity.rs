//! Identity settings: the top-level `identity` (which credentials this filter accepts, how a verified
//! JWT's claims name the user and their teams, what the access log shows of the user, the limits every
//! user gets) and `teams` (who is a member by which claim values, which models a team grants, the limits
//! its members and keys share). Parsed field by field here (stage 1), cross-checked in `compile` (stage
//! 2): team models name configured models (or match some by pattern), keys name teams, key ids stay
//! clear of the `user:` and `team:` subject prefixes.

use super::fields::{as_obj, check_fields, err, join, opt_str, type_name, R};
use super::raw::{limits, RawLimits};
use super::{Allowed, KeyLimits};
use hashbrown::{HashMap, HashSet};
use serde_json::{Map, Value};

/// Longest claim path, claim value a team lists, and team name.
const MAX_CLAIM_LEN: usize = 256;
const MAX_TEAM_NAME: usize = 128;

/// What the access log shows of a user (`identity.log_user`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogUser {
    /// The user id as the claim has it.
    #[default]
    Plain,
    /// The first 16 hex digits of the id's SHA-256.
    Hashed,
    /// Nothing.
    Off,
}

/// `identity`, compiled.
#[derive(Debug, Clone)]
pub struct Identity {
    /// Virtual keys are accepted (`accept` lists `keys`).
    pub accept_keys: bool,
    /// Users with a JWT verified by Envoy's `jwt_authn` are accepted (`accept` lists `jwt`).
    pub accept_jwt: bool,
    /// The claim naming the user: a claim name, or a dotted path into nested claims.
    pub user_claim: String,
    /// The claim listing the user's groups (a list of strings, or one string of names split on
    /// whitespace and commas); none: users belong to no team.
    pub teams_claim: Option<String>,
    pub log_user: LogUser,
    /// Limits each user gets on their own (records named per user at request time).
    pub user_limits: KeyLimits,
}

impl Default for Identity {
    /// Virtual keys only: what a config without `identity` accepts.
    fn default() -> Identity {
        Identity {
            accept_keys: true,
            accept_jwt: false,
            user_claim: "sub".to_string(),
            teams_claim: None,
            log_user: LogUser::Plain,
            user_limits: KeyLimits::default(),
        }
    }
}

/// An index into `Config::teams` (teams are sorted by name, so ids sort as names do).
pub type TeamId = usize;

/// `teams.<name>`, compiled.
#[derive(Debug, Clone)]
pub struct Team {
    pub name: String,
    /// The models the team grants (names and patterns expanded over the configured models).
    pub allowed: Allowed,
    /// The granted models that are served (a provider left out for a missing optional credential
    /// serves none), sorted: what `GET /v1/models` lists.
    pub listed: Vec<String>,
    /// Limits shared by every member and every key of the team (records `switchyard/limits/team:<name>`).
    pub limits: KeyLimits,
}

impl Team {
    pub fn may_use(&self, model: &str) -> bool {
        match &self.allowed {
            Allowed::All => true,
            Allowed::Only(set) => set.contains(model),
        }
    }
}

/// `identity` as written.
#[derive(Debug, Clone)]
pub struct RawIdentity {
    pub accept_keys: bool,
    pub accept_jwt: bool,
    pub user_claim: Option<String>,
    pub teams_claim: Option<String>,
    pub log_user: Option<LogUser>,
    pub user_limits: Option<RawLimits>,
}

/// `teams.<name>` as written.
#[derive(Debug, Clone)]
pub struct RawTeam {
    /// `teams.<name>`.
    pub path: String,
    pub name: String,
    /// `claims`; the team's name when left out.
    pub claims: Vec<String>,
    /// `models`: names and patterns, not yet looked up.
    pub models: Vec<String>,
    pub limits: Option<RawLimits>,
}

/// `identity`: `{accept, user_claim, teams_claim, log_user, user_limits}`.
pub fn identity(v: &Value, path: &str) -> R<RawIdentity> {
    let o = as_obj(v, path)?;
    check_fields(o, path, &["accept", "user_claim", "teams_claim", "log_user", "user_limits"])?;
    let (accept_keys, accept_jwt) = match o.get("accept") {
        None => (true, false),
        Some(a) => accept(a, &join(path, "accept"))?,
    };
    let user_claim = claim_path(o, path, "user_claim")?;
    let teams_claim = claim_path(o, path, "teams_claim")?;
    let log_user = match o.get("log_user") {
        None => None,
        Some(Value::String(s)) if s == "plain" => Some(LogUser::Plain),
        Some(Value::String(s)) if s == "hashed" => Some(LogUser::Hashed),
        Some(Value::String(s)) if s == "off" => Some(LogUser::Off),
        Some(_) => {
            return Err(err(
                join(path, "log_user"),
                "must be \"plain\" (the user id), \"hashed\" (the first 16 hex digits of its SHA-256) or \"off\"",
            ))
        }
    };
    let user_limits = o.get("user_limits").map(|v| limits(v, &join(path, "user_limits"))).transpose()?;
    if !accept_jwt {
        // Everything else here is about JWT users.
        for k in ["user_claim", "teams_claim", "log_user", "user_limits"] {
            if o.contains_key(k) {
                return Err(err(join(path, k), "is for JWT users: add \"jwt\" to identity.accept"));
            }
        }
    }
    Ok(RawIdentity { accept_keys, accept_jwt, user_claim, teams_claim, log_user, user_limits })
}

/// `identity.accept`: a non-empty list of `keys` and `jwt`, each once.
fn accept(v: &Value, path: &str) -> R<(bool, bool)> {
    let Value::Array(items) = v else {
        return Err(err(path, format!("must be an array of \"keys\" and \"jwt\", got {}", type_name(v))));
    };
    if items.is_empty() {
        return Err(err(path, "must list \"keys\", \"jwt\" or both"));
    }
    let (mut keys, mut jwt) = (false, false);
    for (i, item) in items.iter().enumerate() {
        let slot = match item.as_str() {
            Some("keys") => &mut keys,
            Some("jwt") => &mut jwt,
            _ => {
                return Err(err(
                    format!("{path}[{i}]"),
                    "must be \"keys\" (virtual keys) or \"jwt\" (users with a JWT verified by Envoy)",
                ))
            }
        };
        if *slot {
            return Err(err(format!("{path}[{i}]"), "is listed twice"));
        }
        *slot = true;
    }
    Ok((keys, jwt))
}

/// A claim name or a dotted path of them (`realm_access.roles`): printable, no empty segment.
fn claim_path(o: &Map<String, Value>, path: &str, k: &str) -> R<Option<String>> {
    let Some(s) = opt_str(o, path, k)? else { return Ok(None) };
    let printable = s.chars().all(|c| !c.is_control());
    if s.len() > MAX_CLAIM_LEN || !printable || s.split('.').any(str::is_empty) {
        return Err(err(
            join(path, k),
            "must be a claim name or a dotted path into nested claims (realm_access.roles), at most 256 characters",
        ));
    }
    Ok(Some(s.to_string()))
}

/// `teams`: name → `{claims, models, limits}`, in the file's order.
pub fn teams(v: &Value, path: &str) -> R<Vec<RawTeam>> {
    as_obj(v, path)?.iter().map(|(name, v)| team(name, v, path)).collect()
}

/// Whether `name` may name a team (the same names as `keys[i].team`).
pub fn is_team_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_TEAM_NAME
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
}

fn team(name: &str, v: &Value, path: &str) -> R<RawTeam> {
    let tpath = join(path, name);
    if !is_team_name(name) {
        return Err(err(tpath, "team names must be 1 to 128 letters, digits and - _ . :"));
    }
    let o = as_obj(v, &tpath)?;
    check_fields(o, &tpath, &["claims", "models", "limits"])?;
    let claims = match o.get("claims") {
        None => vec![name.to_string()],
        Some(c) => strings(c, &join(&tpath, "claims"), "claim values", false)?,
    };
    let models = match o.get("models") {
        Some(m) => strings(m, &join(&tpath, "models"), "model names or patterns", true)?,
        None => return Err(err(join(&tpath, "models"), "is required (model names or patterns such as \"claude-*\")")),
    };
    let limits = o.get("limits").map(|v| limits(v, &join(&tpath, "limits"))).transpose()?;
    Ok(RawTeam { path: tpath, name: name.to_string(), claims, models, limits })
}

/// A list of distinct non-empty strings (`may_be_empty`: an empty list is allowed).
fn strings(v: &Value, path: &str, what: &str, may_be_empty: bool) -> R<Vec<String>> {
    let Value::Array(items) = v else {
        return Err(err(path, format!("must be an array of {what}, got {}", type_name(v))));
    };
    if items.is_empty() && !may_be_empty {
        return Err(err(path, format!("must list at least one of the {what}")));
    }
    let mut out: Vec<String> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let at = format!("{path}[{i}]");
        match item {
            Value::String(s) if s.is_empty() || s.len() > MAX_CLAIM_LEN => {
                return Err(err(at, "must be 1 to 256 characters"))
            }
            Value::String(s) if out.contains(s) => return Err(err(at, format!("'{s}' is listed twice"))),
            Value::String(s) => out.push(s.clone()),
            other => return Err(err(at, format!("must be a string, got {}", type_name(other)))),
        }
    }
    Ok(out)
}

/// Whether `name` matches `pattern`, where `*` stands for any run of characters (none included).
pub fn glob(pattern: &str, name: &str) -> bool {
    let mut parts = pattern.split('*');
    let Some(first) = parts.next() else { return pattern == name };
    let Some(mut rest) = name.strip_prefix(first) else { return false };
    let mut pieces: Vec<&str> = parts.collect();
    let Some(last) = pieces.pop() else { return rest.is_empty() };
    for p in pieces {
        match rest.find(p) {
            Some(at) => rest = rest.get(at + p.len()..).unwrap_or_default(),
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// What the teams compile to: sorted by name, with the lookups the request path needs.
pub struct CompiledTeams {
    pub list: Vec<Team>,
    pub by_name: HashMap<String, TeamId>,
    pub by_claim: HashMap<String, Vec<TeamId>>,
    /// (team, path of its `limits.fleet`), for the fleet checks.
    pub fleet_paths: Vec<(TeamId, String)>,
}

/// Stage 2 for `teams`: models looked up (patterns expanded over every configured model, served or
/// not), claims indexed, limit records named.
pub fn compile_teams(
    mut raw: Vec<RawTeam>,
    model_names: &HashSet<String>,
    served: &HashSet<&str>,
    compile_limits: impl Fn(RawLimits) -> R<KeyLimits>,
) -> R<CompiledTeams> {
    raw.sort_by(|a, b| a.name.cmp(&b.name));
    let mut sorted_models: Vec<&String> = model_names.iter().collect();
    sorted_models.sort();
    let mut out = CompiledTeams {
        list: Vec::with_capacity(raw.len()),
        by_name: HashMap::new(),
        by_claim: HashMap::new(),
        fleet_paths: Vec::new(),
    };
    for RawTeam { path, name, claims, models, limits } in raw {
        let id = out.list.len();
        let mut set = HashSet::new();
        let mut all = false;
        for (j, m) in models.iter().enumerate() {
            if m == "*" {
                all = true;
            } else if m.contains('*') {
                let matched: Vec<&&String> = sorted_models.iter().filter(|n| glob(m, n)).collect();
                if matched.is_empty() {
                    return Err(err(
                        format!("{path}.models[{j}]"),
                        format!("the pattern '{m}' matches no model in models"),
                    ));
                }
                set.extend(matched.into_iter().map(|n| n.to_string()));
            } else if model_names.contains(m) {
                set.insert(m.clone());
            } else {
                return Err(err(format!("{path}.models[{j}]"), format!("names no model '{m}' in models")));
            }
        }
        let allowed = if all { Allowed::All } else { Allowed::Only(set) };
        let mut listed: Vec<String> = sorted_models
            .iter()
            .filter(|n| served.contains(n.as_str()))
            .filter(|n| match &allowed {
                Allowed::All => true,
                Allowed::Only(s) => s.contains(n.as_str()),
            })
            .map(|n| n.to_string())
            .collect();
        listed.shrink_to_fit();
        let mut team_limits = match limits {
            None => KeyLimits::default(),
            Some(l) => {
                if l.fleet.is_some() {
                    out.fleet_paths.push((id, l.fleet_path.clone()));
                }
                compile_limits(l)?
            }
        };
        crate::limits::name_records(&subject_team(&name), &mut team_limits);
        for c in claims {
            out.by_claim.entry(c).or_default().push(id);
        }
        out.by_name.insert(name.clone(), id);
        out.list.push(Team { name, allowed, listed, limits: team_limits });
    }
    Ok(out)
}

/// The subject id of a team in the limit records and the fleet tier: `team:<name>`.
pub fn subject_team(name: &str) -> String {
    format!("team:{name}")
}

/// The subject id of a user in the limit records and the fleet tier: `user:<id>`.
pub fn subject_user(id: &str) -> String {
    format!("user:{id}")
}

/// Stage 2 for `identity` (its defaults; the user limits' records are named per user at request time).
pub fn compile_identity(raw: RawIdentity, compile_limits: impl Fn(RawLimits) -> R<KeyLimits>) -> R<Identity> {
    let d = Identity::default();
    let user_limits = raw.user_limits.map(compile_limits).transpose()?.unwrap_or_default();
    Ok(Identity {
        accept_keys: raw.accept_keys,
        accept_jwt: raw.accept_jwt,
        user_claim: raw.user_claim.unwrap_or(d.user_claim),
        teams_claim: raw.teams_claim,
        log_user: raw.log_user.unwrap_or_default(),
        user_limits,
    })
}

#[cfg(test)]
mod tests {
    use super::glob;

    #[test]
    fn glob_patterns() {
        for (p, n, want) in [
            ("claude-*", "claude-sonnet-4-5", true),
            ("claude-*", "claude-", true),
            ("claude-*", "gpt-4o", false),
            ("*-mini", "gpt-4o-mini", true),
            ("*-mini", "gpt-4o-mini-x", false),
            ("gpt-*-mini", "gpt-4o-mini", true),
            ("gpt-*-mini", "gpt-mini", false),
            ("*", "anything", true),
            ("a*b*c", "abc", true),
            ("a*b*c", "aXbYc", true),
            ("a*b*c", "acb", false),
            ("**", "", true),
            ("ab*ab", "ab", false),
            ("exact", "exact", true),
            ("exact", "exactly", false),
        ] {
            assert_eq!(glob(p, n), want, "{p} {n}");
        }
    }
}

//! Which of its two places in Envoy a plugin instance runs in, from the plugin's `root_id`: the
//! route-level role (listener filter chain, once per request) or the upstream role (a provider
//! cluster's upstream filter chain, once per attempt).

#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum Role {
    #[default]
    Route,
    Upstream,
}

impl Role {
    /// The role a `root_id` names, or the configuration error to log.
    pub fn from_root_id(root_id: &str) -> Result<Role, String> {
        match root_id {
            "" | "switchyard" | "switchyard-route" => Ok(Role::Route),
            "switchyard-upstream" => Ok(Role::Upstream),
            other => Err(format!(
                "invalid switchyard config: root_id '{other}' is neither 'switchyard' (route-level) nor 'switchyard-upstream'"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Role;

    #[test]
    fn root_ids() {
        for id in ["", "switchyard", "switchyard-route"] {
            assert_eq!(Role::from_root_id(id), Ok(Role::Route), "{id:?}");
        }
        assert_eq!(Role::from_root_id("switchyard-upstream"), Ok(Role::Upstream));
        let e = Role::from_root_id("switchyard_upstream").unwrap_err();
        assert!(e.contains("root_id 'switchyard_upstream'") && e.contains("switchyard-upstream"), "{e}");
    }
}

//! Whose limits a request counts against: its key, or its user, and the team it is attributed to. Each
//! subject keeps its limits in shared-data records of its own (`switchyard/limits/<subject id>`, and
//! `.../model/<model>` for its limits with one model); a reservation takes from every subject's records
//! or from none.
//!
//! Subject ids: a key's id; `user:<id>` for a user (the user claim's value); `team:<name>` for a team.
//! Keys and teams have their records named at config load; a user's are named when a request of theirs
//! needs them (their limits are `identity.user_limits`, the same for every user, counted per user).

use crate::config::{Key, KeyLimits, ModelLimits, Team};
use std::rc::Rc;

/// Who a subject is, for the words of a refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Whose<'a> {
    Key,
    User,
    Team(&'a str),
}

/// One subject of a request: its limits and the records that hold them.
#[derive(Debug, Clone)]
pub struct Subject<'a> {
    pub limits: &'a KeyLimits,
    /// The record of its own limits.
    pub record: Rc<str>,
    /// The record of its limits with the request's model, when it has some.
    pub model: Option<(Rc<str>, &'a ModelLimits)>,
    pub whose: Whose<'a>,
}

/// The record of subject `id`'s own limits.
pub(super) fn own_record(id: &str) -> String {
    format!("switchyard/limits/{id}")
}

/// The record of subject `id`'s limits with `model`.
pub(super) fn model_record(id: &str, model: &str) -> String {
    format!("switchyard/limits/{id}/model/{model}")
}

impl<'a> Subject<'a> {
    /// A key, its records named at load.
    pub fn key(key: &'a Key, model: &str) -> Subject<'a> {
        Subject::named(&key.limits, model, Whose::Key)
    }

    /// A team, its records named at load.
    pub fn team(team: &'a Team, model: &str) -> Subject<'a> {
        Subject::named(&team.limits, model, Whose::Team(&team.name))
    }

    fn named(limits: &'a KeyLimits, model: &str, whose: Whose<'a>) -> Subject<'a> {
        let model = limits.per_model.get(model).map(|ml| (ml.record.clone(), ml));
        Subject { limits, record: limits.record.clone(), model, whose }
    }

    /// A user with the users' limits (`identity.user_limits`): records `switchyard/limits/user:<id>`.
    pub fn user(id: &str, limits: &'a KeyLimits, model: &str) -> Subject<'a> {
        let subject = crate::config::identity::subject_user(id);
        let model = limits.per_model.get(model).map(|ml| (Rc::from(model_record(&subject, model)), ml));
        Subject { limits, record: Rc::from(own_record(&subject)), model, whose: Whose::User }
    }
}

//! What the leader does when a namespace changes. Pure.

use crate::cluster::namespaces::{Listed, NamespaceSpec};
use crate::watch::namespace_watch::Seen;

/// What the selection makes of one namespace: all the watch keeps of it, so that ten thousand
/// namespaces cost a few bytes each rather than their labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Standing {
    /// The Secret goes there.
    pub target: bool,
    /// Not selected at all: where --prune removes the Secret.
    pub unselected: bool,
}

impl Standing {
    pub fn of(spec: &NamespaceSpec, ns: &Listed) -> Standing {
        Standing {
            target: spec.is_target(ns),
            unselected: spec.is_unselected(ns),
        }
    }
}

/// The work one change asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// It starts to be selected (created, or relabelled to match): write its Secret now.
    Write(String),
    /// With --prune, it stops being selected: remove our Secret.
    Prune(String),
    Nothing,
}

/// The action for `seen`: a write when a namespace becomes a target, a prune (with `prune`)
/// when a selected namespace stops being one. A deleted namespace takes its Secret with it;
/// other changes (annotations, a label the selection ignores) need nothing: drift of the
/// Secret itself is repaired by the periodic refresh.
pub fn react(prune: bool, seen: &Seen) -> Action {
    let Some(after) = seen.after else {
        return Action::Nothing;
    };
    let was_target = seen.before.is_some_and(|b| b.target);
    if after.target {
        return match was_target {
            true => Action::Nothing,
            false => Action::Write(seen.name.clone()),
        };
    }
    let was_selected = seen.before.is_some_and(|b| !b.unselected);
    if prune && was_selected && after.unselected {
        return Action::Prune(seen.name.clone());
    }
    Action::Nothing
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    /// A namespace as listed for `spec`'s selector.
    fn ns(spec: &NamespaceSpec, name: &str, pulls: Option<&str>, terminating: bool) -> Listed {
        let labels = pulls
            .map(|v| BTreeMap::from([("pulls".to_string(), v.to_string())]))
            .unwrap_or_default();
        Listed::new(name.into(), &labels, terminating, spec.selector.as_ref())
    }

    fn seen_by(spec: &NamespaceSpec, before: Option<Listed>, after: Option<Listed>) -> Seen {
        let name = after
            .as_ref()
            .or(before.as_ref())
            .map(|l| l.name.clone())
            .unwrap_or_default();
        Seen {
            name,
            before: before.map(|b| Standing::of(spec, &b)),
            after: after.map(|a| Standing::of(spec, &a)),
        }
    }

    #[test]
    fn new_and_newly_matching_namespaces_are_written_once() {
        let spec = NamespaceSpec {
            include: vec!["team-*".into()],
            exclude: vec!["team-old".into()],
            selector: Some("pulls=ecr".parse().unwrap()),
        };
        let write = |n: &str| Action::Write(n.into());
        assert_eq!(
            react(
                false,
                &seen_by(&spec, None, Some(ns(&spec, "team-a", Some("ecr"), false)))
            ),
            write("team-a")
        );
        assert_eq!(
            react(
                false,
                &seen_by(&spec, None, Some(ns(&spec, "web", Some("ecr"), false)))
            ),
            Action::Nothing
        );
        assert_eq!(
            react(
                false,
                &seen_by(&spec, None, Some(ns(&spec, "team-old", Some("ecr"), false)))
            ),
            Action::Nothing
        );
        // Relabelled to match.
        let before = ns(&spec, "team-b", None, false);
        let after = ns(&spec, "team-b", Some("ecr"), false);
        assert_eq!(
            react(false, &seen_by(&spec, Some(before), Some(after.clone()))),
            write("team-b")
        );
        // Already a target: another label or annotation changes nothing.
        assert_eq!(
            react(
                true,
                &seen_by(&spec, Some(after.clone()), Some(after.clone()))
            ),
            Action::Nothing
        );
        // Terminating: neither written nor pruned; deleted: nothing.
        let dying = ns(&spec, "team-b", Some("ecr"), true);
        assert_eq!(
            react(true, &seen_by(&spec, Some(after.clone()), Some(dying))),
            Action::Nothing
        );
        assert_eq!(
            react(true, &seen_by(&spec, Some(after), None)),
            Action::Nothing
        );
    }

    #[test]
    fn a_namespace_that_stops_matching_is_pruned_only_with_prune() {
        let spec = NamespaceSpec {
            include: vec![],
            exclude: vec![],
            selector: Some("pulls=ecr".parse().unwrap()),
        };
        let before = ns(&spec, "a", Some("ecr"), false);
        let after = ns(&spec, "a", Some("no"), false);
        let change = seen_by(&spec, Some(before), Some(after.clone()));
        assert_eq!(react(false, &change), Action::Nothing);
        assert_eq!(react(true, &change), Action::Prune("a".into()));
        // Never selected: nothing to prune.
        assert_eq!(
            react(true, &seen_by(&spec, None, Some(after.clone()))),
            Action::Nothing
        );
        assert_eq!(
            react(true, &seen_by(&spec, Some(after.clone()), Some(after))),
            Action::Nothing
        );
    }
}

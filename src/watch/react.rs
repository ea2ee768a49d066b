//! What the leader does when a namespace changes. Pure.

use crate::cluster::namespaces::NamespaceSpec;
use crate::watch::namespace_watch::Seen;

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
pub fn react(spec: &NamespaceSpec, prune: bool, seen: &Seen) -> Action {
    let Some(after) = &seen.after else {
        return Action::Nothing;
    };
    let was_target = seen.before.as_ref().is_some_and(|b| spec.is_target(b));
    if spec.is_target(after) {
        return match was_target {
            true => Action::Nothing,
            false => Action::Write(after.name.clone()),
        };
    }
    let was_selected = seen.before.as_ref().is_some_and(|b| !spec.is_unselected(b));
    if prune && was_selected && spec.is_unselected(after) {
        return Action::Prune(after.name.clone());
    }
    Action::Nothing
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::cluster::namespaces::Listed;

    fn ns(name: &str, pulls: Option<&str>, terminating: bool) -> Listed {
        Listed {
            name: name.into(),
            labels: pulls
                .map(|v| BTreeMap::from([("pulls".to_string(), v.to_string())]))
                .unwrap_or_default(),
            terminating,
        }
    }

    fn seen(before: Option<Listed>, after: Option<Listed>) -> Seen {
        Seen { before, after }
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
                &spec,
                false,
                &seen(None, Some(ns("team-a", Some("ecr"), false)))
            ),
            write("team-a")
        );
        assert_eq!(
            react(
                &spec,
                false,
                &seen(None, Some(ns("web", Some("ecr"), false)))
            ),
            Action::Nothing
        );
        assert_eq!(
            react(
                &spec,
                false,
                &seen(None, Some(ns("team-old", Some("ecr"), false)))
            ),
            Action::Nothing
        );
        // Relabelled to match.
        let before = ns("team-b", None, false);
        let after = ns("team-b", Some("ecr"), false);
        assert_eq!(
            react(&spec, false, &seen(Some(before), Some(after.clone()))),
            write("team-b")
        );
        // Already a target: another label or annotation changes nothing.
        assert_eq!(
            react(&spec, true, &seen(Some(after.clone()), Some(after.clone()))),
            Action::Nothing
        );
        // Terminating: neither written nor pruned; deleted: nothing.
        let dying = ns("team-b", Some("ecr"), true);
        assert_eq!(
            react(&spec, true, &seen(Some(after.clone()), Some(dying))),
            Action::Nothing
        );
        assert_eq!(
            react(&spec, true, &seen(Some(after), None)),
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
        let before = ns("a", Some("ecr"), false);
        let after = ns("a", Some("no"), false);
        let change = seen(Some(before), Some(after.clone()));
        assert_eq!(react(&spec, false, &change), Action::Nothing);
        assert_eq!(react(&spec, true, &change), Action::Prune("a".into()));
        // Never selected: nothing to prune.
        assert_eq!(
            react(&spec, true, &seen(None, Some(after.clone()))),
            Action::Nothing
        );
        assert_eq!(
            react(&spec, true, &seen(Some(after.clone()), Some(after))),
            Action::Nothing
        );
    }
}

//! Which namespaces a run writes to: exact names, glob patterns and a label selector, minus
//! exclusions. Listing namespaces is only needed for patterns, selectors and pruning, so an
//! install with per-namespace Roles keeps working without cluster-wide `list namespaces`.
//!
//! The listing asks for metadata only (`PartialObjectMetadataList`: no spec, status or object
//! bodies) in pages of [`PAGE`], so memory stays bounded by a page whatever the cluster's size.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::ListParams;
use kube::{Api, Client};

use crate::cluster::calls::{code_of, retrying};
use crate::cluster::labels::{Selector, glob_matches, is_pattern};

/// Namespaces per page of the listing.
pub const PAGE: u32 = 500;
/// How many times a listing whose continue token expired (410) is started over.
const RESTARTS: u32 = 2;

/// What the user asked for.
#[derive(Debug, Clone, Default)]
pub struct NamespaceSpec {
    /// Exact names and glob patterns. Empty with a selector means every namespace it matches.
    pub include: Vec<String>,
    /// Exact names and glob patterns to leave out.
    pub exclude: Vec<String>,
    pub selector: Option<Selector>,
}

/// A namespace as listed from the cluster, judged by --namespace-selector as it is read: with
/// ten thousand namespaces, keeping their labels until the selection is made was a third of the
/// run's memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub name: String,
    /// Its labels match the selector (true without one).
    pub matches: bool,
    pub terminating: bool,
}

impl Listed {
    pub fn new(
        name: String,
        labels: &BTreeMap<String, String>,
        terminating: bool,
        selector: Option<&Selector>,
    ) -> Listed {
        Listed {
            name,
            matches: selector.is_none_or(|s| s.matches(labels)),
            terminating,
        }
    }

    /// The namespace an object's metadata describes; `None` without a name.
    pub fn from_meta(meta: ObjectMeta, selector: Option<&Selector>) -> Option<Listed> {
        Some(Listed::new(
            meta.name?,
            &meta.labels.unwrap_or_default(),
            meta.deletion_timestamp.is_some(),
            selector,
        ))
    }
}

/// A namespace to write to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub name: String,
    /// Named exactly by the user (so its absence is an error, not a skip).
    pub exact: bool,
}

/// The outcome of selection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    pub targets: Vec<Target>,
    /// Namespaces passed over, with the reason (terminating, not matching the selector).
    pub skipped: Vec<(String, String)>,
    /// Exact names that do not exist.
    pub missing: Vec<String>,
    /// Listed namespaces that were not selected: where `--prune` looks. Empty without a listing.
    pub unselected: Vec<String>,
}

impl NamespaceSpec {
    pub fn needs_listing(&self) -> bool {
        self.selector.is_some() || self.include.iter().any(|i| is_pattern(i))
    }

    fn excluded(&self, name: &str) -> bool {
        self.exclude.iter().any(|e| glob_matches(e, name))
    }

    fn included(&self, name: &str) -> bool {
        self.include.is_empty() || self.include.iter().any(|i| glob_matches(i, name))
    }

    /// Whether `ns` is one to write to (selected, and not terminating).
    pub fn is_target(&self, ns: &Listed) -> bool {
        !self
            .select(Some(std::slice::from_ref(ns)))
            .targets
            .is_empty()
    }

    /// Whether `ns` is one that --prune removes the Secret from (not selected at all).
    pub fn is_unselected(&self, ns: &Listed) -> bool {
        !self
            .select(Some(std::slice::from_ref(ns)))
            .unselected
            .is_empty()
    }

    /// Chooses the targets, from the exact names alone or from a listing. Pure.
    pub fn select(&self, listed: Option<&[Listed]>) -> Selection {
        let mut sel = Selection::default();
        let Some(listed) = listed else {
            sel.targets = self
                .include
                .iter()
                .filter(|n| !self.excluded(n))
                .map(|n| Target {
                    name: n.clone(),
                    exact: true,
                })
                .collect();
            return sel;
        };
        let by_name: BTreeMap<&str, &Listed> =
            listed.iter().map(|l| (l.name.as_str(), l)).collect();
        for exact in self.include.iter().filter(|i| !is_pattern(i)) {
            if !by_name.contains_key(exact.as_str()) && !self.excluded(exact) {
                sel.missing.push(exact.clone());
            }
        }
        for ns in by_name.values() {
            let wanted = self.included(&ns.name) && !self.excluded(&ns.name);
            let matches = ns.matches;
            let exact = self.include.iter().any(|i| i == &ns.name);
            if !wanted {
                sel.unselected.push(ns.name.clone());
            } else if !matches {
                if exact {
                    sel.skipped.push((
                        ns.name.clone(),
                        "does not match --namespace-selector".into(),
                    ));
                }
                sel.unselected.push(ns.name.clone());
            } else if ns.terminating {
                sel.skipped
                    .push((ns.name.clone(), "namespace is terminating".into()));
            } else {
                sel.targets.push(Target {
                    name: ns.name.clone(),
                    exact,
                });
            }
        }
        sel
    }
}

/// Every namespace in the cluster, judged by `selector`, and whether it is being deleted:
/// metadata only, [`PAGE`] at a time. A continue token that expired between pages (410 Expired, after
/// an etcd compaction) starts the listing over, so the result is one consistent snapshot.
pub async fn list(client: Client, selector: Option<&Selector>) -> Result<Vec<Listed>, kube::Error> {
    list_with_version(client, selector)
        .await
        .map(|(listed, _)| listed)
}

/// Like [`list`], with the resourceVersion of the snapshot: where a watch of the changes since
/// starts.
pub async fn list_with_version(
    client: Client,
    selector: Option<&Selector>,
) -> Result<(Vec<Listed>, String), kube::Error> {
    let api: Api<Namespace> = Api::all(client);
    let mut restarts = 0;
    'listing: loop {
        let mut listed = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut params = ListParams::default().limit(PAGE);
            if let Some(t) = &token {
                params = params.continue_token(t);
            }
            let page = match retrying(|| api.list_metadata(&params)).await {
                Ok(page) => page,
                Err(e) if code_of(&e) == Some(410) && token.is_some() && restarts < RESTARTS => {
                    restarts += 1;
                    tracing::warn!(
                        "the namespace list expired between pages (410 Expired); listing again"
                    );
                    continue 'listing;
                }
                Err(e) => return Err(e),
            };
            listed.extend(
                page.items
                    .into_iter()
                    .filter_map(|ns| Listed::from_meta(ns.metadata, selector)),
            );
            match page.metadata.continue_ {
                Some(t) if !t.is_empty() => token = Some(t),
                _ => return Ok((listed, page.metadata.resource_version.unwrap_or_default())),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A namespace as listed for `spec`'s selector.
    fn ns(spec: &NamespaceSpec, name: &str, labels: &[(&str, &str)], terminating: bool) -> Listed {
        let labels = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Listed::new(name.into(), &labels, terminating, spec.selector.as_ref())
    }

    fn spec(include: &[&str], exclude: &[&str], selector: Option<&str>) -> NamespaceSpec {
        NamespaceSpec {
            include: include.iter().map(|s| s.to_string()).collect(),
            exclude: exclude.iter().map(|s| s.to_string()).collect(),
            selector: selector.map(|s| s.parse().unwrap()),
        }
    }

    fn names(sel: &Selection) -> Vec<&str> {
        sel.targets.iter().map(|t| t.name.as_str()).collect()
    }

    fn cluster(s: &NamespaceSpec) -> Vec<Listed> {
        vec![
            ns(s, "team-a", &[("pulls", "ecr")], false),
            ns(s, "team-b", &[("pulls", "ecr")], false),
            ns(s, "team-old", &[("pulls", "ecr")], true),
            ns(s, "kube-system", &[], false),
            ns(s, "web", &[("pulls", "ecr")], false),
        ]
    }

    #[test]
    fn exact_names_need_no_listing() {
        let s = spec(&["a", "b", "c"], &["b"], None);
        assert!(!s.needs_listing());
        assert_eq!(names(&s.select(None)), ["a", "c"]);
    }

    #[test]
    fn patterns_minus_excludes() {
        let s = spec(&["team-*", "web"], &["team-b"], None);
        assert!(s.needs_listing());
        let sel = s.select(Some(&cluster(&s)));
        assert_eq!(names(&sel), ["team-a", "web"]);
        assert_eq!(
            sel.skipped,
            [(
                "team-old".to_string(),
                "namespace is terminating".to_string()
            )]
        );
        assert_eq!(sel.unselected, ["kube-system", "team-b"]);
    }

    #[test]
    fn selector_and_patterns_combine() {
        let s = spec(&[], &[], Some("pulls=ecr"));
        let sel = s.select(Some(&cluster(&s)));
        assert_eq!(names(&sel), ["team-a", "team-b", "web"]);
        let s = spec(&["team-*", "kube-system"], &[], Some("pulls=ecr"));
        let sel = s.select(Some(&cluster(&s)));
        assert_eq!(names(&sel), ["team-a", "team-b"]);
        assert!(sel.skipped.contains(&(
            "kube-system".into(),
            "does not match --namespace-selector".into()
        )));
    }

    #[test]
    fn one_namespace_at_a_time_as_the_whole_selection_decides() {
        let s = spec(&["team-*", "web"], &["team-b"], Some("pulls=ecr"));
        let all = cluster(&s);
        let sel = s.select(Some(&all));
        for ns in &all {
            let target = sel.targets.iter().any(|t| t.name == ns.name);
            assert_eq!(s.is_target(ns), target, "{}", ns.name);
            assert_eq!(
                s.is_unselected(ns),
                sel.unselected.contains(&ns.name),
                "{}",
                ns.name
            );
        }
        assert!(s.is_target(&all[0]) && !s.is_target(&all[2]) && s.is_unselected(&all[1]));
    }

    #[test]
    fn missing_exact_names_are_reported() {
        let s = spec(&["team-*", "ghost", "web"], &[], None);
        let sel = s.select(Some(&cluster(&s)));
        assert_eq!(sel.missing, ["ghost"]);
        assert!(sel.targets.iter().any(|t| t.name == "web" && t.exact));
        assert!(sel.targets.iter().any(|t| t.name == "team-a" && !t.exact));
    }
}

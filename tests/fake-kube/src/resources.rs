//! The catalogue of resources the server serves: where each lives (group, version, plural),
//! its kind, and whether it is namespaced. Routing, discovery and defaulting all read it.

/// One resource type as discovery describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Resource {
    /// API group, empty for the core group.
    pub(crate) group: &'static str,
    pub(crate) version: &'static str,
    /// Plural, as in the URL (`leases`).
    pub(crate) plural: &'static str,
    pub(crate) kind: &'static str,
    pub(crate) namespaced: bool,
    pub(crate) short_names: &'static [&'static str],
}

const fn r(
    group: &'static str,
    version: &'static str,
    plural: &'static str,
    kind: &'static str,
    namespaced: bool,
    short_names: &'static [&'static str],
) -> Resource {
    Resource {
        group,
        version,
        plural,
        kind,
        namespaced,
        short_names,
    }
}

pub(crate) const RESOURCES: &[Resource] = &[
    r("", "v1", "namespaces", "Namespace", false, &["ns"]),
    r("", "v1", "secrets", "Secret", true, &[]),
    r("", "v1", "serviceaccounts", "ServiceAccount", true, &["sa"]),
    r("", "v1", "events", "Event", true, &["ev"]),
    r("", "v1", "configmaps", "ConfigMap", true, &["cm"]),
    r("coordination.k8s.io", "v1", "leases", "Lease", true, &[]),
    // What the manifests install, so that `kubectl apply -k` can run against the fake.
    r("batch", "v1", "jobs", "Job", true, &[]),
    r("batch", "v1", "cronjobs", "CronJob", true, &["cj"]),
    r(
        "rbac.authorization.k8s.io",
        "v1",
        "clusterroles",
        "ClusterRole",
        false,
        &[],
    ),
    r(
        "rbac.authorization.k8s.io",
        "v1",
        "clusterrolebindings",
        "ClusterRoleBinding",
        false,
        &[],
    ),
    r(
        "rbac.authorization.k8s.io",
        "v1",
        "roles",
        "Role",
        true,
        &[],
    ),
    r(
        "rbac.authorization.k8s.io",
        "v1",
        "rolebindings",
        "RoleBinding",
        true,
        &[],
    ),
    r(
        "admissionregistration.k8s.io",
        "v1",
        "validatingadmissionpolicies",
        "ValidatingAdmissionPolicy",
        false,
        &[],
    ),
    r(
        "admissionregistration.k8s.io",
        "v1",
        "validatingadmissionpolicybindings",
        "ValidatingAdmissionPolicyBinding",
        false,
        &[],
    ),
];

impl Resource {
    /// `apiVersion` of its objects: `v1` or `group/version`.
    pub(crate) fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The name the API server's messages use: `leases.coordination.k8s.io`, or the plural for
    /// the core group.
    pub(crate) fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// The kind as the API server's validation messages name it: `Job.batch`, `Secret`.
    pub(crate) fn qualified_kind(&self) -> String {
        if self.group.is_empty() {
            self.kind.to_string()
        } else {
            format!("{}.{}", self.kind, self.group)
        }
    }
}

/// The resource served at `group/version/plural`, if any.
pub(crate) fn find(group: &str, version: &str, plural: &str) -> Option<&'static Resource> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// The groups other than core, each once, in catalogue order.
pub(crate) fn groups() -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&str, &str)> = Vec::new();
    for r in RESOURCES.iter().filter(|r| !r.group.is_empty()) {
        if !out.iter().any(|(g, _)| *g == r.group) {
            out.push((r.group, r.version));
        }
    }
    out
}

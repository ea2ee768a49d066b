//! A small RBAC authorizer: policy rules as a Role or ClusterRole states them.

use crate::Request;

/// One policy rule, bound either cluster-wide (`namespace: None`) or in one namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub api_groups: Vec<String>,
    pub resources: Vec<String>,
    pub verbs: Vec<String>,
    /// Empty means every name.
    pub resource_names: Vec<String>,
    /// `None` for a ClusterRoleBinding, `Some(ns)` for a RoleBinding in `ns`.
    pub namespace: Option<String>,
}

impl Rule {
    /// Whether this rule grants the request, with the semantics of the RBAC authorizer:
    /// `*` matches everything, and `resourceNames` never matches create or a collection.
    pub fn allows(&self, req: &Request) -> bool {
        let any = |list: &[String], v: &str| list.iter().any(|x| x == "*" || x == v);
        if let Some(ns) = &self.namespace
            && ns != &req.namespace
        {
            return false;
        }
        any(&self.api_groups, &req.group)
            && any(&self.resources, &req.resource)
            && any(&self.verbs, &req.verb)
            && (self.resource_names.is_empty()
                || (!req.name.is_empty() && self.resource_names.contains(&req.name)))
    }
}

pub(crate) fn allowed(rules: &[Rule], req: &Request) -> bool {
    rules.iter().any(|r| r.allows(req))
}

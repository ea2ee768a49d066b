//! The HTTP side: routing, the REST semantics of each verb, faults, the request log.

use std::sync::{Arc, Mutex};

use base64::Engine;
use http_body_util::BodyExt;
use hyper::Method;
use hyper::body::{Bytes, Incoming};
use serde_json::{Value, json};

use crate::http::{self, Response};
use crate::resources::{self, RESOURCES, Resource};
use crate::store::{Requirement, name_of, parse_selector};
use crate::watch::{self, Start, Watch};
use crate::{ExpiredWatch, Request, State, rbac};

/// The conventional `reason` for an HTTP status, as the API server's Status objects carry it.
pub(crate) fn reason_for(status: u16) -> &'static str {
    match status {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        405 => "MethodNotAllowed",
        409 => "Conflict",
        410 => "Expired",
        415 => "UnsupportedMediaType",
        422 => "Invalid",
        429 => "TooManyRequests",
        500 => "InternalError",
        503 => "ServiceUnavailable",
        504 => "Timeout",
        _ => "",
    }
}

#[derive(Debug)]
struct Status {
    code: u16,
    reason: String,
    message: String,
    name: String,
    kind: String,
    /// The rarely set parts, boxed to keep `Status` small as an error type.
    extra: Option<Box<Extra>>,
}

#[derive(Debug, Default)]
struct Extra {
    retry_after: Option<u64>,
    /// `metadata.continue`: on a 410 for an expired list token, where an inconsistent list may
    /// go on from.
    continue_token: Option<String>,
    /// `details.group`, for objects outside the core group.
    group: Option<String>,
    /// `details.causes`: what was invalid, field by field (kubectl prints these).
    causes: Vec<Value>,
}

impl Status {
    fn new(code: u16, message: impl Into<String>) -> Self {
        Status {
            code,
            reason: reason_for(code).to_string(),
            message: message.into(),
            name: String::new(),
            kind: String::new(),
            extra: None,
        }
    }
    fn reason(mut self, reason: &str) -> Self {
        self.reason = reason.to_string();
        self
    }
    fn details(mut self, kind: &str, name: &str) -> Self {
        self.kind = kind.to_string();
        self.name = name.to_string();
        self
    }
    fn not_found(resource: &str, name: &str) -> Self {
        Status::new(404, format!("{resource} \"{name}\" not found")).details(resource, name)
    }
    /// 422 Invalid for `kind` (`Job.batch`, `Secret`) with one cause, `detail` being
    /// `field: message` as the API server's field errors read.
    fn invalid(kind: &str, name: &str, detail: &str) -> Self {
        let (bare, group) = kind.split_once('.').unwrap_or((kind, ""));
        let (field, message) = detail.split_once(": ").unwrap_or(("", detail));
        let mut s =
            Status::new(422, format!("{kind} \"{name}\" is invalid: {detail}")).details(bare, name);
        s.extra = Some(Box::new(Extra {
            group: (!group.is_empty()).then(|| group.to_string()),
            causes: vec![
                json!({"reason": "FieldValueInvalid", "message": message, "field": field}),
            ],
            ..Extra::default()
        }));
        s
    }
    fn conflict(resource: &str, name: &str) -> Self {
        Status::new(
            409,
            format!(
                "Operation cannot be fulfilled on {resource} \"{name}\": the object has been modified; please apply your changes to the latest version and try again"
            ),
        )
        .details(resource, name)
    }
    fn into_response(self) -> Response {
        let retry_after = self.extra.as_ref().and_then(|e| e.retry_after);
        let body = self.body();
        let mut resp = json_response(self.code, &body);
        if let Some(secs) = retry_after
            && let Ok(v) = secs.to_string().parse()
        {
            resp.headers_mut().insert("retry-after", v);
        }
        resp
    }
    fn body(&self) -> Value {
        let retry_after = self.extra.as_ref().and_then(|e| e.retry_after);
        let mut details = serde_json::Map::new();
        if !self.name.is_empty() {
            details.insert("name".into(), json!(self.name));
        }
        if !self.kind.is_empty() {
            details.insert("kind".into(), json!(self.kind));
        }
        if let Some(secs) = retry_after {
            details.insert("retryAfterSeconds".into(), json!(secs));
        }
        if let Some(extra) = &self.extra {
            if let Some(group) = &extra.group {
                details.insert("group".into(), json!(group));
            }
            if !extra.causes.is_empty() {
                details.insert("causes".into(), json!(extra.causes));
            }
        }
        let metadata = match self.extra.as_ref().and_then(|e| e.continue_token.as_ref()) {
            Some(t) => json!({"continue": t}),
            None => json!({}),
        };
        json!({
            "kind": "Status", "apiVersion": "v1", "metadata": metadata,
            "status": "Failure", "message": self.message, "reason": self.reason,
            "details": details, "code": self.code,
        })
    }
}

fn json_response(code: u16, body: &Value) -> Response {
    http::response(
        code,
        &[("content-type", "application/json".into())],
        body.to_string(),
    )
}

/// What a request path addresses.
struct Target {
    group: String,
    version: String,
    resource: String,
    namespace: String,
    name: String,
}

fn parse_path(path: &str) -> Option<Target> {
    let trimmed = path.trim_matches('/');
    let segs: Vec<&str> = trimmed.split('/').collect();
    let t = |group: &str, version: &str, resource: &str, namespace: &str, name: &str| Target {
        group: group.into(),
        version: version.into(),
        resource: resource.into(),
        namespace: namespace.into(),
        name: name.into(),
    };
    match segs.as_slice() {
        ["version"] => return Some(t("", "", "version", "", "")),
        // Discovery documents are named by their path.
        ["api"] | ["apis"] | ["api", "v1"] | ["apis", _] | ["apis", _, _] => {
            return Some(t("", "", "discovery", "", trimmed));
        }
        [
            "apis",
            "authorization.k8s.io",
            "v1",
            "selfsubjectaccessreviews",
        ] => {
            return Some(t(
                "authorization.k8s.io",
                "v1",
                "selfsubjectaccessreviews",
                "",
                "",
            ));
        }
        _ => {}
    }
    let (group, version, rest) = match segs.as_slice() {
        ["api", "v1", rest @ ..] => ("", "v1", rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return None,
    };
    match rest {
        ["namespaces"] => Some(t(group, version, "namespaces", "", "")),
        ["namespaces", ns] => Some(t(group, version, "namespaces", "", ns)),
        ["namespaces", ns, res] => Some(t(group, version, res, ns, "")),
        ["namespaces", ns, res, name] => Some(t(group, version, res, ns, name)),
        [res] => Some(t(group, version, res, "", "")),
        [res, name] => Some(t(group, version, res, "", name)),
        _ => None,
    }
}

/// Whether the query asks for a watch (`watch=true` or `watch=1`, as the API server parses it).
fn is_watch(query: &str) -> bool {
    query_param(query, "watch").is_some_and(|w| w == "true" || w == "1")
}

fn verb_of(method: &Method, t: &Target, query: &str) -> String {
    let collection = t.name.is_empty();
    match *method {
        Method::GET if collection && is_watch(query) => "watch",
        Method::GET if collection => "list",
        Method::GET => "get",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE if collection => "deletecollection",
        Method::DELETE => "delete",
        _ => "unknown",
    }
    .to_string()
}

pub(crate) fn query_param(query: &str, key: &str) -> Option<String> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub(crate) async fn handle(req: hyper::Request<Incoming>, state: Arc<Mutex<State>>) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let content_type = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let accept = req
        .headers()
        .get("accept")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let authorized = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("Bearer "));
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => Bytes::new(),
    };

    if path == "/fake/requests" {
        return control(&state, &method);
    }
    if path == "/fake/namespaces" || path == "/fake/latency" {
        return crate::bench::control(&state, &method, &path, &query);
    }
    let Some(target) = parse_path(&path) else {
        return Status::new(404, "the server could not find the requested resource")
            .into_response();
    };
    let mut entry = Request {
        verb: verb_of(&method, &target, &query),
        group: target.group.clone(),
        resource: target.resource.clone(),
        namespace: target.namespace.clone(),
        name: target.name.clone(),
        status: 0,
        patch_type: if method == Method::PATCH {
            content_type.clone()
        } else {
            String::new()
        },
        query: query.clone(),
        accept: accept.clone(),
        answered_kind: String::new(),
        at: std::time::Instant::now(),
    };

    // Faults are decided under the lock, then slept outside it.
    let (delay, injected, hang) = {
        let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
        let mut delay = None;
        let mut injected = None;
        let mut hang = false;
        let mut removals = Vec::new();
        let mut puts = Vec::new();
        for fault in st.faults.iter_mut() {
            if !fault.matches(&entry) || fault.times == Some(0) {
                continue;
            }
            if fault.skip > 0 {
                fault.skip -= 1;
                continue;
            }
            if let Some(n) = fault.times.as_mut() {
                *n -= 1;
            }
            delay = delay.or(fault.delay);
            if let Some(ns) = fault.remove_namespace.clone() {
                removals.push(ns);
            }
            if let Some(put) = fault.put.clone() {
                puts.push(put);
            }
            if fault.hang {
                hang = true;
                break;
            }
            if fault.status != 0 {
                let mut s = Status::new(fault.status, fault.message.clone()).reason(&fault.reason);
                s.extra = fault.retry_after.map(|secs| {
                    Box::new(Extra {
                        retry_after: Some(secs),
                        ..Extra::default()
                    })
                });
                injected = Some(s);
                break;
            }
        }
        for ns in removals {
            st.store.remove_namespace(&ns);
        }
        for (resource, ns, obj) in puts {
            st.store.insert_raw(&resource, &ns, obj);
        }
        if hang {
            // Logged on arrival: it will never be answered.
            st.log.push(entry.clone());
        }
        (delay, injected, hang)
    };
    if hang {
        return std::future::pending().await;
    }
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }

    let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
    entry.at = std::time::Instant::now();
    let resp = if let Some(status) = injected {
        status.into_response()
    } else if !authorized && !st.anonymous {
        Status::new(401, "Unauthorized").into_response()
    } else if st.rules.as_ref().is_some_and(|rules| {
        // Discovery and version are open to every authenticated user (system:discovery).
        entry.resource != "version"
            && entry.resource != "discovery"
            && entry.resource != "selfsubjectaccessreviews"
            && !rbac::allowed(rules, &entry)
    }) {
        forbidden(&entry).into_response()
    } else if entry.verb == "watch" {
        let answer = open_watch(&st, state.clone(), &target, &query, &accept);
        entry.answered_kind = match &answer {
            Ok(_) => "WatchEvent".into(),
            Err(_) => "Status".into(),
        };
        answer.unwrap_or_else(Status::into_response)
    } else {
        match route(
            &mut st,
            &method,
            &target,
            &entry.verb,
            &query,
            &content_type,
            &accept,
            &body,
        ) {
            Ok((code, body)) => {
                entry.answered_kind = body["kind"].as_str().unwrap_or("").to_string();
                json_response(code, &body)
            }
            Err(status) => {
                entry.answered_kind = "Status".into();
                status.into_response()
            }
        }
    };
    entry.status = resp.status().as_u16();
    st.log.push(entry);
    resp
}

/// The control endpoint for scripts: `GET /fake/requests` counts the log, `DELETE` clears it.
fn control(state: &Arc<Mutex<State>>, method: &Method) -> Response {
    let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
    if *method == Method::DELETE {
        st.log.clear();
        return json_response(200, &json!({}));
    }
    let mut counts = serde_json::Map::new();
    for r in &st.log {
        let key = format!("{} {}", r.verb, r.resource);
        let n = counts.get(&key).and_then(Value::as_u64).unwrap_or(0);
        counts.insert(key, json!(n + 1));
    }
    json_response(200, &json!({"total": st.log.len(), "by_verb": counts}))
}

fn forbidden(req: &Request) -> Status {
    let what = if req.name.is_empty() {
        req.resource.clone()
    } else {
        format!("{} \"{}\"", req.resource, req.name)
    };
    let scope = if req.namespace.is_empty() {
        "at the cluster scope".to_string()
    } else {
        format!("in the namespace \"{}\"", req.namespace)
    };
    Status::new(
        403,
        format!(
            "{what} is forbidden: User \"system:serviceaccount:fake:refresher\" cannot {} resource \"{}\" in API group \"{}\" {scope}",
            req.verb, req.resource, req.group
        ),
    )
    .details(&req.resource, &req.name)
}

type Outcome = Result<(u16, Value), Status>;

fn parse_body(body: &Bytes) -> Result<Value, Status> {
    serde_json::from_slice(body).map_err(|e| Status::new(400, format!("invalid JSON body: {e}")))
}

#[allow(clippy::too_many_arguments)]
fn route(
    st: &mut State,
    method: &Method,
    t: &Target,
    verb: &str,
    query: &str,
    content_type: &str,
    accept: &str,
    body: &Bytes,
) -> Outcome {
    if t.resource == "version" {
        return Ok((
            200,
            json!({"major": "1", "minor": "34", "gitVersion": "v1.34.0-fake", "platform": "linux/amd64"}),
        ));
    }
    if t.resource == "selfsubjectaccessreviews" {
        return access_review(st, body);
    }
    if t.resource == "discovery" {
        return discovery(&t.name)
            .map(|d| (200, d))
            .ok_or_else(|| Status::new(404, "the server could not find the requested resource"));
    }
    let r = resource_of(t)?;
    // Collections and objects below a namespace need the namespace to exist.
    if !t.namespace.is_empty() && st.store.namespace_phase(&t.namespace).is_none() && verb != "list"
    {
        return Err(Status::not_found("namespaces", &t.namespace));
    }
    let (ns, res) = (t.namespace.as_str(), t.resource.as_str());
    match verb {
        "list" => {
            let selector = match query_param(query, "labelSelector") {
                Some(s) => parse_selector(&s).map_err(|e| Status::new(400, e))?,
                None => Vec::<Requirement>::new(),
            };
            let scope = match (r.namespaced, ns) {
                (false, _) => Some(""),
                (true, "") => None,
                (true, ns) => Some(ns),
            };
            let name = field_selector_name(query)?;
            let items = st
                .store
                .list(res, scope, &selector)
                .into_iter()
                .filter(|o| name.as_ref().is_none_or(|n| *n == name_of(o)))
                .collect();
            let page = paginate(st, items, query)?;
            Ok((200, list_body(r, page, accept, st.store.revision())))
        }
        "get" => st
            .store
            .get(res, ns, &t.name)
            .map(|o| (200, as_negotiated(o, accept)))
            .ok_or_else(|| Status::not_found(&r.qualified(), &t.name)),
        "create" => {
            let mut obj = parse_body(body)?;
            if !t.name.is_empty() {
                return Err(Status::new(405, "create on a named object is not allowed"));
            }
            check_namespace_field(&obj, ns)?;
            if res != "namespaces" && st.store.namespace_phase(ns).as_deref() == Some("Terminating")
            {
                return Err(Status::new(
                    403,
                    format!("{res} \"{}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated", name_of(&obj)),
                )
                .details(res, &name_of(&obj)));
            }
            normalize(&mut obj, r);
            validate(&obj, r, None)?;
            if obj["metadata"]["resourceVersion"]
                .as_str()
                .is_some_and(|v| !v.is_empty())
            {
                return Err(Status::invalid(
                    &r.qualified_kind(),
                    &name_of(&obj),
                    "metadata.resourceVersion: Invalid value: must not be set on create",
                ));
            }
            let name = name_of(&obj);
            let store_ns = if r.namespaced { ns } else { "" };
            st.store
                .create(res, store_ns, obj)
                .map(|o| (201, o))
                .ok_or_else(|| {
                    Status::new(409, format!("{} \"{name}\" already exists", r.qualified()))
                        .reason("AlreadyExists")
                        .details(res, &name)
                })
        }
        "update" => {
            let mut obj = parse_body(body)?;
            check_namespace_field(&obj, ns)?;
            if name_of(&obj) != t.name {
                return Err(Status::new(
                    400,
                    "the name of the object does not match the name on the URL",
                ));
            }
            let old = st
                .store
                .get(res, ns, &t.name)
                .cloned()
                .ok_or_else(|| Status::not_found(&r.qualified(), &t.name))?;
            let rv = obj["metadata"]["resourceVersion"].as_str().unwrap_or("");
            if rv.is_empty() && !allows_unconditional_update(r) {
                return Err(Status::invalid(
                    &r.qualified_kind(),
                    &t.name,
                    "metadata.resourceVersion: Invalid value: 0x0: must be specified for an update",
                ));
            }
            if !rv.is_empty() && rv != old["metadata"]["resourceVersion"].as_str().unwrap_or("") {
                return Err(Status::conflict(&r.qualified(), &t.name));
            }
            normalize(&mut obj, r);
            validate(&obj, r, Some(&old))?;
            Ok((200, st.store.replace(res, ns, obj)))
        }
        "patch" => {
            let old = st
                .store
                .get(res, ns, &t.name)
                .cloned()
                .ok_or_else(|| Status::not_found(&r.qualified(), &t.name))?;
            let patch = parse_body(body)?;
            let mut obj = old.clone();
            match content_type.split(';').next().unwrap_or("").trim() {
                "application/json-patch+json" => {
                    let p: json_patch::Patch = serde_json::from_value(patch)
                        .map_err(|e| Status::new(400, format!("invalid JSON patch: {e}")))?;
                    json_patch::patch(&mut obj, &p).map_err(|e| Status::new(422, e.to_string()))?;
                }
                "application/merge-patch+json" => {
                    json_patch::merge(&mut obj, &patch);
                }
                "application/strategic-merge-patch+json" => {
                    crate::patch::strategic_merge(&mut obj, &patch);
                }
                other => {
                    return Err(Status::new(
                        415,
                        format!(
                            "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json (got {other})"
                        ),
                    ));
                }
            }
            let rv = obj["metadata"]["resourceVersion"].as_str().unwrap_or("");
            if rv != old["metadata"]["resourceVersion"].as_str().unwrap_or("") {
                return Err(Status::conflict(&r.qualified(), &t.name));
            }
            if name_of(&obj) != t.name {
                return Err(Status::invalid(
                    &r.qualified_kind(),
                    &t.name,
                    "metadata.name: Invalid value: field is immutable",
                ));
            }
            normalize(&mut obj, r);
            validate(&obj, r, Some(&old))?;
            Ok((200, st.store.replace(res, ns, obj)))
        }
        "delete" => {
            let old = st
                .store
                .get(res, ns, &t.name)
                .cloned()
                .ok_or_else(|| Status::not_found(&r.qualified(), &t.name))?;
            if !body.is_empty() {
                let opts = parse_body(body)?;
                let pre = &opts["preconditions"];
                for field in ["uid", "resourceVersion"] {
                    if let Some(want) = pre[field].as_str() {
                        let have = old["metadata"][field].as_str().unwrap_or("");
                        if want != have {
                            return Err(Status::new(
                                409,
                                format!("Precondition failed: {field} in precondition: {want}, {field} in object meta: {have}"),
                            )
                            .details(res, &t.name));
                        }
                    }
                }
            }
            if res == "namespaces" {
                // As the API server and the namespace controller do it: Terminating first (the
                // answer, and a MODIFIED event), then the contents and the namespace go, at
                // once here.
                st.store.terminate_namespace(&t.name);
                let terminating = st.store.get(res, "", &t.name).cloned().unwrap_or(old);
                st.store.remove_namespace(&t.name);
                return Ok((200, terminating));
            }
            st.store.remove(res, ns, &t.name);
            Ok((200, old))
        }
        _ => Err(Status::new(
            405,
            format!("method {method} is not allowed here"),
        )),
    }
}

/// One page of a list: the items, and the list metadata that goes with them.
struct Page {
    items: Vec<Value>,
    continue_token: Option<String>,
    remaining: usize,
}

/// `limit` and `continue` as the API server serves them: items in key order, at most `limit`
/// per page, a continue token (base64 of `{"v","rv","start"}`, as the apiserver encodes it)
/// while more remain, with `remainingItemCount`. A token that does not decode answers 400; one
/// from before a compaction answers 410 Expired.
fn paginate(st: &State, items: Vec<Value>, query: &str) -> Result<Page, Status> {
    let limit = query_param(query, "limit")
        .and_then(|l| l.parse::<usize>().ok())
        .filter(|l| *l > 0);
    let (rv, start) = match query_param(query, "continue").filter(|c| !c.is_empty()) {
        None => (st.store.revision().parse::<u64>().unwrap_or(0), None),
        Some(token) => {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(&token)
                .ok()
                .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                .filter(|v| v["v"] == "meta.k8s.io/v1");
            let Some(v) = decoded else {
                return Err(Status::new(
                    400,
                    "invalid continue token: continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)",
                ));
            };
            // rv -1 is the apiserver's "continue at the latest revision" after a 410.
            let latest = st.store.revision().parse::<u64>().unwrap_or(0);
            let rv = match v["rv"].as_i64() {
                Some(-1) => latest,
                Some(rv) if rv > 0 => rv as u64,
                _ => 0,
            };
            if v["rv"].as_i64() != Some(-1) && rv <= st.store.compacted() {
                let mut expired = Status::new(
                    410,
                    "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.",
                );
                // Like the apiserver: a token at "latest" (rv -1) from the same key, for clients
                // that accept an inconsistent list.
                let next = json!({"v": "meta.k8s.io/v1", "rv": -1, "start": v["start"]});
                expired.extra = Some(Box::new(Extra {
                    continue_token: Some(
                        base64::engine::general_purpose::STANDARD.encode(next.to_string()),
                    ),
                    ..Extra::default()
                }));
                return Err(expired);
            }
            let start = v["start"]
                .as_str()
                .unwrap_or("")
                .trim_end_matches('\0')
                .to_string();
            (rv, Some(start))
        }
    };
    // The store's order: (namespace, name), compared as a pair.
    let key = |o: &Value| {
        (
            o["metadata"]["namespace"]
                .as_str()
                .unwrap_or("")
                .to_string(),
            name_of(o),
        )
    };
    let start = start.map(|s| match s.split_once('/') {
        Some((ns, name)) => (ns.to_string(), name.to_string()),
        None => (String::new(), s),
    });
    let rest: Vec<Value> = items
        .into_iter()
        .filter(|o| start.as_ref().is_none_or(|s| &key(o) > s))
        .collect();
    let Some(limit) = limit.filter(|l| *l < rest.len()) else {
        return Ok(Page {
            items: rest,
            continue_token: None,
            remaining: 0,
        });
    };
    let mut items = rest;
    let remaining = items.split_off(limit);
    let (ns, name) = items.last().map(key).unwrap_or_default();
    let token = json!({"v": "meta.k8s.io/v1", "rv": rv, "start": format!("{ns}/{name}\0")});
    Ok(Page {
        items,
        continue_token: Some(base64::engine::general_purpose::STANDARD.encode(token.to_string())),
        remaining: remaining.len(),
    })
}

/// A list response: the full objects, or, when the client asks for
/// `application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1`, their metadata only, as
/// the API server's content negotiation answers.
fn list_body(r: &Resource, page: Page, accept: &str, revision: String) -> Value {
    let mut meta = json!({"resourceVersion": revision});
    if let Some(token) = page.continue_token {
        meta["continue"] = json!(token);
        meta["remainingItemCount"] = json!(page.remaining);
    }
    if wants(accept, "PartialObjectMetadataList") {
        let items: Vec<Value> = page
            .items
            .into_iter()
            .map(|o| json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o["metadata"]}))
            .collect();
        return json!({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1", "metadata": meta, "items": items});
    }
    json!({"kind": format!("{}List", r.kind), "apiVersion": r.api_version(), "metadata": meta, "items": page.items})
}

fn check_namespace_field(obj: &Value, ns: &str) -> Result<(), Status> {
    match obj["metadata"]["namespace"].as_str() {
        Some(have) if !have.is_empty() && have != ns => Err(Status::new(
            400,
            "the namespace of the provided object does not match the namespace sent on the request",
        )),
        _ => Ok(()),
    }
}

/// Defaults the API server applies: kind and apiVersion, the namespace name label, Secret
/// `type`, `stringData` folded into `data`.
fn normalize(obj: &mut Value, r: &Resource) {
    let kind = r.kind;
    obj["kind"] = json!(kind);
    obj["apiVersion"] = json!(r.api_version());
    if kind == "Namespace" {
        // The API server labels every namespace with its name (GA since 1.22).
        let name = name_of(obj);
        if !obj["metadata"]["labels"].is_object() {
            obj["metadata"]["labels"] = json!({});
        }
        obj["metadata"]["labels"]["kubernetes.io/metadata.name"] = json!(name);
    }
    if kind == "Secret" {
        if obj["type"].as_str().is_none() {
            obj["type"] = json!("Opaque");
        }
        if let Some(Value::Object(sd)) = obj.as_object_mut().and_then(|o| o.remove("stringData")) {
            if !obj["data"].is_object() {
                obj["data"] = json!({});
            }
            for (k, v) in sd {
                let enc = base64::engine::general_purpose::STANDARD
                    .encode(v.as_str().unwrap_or("").as_bytes());
                obj["data"][k] = json!(enc);
            }
        }
    }
}

fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// Validation the API server performs on create and update.
fn validate(obj: &Value, r: &Resource, old: Option<&Value>) -> Result<(), Status> {
    let kind = &r.qualified_kind();
    let name = name_of(obj);
    if !is_dns_subdomain(&name) {
        return Err(Status::invalid(
            kind,
            &name,
            &format!(
                "metadata.name: Invalid value: \"{name}\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.'"
            ),
        ));
    }
    if let Some(old) = old {
        let old_uid = old["metadata"]["uid"].as_str().unwrap_or("");
        if let Some(uid) = obj["metadata"]["uid"].as_str()
            && !uid.is_empty()
            && uid != old_uid
        {
            return Err(Status::conflict(&r.qualified(), &name));
        }
    }
    if r.kind == "Lease" {
        return validate_lease(obj, kind, &name);
    }
    if r.kind == "Job"
        && let Some(old) = old
        && old["spec"]["template"] != obj["spec"]["template"]
    {
        // The API server prints the Go struct; the JSON says the same.
        return Err(Status::invalid(
            kind,
            &name,
            &format!(
                "spec.template: Invalid value: {}: field is immutable",
                obj["spec"]["template"]
            ),
        ));
    }
    if r.kind != "Secret" {
        return Ok(());
    }
    let data = &obj["data"];
    if !(data.is_null() || data.is_object()) {
        return Err(Status::invalid(
            kind,
            &name,
            "data: Invalid value: must be an object",
        ));
    }
    let mut total = 0;
    if let Some(map) = data.as_object() {
        for (k, v) in map {
            let decoded = v
                .as_str()
                .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
                .ok_or_else(|| Status::new(400, format!("illegal base64 data in data[{k}]")))?;
            total += decoded.len();
        }
    }
    if total > 1024 * 1024 {
        return Err(Status::invalid(
            kind,
            &name,
            "data: Too long: must have at most 1048576 bytes",
        ));
    }
    let ty = obj["type"].as_str().unwrap_or("Opaque");
    if ty == "kubernetes.io/dockerconfigjson" {
        let raw = data[".dockerconfigjson"].as_str().ok_or_else(|| {
            Status::invalid(kind, &name, "data[.dockerconfigjson]: Required value")
        })?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(raw)
            .unwrap_or_default();
        if serde_json::from_slice::<Value>(&bytes)
            .map(|v| !v.is_object())
            .unwrap_or(true)
        {
            return Err(Status::invalid(
                kind,
                &name,
                "data[.dockerconfigjson]: Invalid value: \"<secret contents redacted>\": invalid character",
            ));
        }
    }
    if let Some(old) = old {
        let old_ty = old["type"].as_str().unwrap_or("Opaque");
        if old_ty != ty {
            return Err(Status::invalid(
                kind,
                &name,
                &format!("type: Invalid value: \"{ty}\": field is immutable"),
            ));
        }
        if old["immutable"].as_bool() == Some(true)
            && (old["data"] != obj["data"] || obj["immutable"].as_bool() != Some(true))
        {
            return Err(Status::invalid(
                kind,
                &name,
                "data: Forbidden: field is immutable when `immutable` is set",
            ));
        }
    }
    Ok(())
}

/// Discovery documents, so that kubectl (the shell baseline of the benchmarks, and the
/// manifest tests) can map kinds to REST paths. `which` is the path: `api`, `apis`, `api/v1`,
/// `apis/GROUP`, `apis/GROUP/VERSION`.
fn discovery(which: &str) -> Option<Value> {
    let group_doc = |group: &str, version: &str| {
        let gv = json!({"groupVersion": format!("{group}/{version}"), "version": version});
        json!({"name": group, "versions": [gv], "preferredVersion": gv})
    };
    match which.split('/').collect::<Vec<_>>().as_slice() {
        ["api"] => Some(
            json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]}),
        ),
        ["apis"] => {
            let groups: Vec<Value> = resources::groups()
                .into_iter()
                .map(|(g, v)| group_doc(g, v))
                .collect();
            Some(json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}))
        }
        ["apis", group] => resources::groups()
            .into_iter()
            .find(|(g, _)| g == group)
            .map(|(g, v)| {
                let mut doc = group_doc(g, v);
                doc["kind"] = json!("APIGroup");
                doc["apiVersion"] = json!("v1");
                doc
            }),
        ["api", "v1"] => Some(resource_list("", "v1")),
        ["apis", group, version] => RESOURCES
            .iter()
            .any(|r| r.group == *group && r.version == *version)
            .then(|| resource_list(group, version)),
        _ => None,
    }
}

fn resource_list(group: &str, version: &str) -> Value {
    let verbs = json!([
        "create",
        "delete",
        "deletecollection",
        "get",
        "list",
        "patch",
        "update",
        "watch"
    ]);
    let resources: Vec<Value> = RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .map(|r| {
            json!({"name": r.plural, "singularName": r.kind.to_lowercase(), "namespaced": r.namespaced,
                   "kind": r.kind, "verbs": verbs, "shortNames": r.short_names})
        })
        .collect();
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources})
}

/// The resource a path names, or the API server's 404 for one it does not serve.
fn resource_of(t: &Target) -> Result<&'static Resource, Status> {
    resources::find(&t.group, &t.version, &t.resource)
        .filter(|r| r.namespaced || t.namespace.is_empty())
        .ok_or_else(|| Status::new(404, "the server could not find the requested resource"))
}

/// Whether an update without `metadata.resourceVersion` is allowed: not for Leases, whose
/// strategy refuses unconditional updates so that two holders cannot both win.
fn allows_unconditional_update(r: &Resource) -> bool {
    r.kind != "Lease"
}

/// The Lease validation that matters to leader election.
fn validate_lease(obj: &Value, kind: &str, name: &str) -> Result<(), Status> {
    let spec = &obj["spec"];
    if let Some(d) = spec.get("leaseDurationSeconds").filter(|d| !d.is_null())
        && d.as_i64().is_none_or(|d| d <= 0)
    {
        return Err(Status::invalid(
            kind,
            name,
            &format!("spec.leaseDurationSeconds: Invalid value: {d}: must be greater than 0"),
        ));
    }
    if let Some(h) = spec.get("holderIdentity").filter(|h| !h.is_null())
        && !h.is_string()
    {
        return Err(Status::new(
            400,
            "json: cannot unmarshal into Go struct field LeaseSpec.spec.holderIdentity of type string",
        ));
    }
    Ok(())
}

/// `fieldSelector=metadata.name=NAME` (what kube's `watch_object` sends); other field
/// selectors are refused, as the API server refuses fields a resource does not index.
fn field_selector_name(query: &str) -> Result<Option<String>, Status> {
    let Some(sel) = query_param(query, "fieldSelector").filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    let term = sel
        .strip_prefix("metadata.name=")
        .or_else(|| sel.strip_prefix("metadata.name=="));
    match term {
        Some(name) if !name.contains(',') => Ok(Some(name.to_string())),
        _ => Err(Status::new(
            400,
            format!("field label not supported by this fake: {sel}"),
        )),
    }
}

/// Whether the client asked for metadata only (`as=KIND` with `g=meta.k8s.io;v=v1`).
fn wants(accept: &str, as_kind: &str) -> bool {
    accept.split(',').any(|a| {
        let params: Vec<&str> = a.split(';').map(str::trim).collect();
        params.contains(&format!("as={as_kind}").as_str())
            && params.contains(&"g=meta.k8s.io")
            && params.contains(&"v=v1")
    })
}

/// One object, or its PartialObjectMetadata when the client asks for that.
fn as_negotiated(obj: &Value, accept: &str) -> Value {
    if wants(accept, "PartialObjectMetadata") {
        json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj["metadata"]})
    } else {
        obj.clone()
    }
}

/// Opens a watch on a collection, or answers why not.
fn open_watch(
    st: &State,
    shared: Arc<Mutex<State>>,
    t: &Target,
    query: &str,
    accept: &str,
) -> Result<Response, Status> {
    let r = resource_of(t)?;
    let selector = match query_param(query, "labelSelector") {
        Some(s) => parse_selector(&s).map_err(|e| Status::new(400, e))?,
        None => Vec::new(),
    };
    let name = field_selector_name(query)?;
    let flag = |k: &str| query_param(query, k).is_some_and(|v| v == "true" || v == "1");
    let send_initial = query_param(query, "sendInitialEvents");
    let rv = query_param(query, "resourceVersion").unwrap_or_default();
    let start = match (rv.as_str(), send_initial.as_deref()) {
        (_, Some("true")) => Start::Now,
        // Explicitly no initial events from "now": only what changes from here on.
        ("" | "0", Some("false")) => Start::After(st.store.revision_number()),
        ("" | "0", _) => Start::Now,
        (rv, _) => Start::After(rv.parse().map_err(|_| {
            Status::new(400, format!("invalid resource version: {rv}")).reason("BadRequest")
        })?),
    };
    if send_initial.as_deref() == Some("true") && !flag("allowWatchBookmarks") {
        return Err(Status::invalid(
            "ListOptions.meta.k8s.io",
            "",
            "allowWatchBookmarks: Required value: allowWatchBookmarks must be set to true when sendInitialEvents is set",
        ));
    }
    let timeout = query_param(query, "timeoutSeconds")
        .and_then(|s| s.parse::<u64>().ok())
        .map(std::time::Duration::from_secs)
        .unwrap_or(watch::DEFAULT_TIMEOUT);
    let request = Watch {
        resource: r,
        namespace: (!t.namespace.is_empty()).then(|| t.namespace.clone()),
        selector,
        name,
        metadata_only: wants(accept, "PartialObjectMetadata"),
        start,
        initial_events_end: send_initial.as_deref() == Some("true"),
        bookmarks: flag("allowWatchBookmarks"),
        timeout,
        bookmark_interval: st.bookmark_interval,
    };
    match watch::open(st, shared, request) {
        Ok(resp) => Ok(resp),
        Err(expired) => match st.expired_watch {
            ExpiredWatch::ErrorEvent => Ok(watch::expired_stream(expired)),
            ExpiredWatch::Gone => Ok(json_response(410, &expired.status())),
        },
    }
}

fn access_review(st: &mut State, body: &Bytes) -> Outcome {
    let mut review = parse_body(body)?;
    let attrs = &review["spec"]["resourceAttributes"];
    let s = |k: &str| attrs[k].as_str().unwrap_or("").to_string();
    let probe = Request {
        verb: s("verb"),
        group: s("group"),
        resource: s("resource"),
        namespace: s("namespace"),
        name: s("name"),
        status: 0,
        patch_type: String::new(),
        query: String::new(),
        accept: String::new(),
        answered_kind: String::new(),
        at: std::time::Instant::now(),
    };
    let allowed = st
        .rules
        .as_ref()
        .is_none_or(|rules| rbac::allowed(rules, &probe));
    review["status"] = json!({"allowed": allowed});
    review["kind"] = json!("SelfSubjectAccessReview");
    review["apiVersion"] = json!("authorization.k8s.io/v1");
    Ok((201, review))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selector_terms() {
        let reqs = parse_selector("team=a,env!=prod,tier in (web,api),!legacy,owner").unwrap();
        assert_eq!(reqs.len(), 5);
        assert_eq!(
            reqs[2],
            Requirement::In("tier".into(), vec!["web".into(), "api".into()])
        );
    }

    #[test]
    fn lists_page_with_continue_and_answer_metadata_only_when_asked() {
        let mut st = State::default();
        for i in 0..5 {
            st.store
                .insert_raw("namespaces", "", json!({"metadata": {"name": format!("ns-{i}")}, "spec": {"finalizers": ["kubernetes"]}}));
        }
        let all = |st: &State| st.store.list("namespaces", Some(""), &[]);
        const META: &str = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1";
        let page = paginate(&st, all(&st), "limit=2").unwrap();
        let body = list_body(&RESOURCES[0], page, META, st.store.revision());
        assert_eq!(body["kind"], "PartialObjectMetadataList");
        assert_eq!(body["apiVersion"], "meta.k8s.io/v1");
        assert_eq!(body["metadata"]["remainingItemCount"], 3);
        assert_eq!(body["items"][0]["kind"], "PartialObjectMetadata");
        assert_eq!(body["items"][1]["metadata"]["name"], "ns-1");
        assert!(body["items"][0].get("spec").is_none(), "metadata only");
        let token = body["metadata"]["continue"].as_str().unwrap().to_string();
        let query = format!("limit=2&continue={token}");
        let page = paginate(&st, all(&st), &query).unwrap();
        let body = list_body(&RESOURCES[0], page, "application/json", st.store.revision());
        assert_eq!(body["kind"], "NamespaceList");
        assert_eq!(body["items"][0]["metadata"]["name"], "ns-2");
        assert_eq!(body["items"][0]["spec"]["finalizers"][0], "kubernetes");
        let last = body["metadata"]["continue"].as_str().unwrap().to_string();
        let page = paginate(&st, all(&st), &format!("limit=2&continue={last}")).unwrap();
        assert_eq!(page.items.len(), 1);
        assert!(page.continue_token.is_none());
        // A token that does not decode is a bad request; one from before a compaction expired.
        let bad = paginate(&st, all(&st), "limit=2&continue=bm90LWEtdG9rZW4=")
            .err()
            .unwrap();
        assert_eq!((bad.code, bad.reason.as_str()), (400, "BadRequest"));
        st.store.compact();
        let gone = paginate(&st, all(&st), &query).err().unwrap();
        assert_eq!((gone.code, gone.reason.as_str()), (410, "Expired"));
        let onward = gone
            .extra
            .and_then(|e| e.continue_token)
            .expect("a 410 offers an inconsistent continuation");
        let rest = paginate(&st, all(&st), &format!("limit=2&continue={onward}")).unwrap();
        assert_eq!(
            rest.items[0]["metadata"]["name"], "ns-2",
            "from where the token was"
        );
        assert!(
            paginate(&st, all(&st), "limit=2").is_ok(),
            "a new list still works"
        );
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%3Db%2Cc"), "a=b,c");
    }
}

//! Control endpoints for benchmarks against the `fake-kube` binary (not part of any real API):
//!
//! - `POST /fake/namespaces?count=N&prefix=P[&labels=k=v,k2=v2]` creates namespaces `P0` …
//!   `P{N-1}` at once (one write each, as many controllers creating them together would), with
//!   the labels given; answers `{"created": N, "resourceVersion": RV}`.
//! - `DELETE /fake/namespaces?prefix=P` deletes every namespace whose name starts with `P` as
//!   `kubectl delete namespace` does (Terminating, then gone with its contents); answers
//!   `{"deleted": N}`.
//! - `GET /fake/latency?prefix=P&secret=NAME` answers, for the namespaces starting with `P`,
//!   how long after each namespace the Secret `NAME` appeared in it: `{"namespaces": N,
//!   "with_secret": M, "missing": [first few names], "ms": {"p50", "p95", "max"}}`.

use std::sync::{Arc, Mutex};

use hyper::Method;
use serde_json::{Value, json};

use crate::State;
use crate::http::{self, Response};
use crate::server::query_param;

fn answer(code: u16, body: &Value) -> Response {
    http::response(
        code,
        &[("content-type", "application/json".into())],
        body.to_string(),
    )
}

pub(crate) fn control(
    state: &Arc<Mutex<State>>,
    method: &Method,
    path: &str,
    query: &str,
) -> Response {
    let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
    let prefix = query_param(query, "prefix").unwrap_or_default();
    match (method.as_str(), path) {
        ("POST", "/fake/namespaces") => {
            let Some(count) = query_param(query, "count").and_then(|c| c.parse::<usize>().ok())
            else {
                return answer(400, &json!({"error": "count=N is required"}));
            };
            let raw = query_param(query, "labels").unwrap_or_default();
            let labels: Vec<(&str, &str)> =
                raw.split(',').filter_map(|kv| kv.split_once('=')).collect();
            for i in 0..count {
                st.store.add_namespace(&format!("{prefix}{i}"), &labels);
            }
            answer(
                201,
                &json!({"created": count, "resourceVersion": st.store.revision()}),
            )
        }
        ("DELETE", "/fake/namespaces") => {
            if prefix.is_empty() {
                return answer(400, &json!({"error": "prefix=P is required"}));
            }
            let doomed: Vec<String> = st
                .store
                .names("namespaces", "")
                .into_iter()
                .filter(|n| n.starts_with(&prefix))
                .collect();
            for ns in &doomed {
                st.store.terminate_namespace(ns);
                st.store.remove_namespace(ns);
            }
            answer(200, &json!({"deleted": doomed.len()}))
        }
        ("GET", "/fake/latency") => {
            let secret = query_param(query, "secret").unwrap_or_default();
            let mut ms = Vec::new();
            let mut missing = Vec::new();
            let namespaces: Vec<String> = st
                .store
                .names("namespaces", "")
                .into_iter()
                .filter(|n| n.starts_with(&prefix))
                .collect();
            for ns in &namespaces {
                let born = st.store.born("namespaces", "", ns);
                match (born, st.store.born("secrets", ns, &secret)) {
                    (Some(a), Some(b)) => {
                        ms.push(b.saturating_duration_since(a).as_secs_f64() * 1000.0)
                    }
                    _ => missing.push(ns.clone()),
                }
            }
            ms.sort_by(f64::total_cmp);
            let pick = |q: f64| -> Value {
                if ms.is_empty() {
                    return Value::Null;
                }
                let i = ((ms.len() as f64 - 1.0) * q).round() as usize;
                json!((ms[i] * 10.0).round() / 10.0)
            };
            missing.truncate(10);
            answer(
                200,
                &json!({"namespaces": namespaces.len(), "with_secret": ms.len(), "missing": missing,
                        "ms": {"p50": pick(0.5), "p95": pick(0.95), "max": pick(1.0)}}),
            )
        }
        _ => answer(
            405,
            &json!({"error": format!("{method} {path} is not a control endpoint")}),
        ),
    }
}

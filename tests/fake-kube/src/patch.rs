//! Strategic merge patch, as far as `kubectl apply` needs it for built-in objects.
//!
//! The real one reads each field's patch strategy from the Go types. `kubectl apply` tells us
//! the strategy in the patch itself: for every list it merges by key it sends
//! `$setElementOrder/FIELD: [{KEY: value}, …]`, naming the merge key. So a list with that
//! directive is merged element by element on that key (`$patch: delete` removes one), in the
//! order given; every other list is replaced, as the atomic lists of built-in types are; maps
//! merge as in a JSON merge patch (null deletes); `$patch: replace` replaces a map;
//! `$retainKeys` keeps only the keys named; other `$` directives are dropped. Where it differs
//! from the real thing (`$deleteFromPrimitiveList`, lists of primitives with a merge strategy
//! such as finalizers) `kubectl apply` of the manifests here never goes.

use serde_json::{Map, Value};

/// Applies `patch` to `target` in place.
pub(crate) fn strategic_merge(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if patch.get("$patch").and_then(Value::as_str) == Some("replace") {
        let mut replaced = patch.clone();
        replaced.remove("$patch");
        *target = Value::Object(strip(&replaced));
        return;
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Some(obj) = target.as_object_mut() else {
        return;
    };
    for (key, value) in patch {
        if key.starts_with('$') {
            continue;
        }
        if value.is_null() {
            obj.remove(key);
            continue;
        }
        let order = patch.get(&format!("$setElementOrder/{key}"));
        match (value, order.and_then(merge_key)) {
            (Value::Array(items), Some(mkey)) => {
                let current = obj
                    .get(key)
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                obj.insert(
                    key.clone(),
                    Value::Array(merge_list(current, items, &mkey, order)),
                );
            }
            (Value::Object(_), _) => {
                strategic_merge(obj.entry(key.clone()).or_insert(Value::Null), value);
            }
            _ => {
                obj.insert(key.clone(), strip_value(value));
            }
        }
    }
    if let Some(Value::Array(keep)) = patch.get("$retainKeys") {
        let keep: Vec<&str> = keep.iter().filter_map(Value::as_str).collect();
        obj.retain(|k, _| keep.contains(&k.as_str()));
    }
}

/// The merge key a `$setElementOrder` list names: the one key of its entries.
fn merge_key(order: &Value) -> Option<String> {
    let first = order.as_array()?.first()?.as_object()?;
    (first.len() == 1)
        .then(|| first.keys().next().cloned())
        .flatten()
}

fn merge_list(
    current: Vec<Value>,
    patch: &[Value],
    key: &str,
    order: Option<&Value>,
) -> Vec<Value> {
    let id = |v: &Value| v.get(key).cloned();
    let mut out = current;
    for item in patch {
        let Some(want) = id(item) else { continue };
        let pos = out.iter().position(|o| id(o).as_ref() == Some(&want));
        if item.get("$patch").and_then(Value::as_str) == Some("delete") {
            if let Some(p) = pos {
                out.remove(p);
            }
            continue;
        }
        match pos {
            Some(p) => strategic_merge(&mut out[p], item),
            None => out.push(strip_value(item)),
        }
    }
    // The patch's order first, as the API server sorts by $setElementOrder; the rest after.
    if let Some(Value::Array(order)) = order {
        let mut sorted = Vec::with_capacity(out.len());
        for entry in order {
            if let Some(p) = out.iter().position(|o| id(o) == entry.get(key).cloned()) {
                sorted.push(out.remove(p));
            }
        }
        sorted.extend(out);
        return sorted;
    }
    out
}

fn strip(map: &Map<String, Value>) -> Map<String, Value> {
    map.iter()
        .filter(|(k, _)| !k.starts_with('$'))
        .map(|(k, v)| (k.clone(), strip_value(v)))
        .collect()
}

fn strip_value(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(strip(m)),
        Value::Array(a) => Value::Array(a.iter().map(strip_value).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lists_with_an_element_order_merge_by_key_and_others_are_replaced() {
        let mut live = json!({
            "metadata": {"labels": {"a": "1", "b": "2"}},
            "spec": {"containers": [
                {"name": "main", "image": "x:1", "envFrom": [{"configMapRef": {"name": "old"}}]},
                {"name": "side", "image": "y"}
            ], "args": ["a", "b"]}
        });
        let patch = json!({
            "metadata": {"labels": {"b": null}},
            "spec": {
                "$setElementOrder/containers": [{"name": "side"}, {"name": "main"}],
                "containers": [{"name": "main", "envFrom": [{"configMapRef": {"name": "new"}}]}],
                "args": ["c"]
            }
        });
        strategic_merge(&mut live, &patch);
        assert_eq!(live["metadata"]["labels"], json!({"a": "1"}));
        let containers = live["spec"]["containers"].as_array().unwrap();
        assert_eq!(containers[0]["name"], "side", "in the patch's order");
        assert_eq!(
            containers[1]["image"], "x:1",
            "fields the patch does not name stay"
        );
        assert_eq!(
            containers[1]["envFrom"],
            json!([{"configMapRef": {"name": "new"}}]),
            "a list without an element order is replaced"
        );
        assert_eq!(live["spec"]["args"], json!(["c"]));

        let delete = json!({"spec": {"$setElementOrder/containers": [{"name": "main"}],
            "containers": [{"name": "side", "$patch": "delete"}]}});
        strategic_merge(&mut live, &delete);
        assert_eq!(live["spec"]["containers"].as_array().unwrap().len(), 1);
        assert!(!live.to_string().contains('$'), "no directive is stored");
    }
}

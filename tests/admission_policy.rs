//! The admission policy that manifests/ ships, evaluated as the API server would: its match
//! rules, matchConditions, variables and validations are taken from what `kubectl kustomize`
//! renders for each overlay (never copied here) and run with the `cel` crate. The requests it
//! must admit are the ones the binary really makes, captured from the fake API server through
//! every path that writes a Secret; the ones it must refuse are the token-minting attack and its
//! variants; and it must leave every other user alone.

mod common;

use cel::{Context, Program, Value as Cel};
use common::*;
use serde_json::{Value, json};

const OVERLAYS: &[&str] = &[
    "cluster",
    "namespaced",
    "irsa",
    "static-keys",
    "roles-anywhere",
];

const TOKEN_TYPE: &str = "kubernetes.io/service-account-token";
const SA_NAME_ANNOTATION: &str = "kubernetes.io/service-account.name";

/// What the ValidatingAdmissionPolicy plugin decides for one request.
#[derive(Debug, PartialEq)]
enum Decision {
    /// The policy does not apply (match rules or matchConditions).
    NotApplicable,
    Allowed,
    /// Refused, with the message the API server would return.
    Denied(String),
}

/// One admission request, with the fields the policy's expressions may read.
struct Request<'a> {
    operation: &'a str,
    resource: &'a str,
    username: &'a str,
    object: &'a Value,
    old_object: Option<&'a Value>,
}

fn only<'a>(objects: &'a [Value], kind: &str) -> &'a Value {
    let found: Vec<&Value> = objects.iter().filter(|o| o["kind"] == kind).collect();
    assert_eq!(found.len(), 1, "expected exactly one {kind}");
    found[0]
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn lists(list: &Value, want: &str) -> bool {
    strings(list).iter().any(|s| *s == want || *s == "*")
}

/// Compiles and runs one rendered expression; an expression outside what the evaluator
/// understands fails the test rather than passing silently.
fn eval(expression: &str, ctx: &Context) -> Result<Cel, String> {
    let program = Program::compile(expression)
        .unwrap_or_else(|e| panic!("cannot compile the rendered expression {expression:?}: {e:?}"));
    program.execute(ctx).map_err(|e| format!("{e:?}"))
}

fn to_json(value: Cel) -> Value {
    match value {
        Cel::String(s) => Value::String(s.to_string()),
        Cel::Bool(b) => Value::Bool(b),
        Cel::Int(i) => json!(i),
        other => panic!("a variable of unexpected type: {other:?}"),
    }
}

/// The rendered policy and binding's decision for `req`, as the API server makes it.
fn admit(objects: &[Value], req: &Request) -> Decision {
    let policy = only(objects, "ValidatingAdmissionPolicy");
    let binding = only(objects, "ValidatingAdmissionPolicyBinding");
    assert_eq!(binding["spec"]["policyName"], policy["metadata"]["name"]);
    assert_eq!(binding["spec"]["validationActions"], json!(["Deny"]));
    assert!(
        binding["spec"]["matchResources"].is_null(),
        "the binding applies in every namespace"
    );
    let spec = &policy["spec"];
    assert_eq!(spec["failurePolicy"], "Fail");
    // A parameter object that goes missing would, with Deny, block every Secret write in the
    // cluster: the policy must not depend on one.
    assert!(spec["paramKind"].is_null() && binding["spec"]["paramRef"].is_null());

    let matched = spec["matchConstraints"]["resourceRules"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| {
            lists(&r["apiGroups"], "")
                && lists(&r["apiVersions"], "v1")
                && lists(&r["resources"], req.resource)
                && lists(&r["operations"], req.operation)
        });
    if !matched {
        return Decision::NotApplicable;
    }

    let mut ctx = Context::default();
    ctx.add_variable("object", req.object.clone()).unwrap();
    ctx.add_variable("oldObject", req.old_object.cloned().unwrap_or(Value::Null))
        .unwrap();
    ctx.add_variable(
        "request",
        json!({
            "operation": req.operation,
            "userInfo": {"username": req.username},
            "name": req.object["metadata"]["name"],
            "namespace": req.object["metadata"]["namespace"],
            "resource": {"group": "", "version": "v1", "resource": req.resource},
            "dryRun": false,
        }),
    )
    .unwrap();

    let conditions = spec["matchConditions"].as_array().unwrap();
    assert!(
        !conditions.is_empty(),
        "the policy must be limited to a user"
    );
    for condition in conditions {
        match eval(condition["expression"].as_str().unwrap(), &ctx) {
            Ok(Cel::Bool(true)) => {}
            Ok(Cel::Bool(false)) => return Decision::NotApplicable,
            // failurePolicy: Fail
            other => return Decision::Denied(format!("match condition failed: {other:?}")),
        }
    }

    let mut variables = serde_json::Map::new();
    for variable in spec["variables"].as_array().into_iter().flatten() {
        ctx.add_variable("variables", Value::Object(variables.clone()))
            .unwrap();
        let value = eval(variable["expression"].as_str().unwrap(), &ctx)
            .unwrap_or_else(|e| panic!("variable {}: {e}", variable["name"]));
        variables.insert(
            variable["name"].as_str().unwrap().to_string(),
            to_json(value),
        );
    }
    ctx.add_variable("variables", Value::Object(variables))
        .unwrap();

    let validations = spec["validations"].as_array().unwrap();
    assert!(!validations.is_empty());
    for validation in validations {
        match eval(validation["expression"].as_str().unwrap(), &ctx) {
            Ok(Cel::Bool(true)) => {}
            Ok(Cel::Bool(false)) => {
                let message = match validation["messageExpression"].as_str() {
                    Some(e) => match eval(e, &ctx) {
                        Ok(Cel::String(s)) => s.to_string(),
                        other => panic!("messageExpression {e:?} gave {other:?}"),
                    },
                    None => validation["message"].as_str().unwrap().to_string(),
                };
                return Decision::Denied(message);
            }
            other => return Decision::Denied(format!("validation failed: {other:?}")),
        }
    }
    Decision::Allowed
}

/// The refresher's own identity, from the rendered ServiceAccount, checked against the pods.
fn refresher_username(objects: &[Value]) -> String {
    let sa = only(objects, "ServiceAccount");
    let (ns, name) = (
        sa["metadata"]["namespace"].as_str().unwrap(),
        sa["metadata"]["name"].as_str().unwrap(),
    );
    let pod_sa = |o: &Value| -> Value {
        let job = if o["kind"] == "CronJob" {
            &o["spec"]["jobTemplate"]
        } else {
            o
        };
        job["spec"]["template"]["spec"]["serviceAccountName"].clone()
    };
    for kind in ["CronJob", "Job"] {
        let o = only(objects, kind);
        assert_eq!(pod_sa(o), json!(name), "{kind} runs as the ServiceAccount");
        assert_eq!(o["metadata"]["namespace"], json!(ns));
    }
    format!("system:serviceaccount:{ns}:{name}")
}

fn configured_secret_name(objects: &[Value]) -> String {
    objects
        .iter()
        .find(|o| o["kind"] == "ConfigMap")
        .and_then(|cm| cm["data"]["ECR_REFRESHER_SECRET_NAME"].as_str())
        .expect("ECR_REFRESHER_SECRET_NAME in the ConfigMap")
        .to_string()
}

fn secret(ns: &str, name: &str, type_: Option<&str>, annotations: Value) -> Value {
    let mut s = json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name, "namespace": ns, "annotations": annotations},
        "data": {},
    });
    if let Some(t) = type_ {
        s["type"] = json!(t);
    }
    s
}

fn create<'a>(username: &'a str, object: &'a Value) -> Request<'a> {
    Request {
        operation: "CREATE",
        resource: "secrets",
        username,
        object,
        old_object: None,
    }
}

/// The attack and its variants are refused for the refresher's identity, with a message that
/// says why, and left alone for everyone else.
fn assert_refuses_the_attack(objects: &[Value], context: &str) {
    let me = refresher_username(objects);
    let name = configured_secret_name(objects);
    let mint = |ns: &str, secret_name: &str| {
        secret(
            ns,
            secret_name,
            Some(TOKEN_TYPE),
            json!({SA_NAME_ANNOTATION: "clusterrole-aggregation-controller"}),
        )
    };
    let denied = |req: &Request, why: &str| match admit(objects, req) {
        Decision::Denied(message) => {
            assert!(
                message.contains(why) && message.contains("ecr-secret-refresher may only write"),
                "{context}: the message should say why ({why}): {message}"
            );
        }
        other => panic!(
            "{context}: {} of {} must be refused, got {other:?}",
            req.operation, req.object
        ),
    };
    // A token Secret under the configured name (readable back through RBAC) and under another.
    for ns in ["kube-system", "team-a"] {
        let attack = mint(ns, &name);
        denied(&create(&me, &attack), TOKEN_TYPE);
        let other = mint(ns, "innocent");
        denied(&create(&me, &other), TOKEN_TYPE);
    }
    // The same through an update of an existing token Secret (type is immutable, so both are).
    let old = mint("kube-system", &name);
    let mut new = old.clone();
    new["metadata"]["annotations"][SA_NAME_ANNOTATION] = json!("replicaset-controller");
    denied(
        &Request {
            operation: "UPDATE",
            resource: "secrets",
            username: &me,
            object: &new,
            old_object: Some(&old),
        },
        TOKEN_TYPE,
    );
    // Other types, an untyped object, the annotation on the right type, another name.
    let opaque = secret("team-a", &name, Some("Opaque"), json!({}));
    denied(&create(&me, &opaque), "of type Opaque");
    let untyped = secret("team-a", &name, None, json!({}));
    denied(&create(&me, &untyped), "of type Opaque");
    let annotated = secret(
        "team-a",
        &name,
        Some("kubernetes.io/dockerconfigjson"),
        json!({SA_NAME_ANNOTATION: "default"}),
    );
    denied(&create(&me, &annotated), SA_NAME_ANNOTATION);
    let renamed = secret(
        "team-a",
        "other",
        Some("kubernetes.io/dockerconfigjson"),
        json!({}),
    );
    denied(&create(&me, &renamed), "named other");

    // Nobody else is affected, not even a ServiceAccount of the same name elsewhere.
    let (_, rest) = me.split_at("system:serviceaccount:".len());
    let (ns, sa) = rest.split_once(':').unwrap();
    let attack = mint("kube-system", &name);
    for user in [
        "kubernetes-admin".to_string(),
        "system:serviceaccount:kube-system:clusterrole-aggregation-controller".to_string(),
        format!("system:serviceaccount:{ns}:default"),
        format!("system:serviceaccount:other-namespace:{sa}"),
        format!("system:serviceaccount:{ns}:{sa}-other"),
    ] {
        assert_eq!(
            admit(objects, &create(&user, &attack)),
            Decision::NotApplicable,
            "{context}: the policy must leave {user} alone"
        );
    }
    // Only Secrets, only create and update.
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "namespace": "team-a"}});
    let req = Request {
        resource: "configmaps",
        ..create(&me, &cm)
    };
    assert_eq!(admit(objects, &req), Decision::NotApplicable, "{context}");
    let req = Request {
        operation: "DELETE",
        ..create(&me, &attack)
    };
    assert_eq!(admit(objects, &req), Decision::NotApplicable, "{context}");
}

#[test]
fn every_overlay_refuses_token_secrets_to_the_refresher_only() {
    for overlay in OVERLAYS {
        assert_refuses_the_attack(&render(overlay), overlay);
    }
}

/// One write the binary made to a Secret: the operation and the object before and after.
struct Write {
    what: String,
    operation: &'static str,
    old: Option<Value>,
    new: Value,
}

/// Runs the binary through every path that writes a Secret and records each successful write
/// with the object the API server stored, which is the `object` admission saw.
async fn writes_the_refresher_makes() -> Vec<Write> {
    let h = Harness::new(&["team-a"]).await;
    let mut writes = Vec::new();
    let mut step = |what: &str, before: Option<Value>, h: &Harness| {
        let after = h
            .secret("team-a", "ecr")
            .expect("the Secret exists after the run");
        let made: Vec<_> = h
            .kube
            .requests()
            .into_iter()
            .filter(|r| r.resource == "secrets" && r.status < 300)
            .filter(|r| ["create", "update", "patch"].contains(&r.verb.as_str()))
            .collect();
        assert!(!made.is_empty(), "{what}: the run wrote the Secret");
        for r in made {
            let operation = if r.verb == "create" {
                "CREATE"
            } else {
                "UPDATE"
            };
            writes.push(Write {
                what: format!("{what} ({})", r.verb),
                operation,
                old: (operation == "UPDATE").then(|| before.clone().unwrap()),
                new: after.clone(),
            });
        }
        h.kube.clear_requests();
    };
    let run = |args: &'static [&'static str]| {
        let h = &h;
        async move {
            let run = h.run(args).await;
            assert_eq!(run.code, 0, "{args:?}: {}", run.stderr);
            assert_no_secrets(&run.output());
        }
    };

    run(&["--namespaces", "team-a"]).await;
    step("first run creates", None, &h);

    let before = h.secret("team-a", "ecr");
    run(&["--namespaces", "team-a"]).await;
    step("second run patches", before, &h);

    let before = h.secret("team-a", "ecr");
    run(&["--namespaces", "team-a", "--strategy", "recreate"]).await;
    step("recreate strategy", before, &h);

    let mut s = h.secret("team-a", "ecr").unwrap();
    s["metadata"].as_object_mut().unwrap().remove("annotations");
    s["metadata"]["labels"]["team"] = json!("a");
    h.kube.put("secrets", "team-a", s);
    let before = h.secret("team-a", "ecr");
    run(&["--namespaces", "team-a"]).await;
    step(
        "full update of a Secret missing our annotations",
        before,
        &h,
    );

    let mut s = h.secret("team-a", "ecr").unwrap();
    s["type"] = json!("Opaque");
    h.kube.put("secrets", "team-a", s);
    let before = h.secret("team-a", "ecr");
    run(&["--namespaces", "team-a"]).await;
    step("type change: delete and create", before, &h);

    let mut s = h.secret("team-a", "ecr").unwrap();
    s["immutable"] = json!(true);
    h.kube.put("secrets", "team-a", s);
    let before = h.secret("team-a", "ecr");
    run(&["--namespaces", "team-a"]).await;
    step("immutable Secret: delete and create", before, &h);

    h.kube
        .put("secrets", "team-a", foreign_secret("team-a", "ecr"));
    let before = h.secret("team-a", "ecr");
    run(&["--namespaces", "team-a", "--force"]).await;
    step("--force takes over a foreign Secret", before, &h);

    let verbs: Vec<&str> = writes.iter().map(|w| w.operation).collect();
    assert!(verbs.contains(&"CREATE") && verbs.contains(&"UPDATE"));
    writes
}

#[tokio::test(flavor = "multi_thread")]
async fn every_overlay_admits_every_write_the_refresher_makes() {
    let writes = writes_the_refresher_makes().await;
    for overlay in OVERLAYS {
        let objects = render(overlay);
        let me = refresher_username(&objects);
        assert_eq!(configured_secret_name(&objects), "ecr");
        for w in &writes {
            let req = Request {
                operation: w.operation,
                resource: "secrets",
                username: &me,
                object: &w.new,
                old_object: w.old.as_ref(),
            };
            assert_eq!(
                admit(&objects, &req),
                Decision::Allowed,
                "{overlay}: {} must be admitted: {}",
                w.what,
                w.new
            );
        }
    }
}

/// A user's overlay on top of a shipped one, in a directory under target/ (kustomize accepts
/// only relative paths to other kustomizations).
fn render_user_overlay(name: &str, body: &str) -> Vec<Value> {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let up = "../".repeat(
        dir.strip_prefix(env!("CARGO_MANIFEST_DIR"))
            .unwrap()
            .components()
            .count(),
    );
    std::fs::write(dir.join("kustomization.yaml"), body.replace("{up}", &up)).unwrap();
    render_dir(&dir)
}

/// Moving the install to another namespace, renaming its ServiceAccount and its Secret: the
/// policy, the RBAC subjects and resourceNames follow, and the old identity is not trusted.
#[test]
fn policy_follows_the_namespace_service_account_and_secret_name() {
    let moved = render_user_overlay(
        "overlay-moved",
        "apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - {up}manifests/overlays/cluster
namespace: platform
patches:
  - target: {kind: ServiceAccount, name: ecr-secret-refresher}
    patch: |-
      - op: replace
        path: /metadata/name
        value: puller
configMapGenerator:
  - name: ecr-secret-refresher
    namespace: ecr-secret-refresher
    behavior: merge
    literals:
      - ECR_REFRESHER_SECRET_NAME=pull-ecr
transformers:
  - {up}manifests/wiring
",
    );
    let prefixed = render_user_overlay(
        "overlay-prefixed",
        "apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - {up}manifests/overlays/namespaced
namePrefix: team-
transformers:
  - {up}manifests/wiring
",
    );
    for (objects, me, name) in [
        (&moved, "system:serviceaccount:platform:puller", "pull-ecr"),
        (
            &prefixed,
            "system:serviceaccount:ecr-secret-refresher:team-ecr-secret-refresher",
            "ecr",
        ),
    ] {
        assert_eq!(refresher_username(objects), me);
        assert_eq!(configured_secret_name(objects), name);
        // Cluster-scoped objects carry no namespace, whatever the overlay's `namespace:`.
        for kind in [
            "ValidatingAdmissionPolicy",
            "ValidatingAdmissionPolicyBinding",
        ] {
            assert!(
                only(objects, kind)["metadata"]["namespace"].is_null(),
                "{kind}"
            );
        }
        // RBAC: bound to the moved ServiceAccount, limited to the new name.
        let (_, rest) = me.split_at("system:serviceaccount:".len());
        let (ns, sa) = rest.split_once(':').unwrap();
        for binding in objects
            .iter()
            .filter(|o| o["kind"] == "ClusterRoleBinding" || o["kind"] == "RoleBinding")
        {
            assert_eq!(
                binding["subjects"],
                json!([{"kind": "ServiceAccount", "name": sa, "namespace": ns}])
            );
        }
        for role in objects
            .iter()
            .filter(|o| o["kind"] == "ClusterRole" || o["kind"] == "Role")
        {
            assert_eq!(role["rules"][0]["resourceNames"], json!([name]));
        }
        // The policy admits the new identity's Secret, refuses the old name, and no longer
        // applies to the default identity.
        let good = secret(
            "team-a",
            name,
            Some("kubernetes.io/dockerconfigjson"),
            json!({}),
        );
        assert_eq!(admit(objects, &create(me, &good)), Decision::Allowed);
        if name != "ecr" {
            let old_name = secret(
                "team-a",
                "ecr",
                Some("kubernetes.io/dockerconfigjson"),
                json!({}),
            );
            assert!(matches!(
                admit(objects, &create(me, &old_name)),
                Decision::Denied(m) if m.contains("named ecr")
            ));
        }
        let old_identity = "system:serviceaccount:ecr-secret-refresher:ecr-secret-refresher";
        let attack = secret(
            "kube-system",
            name,
            Some(TOKEN_TYPE),
            json!({SA_NAME_ANNOTATION: "clusterrole-aggregation-controller"}),
        );
        assert_eq!(
            admit(objects, &create(old_identity, &attack)),
            Decision::NotApplicable
        );
        assert_refuses_the_attack(objects, me);
    }
}

//! Re-applying the manifests just works: `kubectl apply -k` of an edited configuration (or a new
//! image) succeeds and makes one new initial Job, an unchanged one makes none, and the
//! documented prune removes the old ones. Run against the fake API server, which refuses a
//! changed Job pod template as the real one does (`spec.template: … field is immutable`).
//!
//! kubectl runs with `--validate=false`: its validation downloads the OpenAPI documents, which
//! the fake does not serve; the objects themselves are validated by scripts/check-manifests.

use std::path::{Path, PathBuf};
use std::process::Command;

use fake_kube::FakeKube;
use serde_json::Value;

const NS: &str = "ecr-secret-refresher";

/// A copy of manifests/ to edit, and a fake cluster to apply it to.
struct Install {
    kube: FakeKube,
    dir: tempfile::TempDir,
    kubeconfig: PathBuf,
}

impl Install {
    async fn new() -> Install {
        let kube = FakeKube::start().await.unwrap();
        kube.allow_anonymous();
        let dir = tempfile::tempdir().unwrap();
        copy_dir(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests"),
            &dir.path().join("manifests"),
        );
        let kubeconfig = kube.write_kubeconfig(dir.path()).unwrap();
        Install {
            kube,
            dir,
            kubeconfig,
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join("manifests").join(rel)
    }

    fn edit(&self, rel: &str, from: &str, to: &str) {
        let p = self.path(rel);
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.contains(from), "{rel} has no {from:?}");
        std::fs::write(&p, text.replacen(from, to, 1)).unwrap();
    }

    /// `kubectl apply -k manifests/overlays/cluster [extra…]`: exit code and output.
    fn apply(&self, extra: &[&str]) -> (i32, String) {
        let out = Command::new("kubectl")
            .env("KUBECONFIG", &self.kubeconfig)
            .arg("apply")
            .arg("--validate=false")
            .arg("-k")
            .arg(self.path("overlays/cluster"))
            .args(extra)
            .output()
            .expect("kubectl on PATH");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code().unwrap_or(-1), text)
    }

    fn jobs(&self) -> Vec<Value> {
        self.kube.list("jobs", NS)
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

fn name(obj: &Value) -> String {
    obj["metadata"]["name"].as_str().unwrap().to_string()
}

fn config_map_of(job: &Value) -> String {
    job["spec"]["template"]["spec"]["containers"][0]["envFrom"][0]["configMapRef"]["name"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Requests that wrote Jobs since the log was cleared.
fn job_writes(kube: &FakeKube) -> Vec<String> {
    kube.requests()
        .into_iter()
        .filter(|r| r.resource == "jobs" && r.verb != "get" && r.verb != "list")
        .map(|r| format!("{} {} -> {}", r.verb, r.name, r.status).replace("  ", " "))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn reapplying_a_changed_configuration_runs_it_once_and_an_unchanged_one_never() {
    let install = Install::new().await;
    let (code, out) = install.apply(&[]);
    assert_eq!(code, 0, "first install: {out}");
    let first = install.jobs();
    assert_eq!(first.len(), 1, "{out}");
    let first_name = name(&first[0]);
    assert!(
        first_name.starts_with("ecr-secret-refresher-initial-"),
        "{first_name}"
    );

    // Same manifests again (what a GitOps tool does on every sync): nothing to do.
    install.kube.clear_requests();
    let (code, out) = install.apply(&[]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!("job.batch/{first_name} unchanged")),
        "{out}"
    );
    assert_eq!(job_writes(&install.kube), Vec::<String>::new());
    assert_eq!(install.jobs().len(), 1);

    // A new configuration: applies, and is a new Job using the new ConfigMap.
    install.edit(
        "base/refresher.env",
        "ECR_REFRESHER_NAMESPACES=default",
        "ECR_REFRESHER_NAMESPACES=default,team-*",
    );
    install.kube.clear_requests();
    let (code, out) = install.apply(&[]);
    assert_eq!(code, 0, "re-apply after editing refresher.env: {out}");
    let jobs = install.jobs();
    assert_eq!(jobs.len(), 2, "{out}");
    let second = jobs.iter().find(|j| name(j) != first_name).unwrap();
    let cm = install
        .kube
        .get("configmaps", NS, &config_map_of(second))
        .unwrap();
    assert_eq!(cm["data"]["ECR_REFRESHER_NAMESPACES"], "default,team-*");
    let old = install.kube.get("jobs", NS, &first_name).unwrap();
    assert_eq!(old, first[0], "the old Job is left as it was");
    assert_eq!(
        job_writes(&install.kube),
        vec!["create -> 201".to_string()],
        "one create, no patch of the old Job"
    );

    // A new image (an upgrade): a new Job too.
    install.edit("base/kustomization.yaml", "newTag: 0.1.0", "newTag: 0.2.0");
    let (code, out) = install.apply(&[]);
    assert_eq!(code, 0, "re-apply after changing the image tag: {out}");
    let jobs = install.jobs();
    assert_eq!(jobs.len(), 3, "{out}");
    assert!(
        jobs.iter()
            .any(|j| j["spec"]["template"]["spec"]["containers"][0]["image"]
                == "ghcr.io/example/ecr-secret-refresher:0.2.0")
    );

    // The documented clean-up keeps only what the manifests name now.
    let (code, out) = install.apply(&[
        "--prune",
        "-l",
        "app.kubernetes.io/name=ecr-secret-refresher",
        "--prune-allowlist=core/v1/ConfigMap",
        "--prune-allowlist=batch/v1/Job",
    ]);
    assert_eq!(code, 0, "prune: {out}");
    let jobs = install.jobs();
    assert_eq!(jobs.len(), 1, "{out}");
    assert_eq!(
        jobs[0]["spec"]["template"]["spec"]["containers"][0]["image"],
        "ghcr.io/example/ecr-secret-refresher:0.2.0"
    );
    assert_eq!(
        install.kube.list("configmaps", NS).len(),
        2,
        "the current ConfigMap and the initial Job's"
    );
    assert!(install.kube.get("namespaces", "", NS).is_some());
    assert!(
        install
            .kube
            .get("cronjobs", NS, "ecr-secret-refresher")
            .is_some()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_fake_refuses_a_changed_job_template_as_the_api_server_does() {
    // What re-applying did before the initial Job was named after its configuration.
    let install = Install::new().await;
    let (code, out) = install.apply(&[]);
    assert_eq!(code, 0, "{out}");
    let job = install.jobs().remove(0);
    let mut changed = job.clone();
    changed["spec"]["template"]["spec"]["containers"][0]["image"] = "other:1".into();
    let kube = &install.kube;
    let url = format!(
        "{}/apis/batch/v1/namespaces/{NS}/jobs/{}",
        kube.url(),
        name(&job)
    );
    let out = Command::new("curl")
        .args([
            "-s",
            "-X",
            "PUT",
            "-H",
            "content-type: application/json",
            "--data",
        ])
        .arg(changed.to_string())
        .arg(&url)
        .output()
        .expect("curl on PATH");
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["code"], 422, "{status}");
    assert_eq!(status["reason"], "Invalid");
    let message = status["message"].as_str().unwrap();
    assert!(
        message.starts_with(&format!(
            "Job.batch \"{}\" is invalid: spec.template: Invalid value: ",
            name(&job)
        )) && message.ends_with(": field is immutable"),
        "{message}"
    );
    // Changing something else (a label) is fine.
    let mut labelled = job.clone();
    labelled["metadata"]["labels"]["x"] = "y".into();
    let out = Command::new("curl")
        .args([
            "-s",
            "-X",
            "PUT",
            "-H",
            "content-type: application/json",
            "--data",
        ])
        .arg(labelled.to_string())
        .arg(&url)
        .output()
        .unwrap();
    let updated: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(updated["metadata"]["labels"]["x"], "y", "{updated}");
}

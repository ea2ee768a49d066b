//! Bounded time and signals, against an API server that hangs: the per-namespace budget, the
//! first SIGTERM/SIGINT (finish only what gives a namespace its Secret back, then the summary,
//! within 10 s), the second signal (exit at once, naming the namespaces caught between delete and
//! create), and the connection check that turns an unreachable server into one clear error.
//!
//! Hangs come from the fake API server's `Fault::hang()` (reads the request, never answers) and
//! from `SilentServer` (accepts TCP, never answers).

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use fake_kube::{Fault, SilentServer};
use serde_json::Value;

/// The binary started with `args`, its output piped, so a test can signal it mid-run.
struct Running {
    child: tokio::process::Child,
    pid: String,
}

fn start(h: &Harness, args: &[&str]) -> Running {
    let child = tokio::process::Command::new(BIN)
        .args(args)
        .env_clear()
        .envs(h.base_env())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("binary starts");
    let pid = child.id().expect("a running child has a pid").to_string();
    Running { child, pid }
}

impl Running {
    fn signal(&self, which: &str) {
        let ok = std::process::Command::new("kill")
            .args([which, &self.pid])
            .status()
            .expect("kill runs")
            .success();
        assert!(ok, "kill {which} {}", self.pid);
    }

    /// Waits (at most `limit`) for the process to exit: its code, stderr, and when it exited.
    async fn exit(self, limit: Duration) -> (i32, String, Instant) {
        let out = tokio::time::timeout(limit, self.child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("the process did not exit within {limit:?}"))
            .expect("binary output");
        let exited = Instant::now();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_no_secrets(&format!("{}{stderr}", String::from_utf8_lossy(&out.stdout)));
        (out.status.code().unwrap_or(-1), stderr, exited)
    }
}

/// Waits until the fake server has logged `n` requests matching `pred`.
async fn until_requests(
    h: &Harness,
    n: usize,
    what: &str,
    pred: impl Fn(&fake_kube::Request) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while h.kube.requests().iter().filter(|r| pred(r)).count() < n {
        assert!(
            Instant::now() < deadline,
            "never saw {n} × {what}: {:?}",
            h.kube_requests()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Namespaces that each hold our Secret from an earlier run.
async fn seeded(names: &[&str]) -> Harness {
    let h = Harness::new(names).await;
    let run = h.run(&["--namespaces", &names.join(",")]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    h.kube.clear_requests();
    h
}

fn line_for<'a>(stderr: &'a str, ns: &str) -> &'a str {
    stderr
        .lines()
        .find(|l| l.contains(&format!("namespace={ns} ")))
        .unwrap_or_else(|| panic!("no line for {ns}:\n{stderr}"))
}

fn data_of(secret: &Value) -> Value {
    secret["data"].clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_against_a_hung_api_server_exits_within_ten_seconds_with_the_summary() {
    let names = ["ns-0", "ns-1", "ns-2", "ns-3", "ns-4", "ns-5"];
    let h = seeded(&names).await;
    let before = data_of(&h.secret("ns-0", "ecr").unwrap());
    // ns-0: the delete goes through, then the create hangs; the restore that follows is
    // answered. Every other namespace hangs on its first read.
    h.kube.inject(
        Fault::hang()
            .verb("create")
            .resource("secrets")
            .namespace("ns-0")
            .times(1),
    );
    for ns in &names[1..] {
        h.kube
            .inject(Fault::hang().verb("get").resource("secrets").namespace(ns));
    }
    let list = names.join(",");
    // Two namespaces wait for a free slot: the signal must keep them from starting.
    let p = start(
        &h,
        &[
            "--namespaces",
            &list,
            "--strategy",
            "recreate",
            "--concurrency",
            "4",
        ],
    );
    until_requests(&h, 4, "hung requests", |r| r.status == 0).await;
    let signalled = Instant::now();
    p.signal("-TERM");
    let (code, stderr, exited) = p.exit(Duration::from_secs(30)).await;
    let took = exited - signalled;
    eprintln!("measured: SIGTERM to exit against a hung API server: {took:?}");
    assert!(
        took < Duration::from_secs(10),
        "exited {took:?} after SIGTERM:\n{stderr}"
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("termination signal received"), "{stderr}");
    let summary = stderr
        .lines()
        .find(|l| l.contains("summary:"))
        .unwrap_or_else(|| panic!("no summary:\n{stderr}"));
    assert!(
        summary.contains("0 refreshed, 1 failed, 0 skipped, 5 not started"),
        "{summary}"
    );
    // The restore ran after the signal and gave ns-0 its old Secret back.
    assert!(
        line_for(&stderr, "ns-0").contains("the old Secret was put back"),
        "{stderr}"
    );
    assert_eq!(data_of(&h.secret("ns-0", "ecr").unwrap()), before);
    for ns in &names[1..] {
        assert!(
            line_for(&stderr, ns).contains("outcome=not-started"),
            "{}",
            line_for(&stderr, ns)
        );
    }
    for ns in names {
        assert!(h.secret(ns, "ecr").is_some(), "{ns} lost its Secret");
    }
    let reqs = h.kube.requests();
    assert!(
        !reqs.iter().any(|r| r.resource == "events"),
        "Events after the signal: {:?}",
        h.kube_requests()
    );
    for ns in ["ns-4", "ns-5"] {
        let n = reqs.iter().filter(|r| r.namespace == ns).count();
        assert_eq!(n, 0, "{ns} was started after the signal");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_when_create_and_restore_both_hang_still_exits_within_ten_seconds() {
    // The worst case for the shutdown time: the namespace is between delete and create, and the
    // server answers neither the create nor the restore. Both get their grace, then the run
    // reports the loudest error and exits.
    let h = seeded(&["team-a", "team-b"]).await;
    h.kube.inject(
        Fault::hang()
            .verb("create")
            .resource("secrets")
            .namespace("team-b"),
    );
    let p = start(
        &h,
        &["--namespaces", "team-a,team-b", "--strategy", "recreate"],
    );
    until_requests(&h, 1, "team-b's hung create", |r| {
        r.status == 0 && r.namespace == "team-b"
    })
    .await;
    let signalled = Instant::now();
    p.signal("-TERM");
    let (code, stderr, exited) = p.exit(Duration::from_secs(30)).await;
    let took = exited - signalled;
    eprintln!("measured: SIGTERM to exit, create and restore both hung: {took:?}");
    assert!(took < Duration::from_secs(10), "{took:?}:\n{stderr}");
    assert_eq!(code, 1, "{stderr}");
    let line = line_for(&stderr, "team-b");
    assert!(
        line.contains("outcome=lost") && line.contains("NAMESPACE LEFT WITHOUT ITS SECRET"),
        "{line}"
    );
    assert!(stderr.contains("WITHOUT their pull secret"), "{stderr}");
    // Two creates: the new Secret, then the restore; both unanswered.
    let creates = h
        .kube
        .requests()
        .iter()
        .filter(|r| r.namespace == "team-b" && r.verb == "create")
        .count();
    assert_eq!(creates, 2);
    assert!(h.secret("team-a", "ecr").is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn no_event_is_sent_after_the_first_signal() {
    let h = seeded(&["team-a"]).await;
    // The create after the delete hangs; the restore succeeds, so team-a fails (restored) after
    // the signal, which before it would have earned a RefreshFailed Event.
    h.kube.inject(
        Fault::hang()
            .verb("create")
            .resource("secrets")
            .namespace("team-a")
            .times(1),
    );
    let p = start(&h, &["--namespaces", "team-a", "--strategy", "recreate"]);
    until_requests(&h, 1, "the hung create", |r| r.status == 0).await;
    p.signal("-INT");
    let (code, stderr, _) = p.exit(Duration::from_secs(30)).await;
    assert_eq!(code, 1, "{stderr}");
    let line = line_for(&stderr, "team-a");
    assert!(
        line.contains("outcome=failed") && line.contains("put back"),
        "{line}"
    );
    let events: Vec<String> = h
        .kube_requests()
        .into_iter()
        .filter(|r| r.contains("events"))
        .collect();
    assert!(
        events.is_empty(),
        "Event requests after the signal: {events:?}"
    );
    assert!(h.kube.list("events", "team-a").is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_namespace_hung_mid_request_fails_within_its_budget_while_the_others_succeed() {
    let h = seeded(&["team-a", "team-b", "team-c"]).await;
    h.kube
        .inject(Fault::hang().verb("patch").namespace("team-b"));
    let started = Instant::now();
    let run = h
        .run(&[
            "--namespaces",
            "team-a,team-b,team-c",
            "--namespace-timeout",
            "4s",
        ])
        .await;
    let took = started.elapsed();
    assert_eq!(run.code, 1, "{}", run.stderr);
    for ns in ["team-a", "team-c"] {
        assert!(
            line_for(&run.stderr, ns).contains("outcome=updated"),
            "{}",
            run.stderr
        );
    }
    let line = line_for(&run.stderr, "team-b");
    assert!(
        line.contains("outcome=failed")
            && line.contains("the namespace's time budget of 4s ran out (--namespace-timeout)"),
        "{line}"
    );
    let ms: u64 = line
        .split("duration_ms=")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no duration in {line}"));
    assert!(
        (4000..4500).contains(&ms),
        "team-b took {ms} ms of a 4 s budget"
    );
    assert!(took < Duration::from_secs(15), "the run took {took:?}");
    // Two tries of the patch (each waits at most half the budget), nothing after: the budget
    // was spent, so no Event either.
    let b: Vec<String> = h
        .kube_requests()
        .into_iter()
        .filter(|r| r.ends_with(" team-b"))
        .collect();
    assert_eq!(b, ["patch secrets team-b", "patch secrets team-b"]);
    assert!(h.secret("team-b", "ecr").is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_run_deadline_caps_each_namespace_budget() {
    let h = seeded(&["team-a"]).await;
    h.kube.inject(Fault::hang().verb("patch"));
    let started = Instant::now();
    let run = h.run(&["--namespaces", "team-a", "--timeout", "3s"]).await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        line_for(&run.stderr, "team-a").contains("time budget of 3s ran out"),
        "{}",
        run.stderr
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_signal_exits_at_once_and_names_the_namespace_between_delete_and_create() {
    let h = seeded(&["team-a", "team-b"]).await;
    // team-b's old Secret is deleted, then its create (and any restore) hangs.
    h.kube.inject(
        Fault::hang()
            .verb("create")
            .resource("secrets")
            .namespace("team-b"),
    );
    let p = start(
        &h,
        &["--namespaces", "team-a,team-b", "--strategy", "recreate"],
    );
    until_requests(&h, 1, "team-b's hung create", |r| {
        r.status == 0 && r.namespace == "team-b"
    })
    .await;
    p.signal("-INT");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = Instant::now();
    p.signal("-INT");
    let (code, stderr, exited) = p.exit(Duration::from_secs(30)).await;
    let took = exited - second;
    eprintln!("measured: second SIGINT to exit: {took:?}");
    assert!(
        took < Duration::from_secs(1),
        "took {took:?} after the second signal"
    );
    assert_ne!(code, 0, "{stderr}");
    let loud = stderr
        .lines()
        .find(|l| l.contains("NAMESPACE LEFT WITHOUT ITS SECRET"))
        .unwrap_or_else(|| panic!("no loud error:\n{stderr}"));
    assert!(
        loud.contains("ERROR") && loud.contains("namespace=team-b"),
        "{loud}"
    );
    assert!(
        !stderr.contains("namespace=team-a outcome=lost"),
        "{stderr}"
    );
    // The message is true: team-b is without its Secret now.
    assert!(h.secret("team-b", "ecr").is_none());
    assert!(h.secret("team-a", "ecr").is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_while_getting_tokens_stops_at_once_and_touches_nothing() {
    let h = Harness::new(&["team-a"]).await;
    // An AWS endpoint that accepts connections and never answers.
    let silent = SilentServer::start().await.expect("listener starts");
    let mut env = h.base_env();
    env.retain(|(k, _)| k != "AWS_ENDPOINT_URL");
    env.push(("AWS_ENDPOINT_URL".into(), silent.url()));
    let child = tokio::process::Command::new(BIN)
        .args(["--namespaces", "team-a"])
        .env_clear()
        .envs(env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("binary starts");
    let p = Running {
        pid: child.id().expect("pid").to_string(),
        child,
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while silent.connections() == 0 {
        assert!(Instant::now() < deadline, "the run never called AWS");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let signalled = Instant::now();
    p.signal("-TERM");
    let (code, stderr, exited) = p.exit(Duration::from_secs(30)).await;
    assert!(
        exited - signalled < Duration::from_secs(2),
        "{:?}",
        exited - signalled
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains(
            "the run was stopped by a termination signal before getting credentials and tokens was done"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("nothing was changed in the cluster"),
        "{stderr}"
    );
    assert!(h.kube.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_never_answering_api_server_is_one_clear_error_and_exit_3() {
    let h = Harness::new(&[]).await;
    let silent = SilentServer::start().await.expect("listener starts");
    let kubeconfig = h.dir.path().join("silent-kubeconfig");
    std::fs::write(&kubeconfig, fake_kube::kubeconfig(&silent.url(), "default")).unwrap();
    let mut env = h.base_env();
    env.retain(|(k, _)| k != "ECR_REFRESHER_KUBECONFIG");
    env.push((
        "ECR_REFRESHER_KUBECONFIG".into(),
        kubeconfig.display().to_string(),
    ));
    let started = Instant::now();
    let run = h
        .run_env(&["--namespaces", "team-a,team-b,team-c"], env)
        .await;
    let took = started.elapsed();
    // Nothing done, nothing to fix: exit 3, which the shipped Jobs retry.
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(took < Duration::from_secs(10), "took {took:?}");
    let errors: Vec<&str> = run.stderr.lines().filter(|l| l.contains("ERROR")).collect();
    assert_eq!(
        errors.len(),
        2,
        "one error, then 'nothing was changed':\n{}",
        run.stderr
    );
    assert!(
        errors[0].contains(&format!(
            "cannot reach the Kubernetes API server at {}: no answer within 5s",
            silent.url()
        )),
        "{}",
        errors[0]
    );
    assert!(
        errors[1].contains("nothing was changed in the cluster"),
        "{}",
        errors[1]
    );
    assert!(
        !run.stderr.contains("namespace="),
        "no per-namespace attempt:\n{}",
        run.stderr
    );
    assert_eq!(silent.connections(), 1, "one probe, one connection");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_connection_is_one_clear_error_and_exit_3() {
    let h = Harness::new(&[]).await;
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let kubeconfig = h.dir.path().join("refused-kubeconfig");
    std::fs::write(&kubeconfig, fake_kube::kubeconfig(&url, "default")).unwrap();
    let mut env = h.base_env();
    env.retain(|(k, _)| k != "ECR_REFRESHER_KUBECONFIG");
    env.push((
        "ECR_REFRESHER_KUBECONFIG".into(),
        kubeconfig.display().to_string(),
    ));
    let started = Instant::now();
    let run = h.run_env(&["--namespaces", "team-a,team-b"], env).await;
    // Nothing done, nothing to fix: exit 3, which the shipped Jobs retry.
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(started.elapsed() < Duration::from_secs(10));
    let errors: Vec<&str> = run.stderr.lines().filter(|l| l.contains("ERROR")).collect();
    assert_eq!(errors.len(), 2, "{}", run.stderr);
    assert!(
        errors[0].contains(&format!("cannot reach the Kubernetes API server at {url}:")),
        "{}",
        errors[0]
    );
    assert!(!run.stderr.contains("namespace="), "{}", run.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn dry_runs_make_no_connection_check() {
    let h = Harness::new(&["team-a"]).await;
    let run = h.run(&["--namespaces", "team-*", "--dry-run"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let all = |h: &Harness| -> Vec<String> {
        h.kube
            .requests()
            .iter()
            .map(|r| format!("{} {}", r.verb, r.resource))
            .collect()
    };
    assert_eq!(all(&h), ["list namespaces"], "only the listing");
    // A run that writes checks once, before anything else.
    h.kube.clear_requests();
    assert_eq!(h.run(&["--namespaces", "team-a"]).await.code, 0);
    assert_eq!(all(&h), ["list version", "patch secrets", "create secrets"]);
}

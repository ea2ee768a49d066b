//! `doctor` (without --image) against an API server that answers the connection check and
//! then stops answering: every later request is bounded like the check, and once one went
//! unanswered the rest are skipped instead of each waiting in turn.

mod common;

use std::time::{Duration, Instant};

use common::*;
use fake_kube::Fault;

fn line_of<'a>(stdout: &'a str, name: &str) -> &'a str {
    stdout
        .lines()
        .find(|l| l.starts_with(name))
        .unwrap_or_else(|| panic!("no row {name}:\n{stdout}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn rbac_reviews_that_never_answer_do_not_stall_doctor() {
    let h = Harness::new(&["team-a", "team-b", "team-c"]).await;
    h.kube
        .inject(Fault::hang().resource("selfsubjectaccessreviews"));
    let started = Instant::now();
    let run = h
        .run(&[
            "doctor",
            "--namespaces",
            "team-a,team-b,team-c",
            "--concurrency",
            "1",
        ])
        .await;
    let took = started.elapsed();
    // Each review would wait for the client's 30 s read timeout, one after another.
    assert!(took < Duration::from_secs(20), "{took:?}\n{}", run.stdout);
    assert_eq!(run.code, 1, "{}", run.stdout);
    let first = line_of(&run.stdout, "RBAC in team-a");
    assert!(
        first.contains("FAIL") && first.contains("no answer within 5 s"),
        "{first}"
    );
    // One review went unanswered: the others are not tried.
    let reviews = h
        .kube
        .requests()
        .iter()
        .filter(|r| r.resource == "selfsubjectaccessreviews")
        .count();
    assert_eq!(reviews, 1, "{}", run.stdout);
    let later = line_of(&run.stdout, "RBAC in team-c");
    assert!(
        later.contains("skip") && later.contains("did not answer"),
        "{later}"
    );
    // The AWS half is not affected.
    assert!(
        line_of(&run.stdout, "ECR token").contains("ok"),
        "{}",
        run.stdout
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_secret_read_that_never_answers_is_bounded_too() {
    let h = Harness::new(&["team-a"]).await;
    h.kube.inject(Fault::hang().resource("secrets"));
    let started = Instant::now();
    let run = h.run(&["doctor", "--namespaces", "team-a"]).await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(20), "{took:?}\n{}", run.stdout);
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(
        line_of(&run.stdout, "RBAC in team-a").contains("ok"),
        "{}",
        run.stdout
    );
    let secret = line_of(&run.stdout, "Secret team-a/ecr");
    assert!(
        secret.contains("FAIL") && secret.contains("no answer within 5 s"),
        "{secret}"
    );
}

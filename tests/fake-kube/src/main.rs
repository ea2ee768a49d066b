//! Runs the fake Kubernetes API server on its own, for benchmarks and manual runs.
//!
//! `fake-kube [--listen 127.0.0.1:0] [--namespaces N] [--prefix ns-] [--kubeconfig PATH]
//! [--allow-anonymous] [--bookmark-interval-ms MS]`
//! seeds N namespaces, writes a kubeconfig pointing at itself, prints its URL on the first
//! line of stdout and serves until killed. `GET /fake/requests` counts the requests served,
//! `DELETE /fake/requests` resets the count. For a running `watch`:
//! `POST /fake/namespaces?count=N&prefix=P[&labels=k=v,…]` creates N namespaces at once,
//! `DELETE /fake/namespaces?prefix=P` removes them, and
//! `GET /fake/latency?prefix=P&secret=NAME` says how long after each namespace its Secret
//! appeared (p50, p95, max in ms).

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let mut listen = "127.0.0.1:0".to_string();
    let mut namespaces = 0usize;
    let mut prefix = "ns-".to_string();
    let mut kubeconfig = None;
    let mut anonymous = false;
    let mut bookmark_ms = None;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "--allow-anonymous" {
            anonymous = true;
            continue;
        }
        let value = args.next();
        match (flag.as_str(), value) {
            ("--listen", Some(v)) => listen = v,
            ("--namespaces", Some(v)) => match v.parse() {
                Ok(n) => namespaces = n,
                Err(_) => return usage(&format!("--namespaces takes a count, got {v}")),
            },
            ("--prefix", Some(v)) => prefix = v,
            ("--bookmark-interval-ms", Some(v)) => match v.parse::<u64>() {
                Ok(ms) if ms > 0 => bookmark_ms = Some(ms),
                _ => {
                    return usage(&format!(
                        "--bookmark-interval-ms takes milliseconds, got {v}"
                    ));
                }
            },
            ("--kubeconfig", Some(v)) => kubeconfig = Some(v),
            (other, _) => return usage(&format!("unknown or incomplete flag {other}")),
        }
    }
    let server = match fake_kube::FakeKube::start_on(&listen).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("fake-kube: cannot listen on {listen}: {e}");
            return ExitCode::FAILURE;
        }
    };
    if anonymous {
        server.allow_anonymous();
    }
    if let Some(ms) = bookmark_ms {
        server.set_bookmark_interval(std::time::Duration::from_millis(ms));
    }
    for i in 0..namespaces {
        server.add_namespace(&format!("{prefix}{i}"), &[("fake-kube/seeded", "true")]);
    }
    if let Some(path) = kubeconfig
        && let Err(e) = std::fs::write(&path, fake_kube::kubeconfig(&server.url(), "default"))
    {
        eprintln!("fake-kube: cannot write kubeconfig {path}: {e}");
        return ExitCode::FAILURE;
    }
    println!("{}", server.url());
    let _ = tokio::signal::ctrl_c().await;
    ExitCode::SUCCESS
}

fn usage(msg: &str) -> ExitCode {
    eprintln!(
        "fake-kube: {msg}\nusage: fake-kube [--listen ADDR] [--namespaces N] [--prefix P] [--kubeconfig PATH] [--allow-anonymous] [--bookmark-interval-ms MS]"
    );
    ExitCode::from(2)
}

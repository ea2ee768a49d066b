//! IAM Roles Anywhere end to end: the binary signs CreateSession with each key type and
//! encoding, a server that verifies with Python's `cryptography` (not our code) accepts it,
//! and the session credentials are the ones that sign the ECR call. Broken identities fail
//! before any request, naming the file.

mod common;

use common::ra::*;
use common::*;
use serde_json::Value;

async fn refresh(h: &Harness, extra: &[String]) -> Run {
    let mut args: Vec<String> = ["--namespaces", "team-a", "--registries"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.push(registry("us-east-1"));
    args.extend_from_slice(extra);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    h.run_env(&refs, h.env_without_keys()).await
}

#[tokio::test(flavor = "multi_thread")]
async fn every_key_type_and_encoding_refreshes_with_roles_anywhere() {
    let h = Harness::new(&["team-a"]).await;
    let server = RaServer::start(h.dir.path());
    let cases = [
        ("rsa2048", "RSA"),
        ("rsa4096", "RSA"),
        ("p256", "ECDSA"),
        ("p384", "ECDSA"),
    ];
    let encodings = [
        ("traditional", false),
        ("pkcs8", false),
        ("pkcs8-pbkdf2-aes256", true),
        ("pkcs8-pbkdf2-aes128", true),
        ("pkcs8-scrypt-aes256", true),
    ];
    let mut runs = 0;
    for (key, alg) in cases {
        for (encoding, encrypted) in encodings {
            let mut args = ra_args(
                &server,
                &format!("{key}.crt"),
                &format!("{key}.{encoding}.pem"),
            );
            args.extend(["--ra-intermediates".to_string(), pem("intermediate.crt")]);
            if encrypted {
                args.extend([
                    "--ra-private-key-passphrase-file".to_string(),
                    pem("passphrase.txt"),
                ]);
            }
            let run = refresh(&h, &args).await;
            assert_eq!(run.code, 0, "{key} {encoding}: {}", run.stderr);
            assert!(run.stderr.contains("IAM Roles Anywhere"), "{}", run.stderr);
            let reqs = server.requests();
            let last = reqs.last().unwrap();
            assert_eq!(last["result"], "accepted", "{key} {encoding}");
            assert_eq!(last["algorithm"], format!("AWS4-X509-{alg}-SHA256"));
            assert_eq!(last["intermediates"], 1);
            runs += 1;
        }
    }
    assert_eq!(server.requests().len(), runs, "one CreateSession per run");
    // Every ECR call was signed with the session credentials Roles Anywhere issued.
    let ecr: Vec<_> = h
        .aws
        .calls()
        .into_iter()
        .filter(|c| c.operation == "GetAuthorizationToken")
        .collect();
    assert_eq!(ecr.len(), runs);
    assert!(ecr.iter().all(|c| c.access_key == RA_KEY_ID), "{ecr:?}");
    assert!(h.secret("team-a", "ecr").is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn chains_bundles_and_key_files_with_parameters() {
    let h = Harness::new(&["team-a"]).await;
    let server = RaServer::start(h.dir.path());
    // Leaf and intermediate in one file; the intermediate goes into the chain header.
    let run = refresh(&h, &ra_args(&server, "p384.bundle.crt", "p384.pkcs8.pem")).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(server.requests().last().unwrap()["intermediates"], 1);
    // A leaf issued by the trust anchor itself: no chain header at all.
    let run = refresh(&h, &ra_args(&server, "direct.crt", "direct.pkcs8.pem")).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let last = server.requests().last().unwrap().clone();
    assert_eq!(last["intermediates"], 0);
    assert!(last["headers"].get("x-amz-x509-chain").is_none());
    // `openssl ecparam -genkey` output: EC PARAMETERS before the key; passphrase from the environment.
    let mut args = ra_args(&server, "p256.crt", "p256.with-params.pem");
    args.extend(["--ra-intermediates".to_string(), pem("intermediate.crt")]);
    let run = refresh(&h, &args).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let mut args = ra_args(&server, "p256.crt", "p256.pkcs8-scrypt-aes256.pem");
    args.extend([
        "--ra-intermediates".to_string(),
        pem("intermediate.crt"),
        "--ra-private-key-passphrase-env".into(),
        "RA_PASS".into(),
    ]);
    let refs: Vec<String> = [
        "--namespaces",
        "team-a",
        "--registries",
        &registry("us-east-1"),
    ]
    .iter()
    .map(|s| s.to_string())
    .chain(args)
    .collect();
    let refs: Vec<&str> = refs.iter().map(String::as_str).collect();
    let mut env = h.env_without_keys();
    env.push(("RA_PASS".into(), "correct horse battery staple".into()));
    let run = h.run_env(&refs, env).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn broken_identities_fail_before_any_request_and_name_the_file() {
    let h = Harness::new(&["team-a"]).await;
    let server = RaServer::start(h.dir.path());
    let with_pass = |mut a: Vec<String>| {
        a.extend([
            "--ra-private-key-passphrase-file".to_string(),
            pem("passphrase.txt"),
        ]);
        a
    };
    let cases: Vec<(Vec<String>, Vec<&str>)> = vec![
        (
            ra_args(&server, "p256.crt", "other-p256.pkcs8.pem"),
            vec![
                "other-p256.pkcs8.pem",
                "does not belong to the certificate",
                "p256.crt",
            ],
        ),
        (
            ra_args(&server, "expired.crt", "p256.pkcs8.pem"),
            vec!["expired.crt", "expired at"],
        ),
        (
            ra_args(&server, "future.crt", "p256.pkcs8.pem"),
            vec!["future.crt", "is not valid before"],
        ),
        (
            ra_args(&server, "ed25519.crt", "ed25519.pkcs8.pem"),
            vec!["ed25519.pkcs8.pem", "Ed25519"],
        ),
        (
            ra_args(&server, "rsa1024.crt", "rsa1024.pkcs8.pem"),
            vec!["rsa1024.pkcs8.pem", "RSA-1024", "2048 to 4096"],
        ),
        (
            ra_args(&server, "p256.crt", "p256.pkcs8-scrypt-aes256.pem"),
            vec![
                "p256.pkcs8-scrypt-aes256.pem",
                "is encrypted",
                "--ra-private-key-passphrase-file",
            ],
        ),
        (
            with_pass(ra_args(&server, "p256.crt", "garbage.pem")),
            vec!["garbage.pem", "malformed"],
        ),
        (
            ra_args(&server, "p256.crt", "missing.pem"),
            vec!["missing.pem", "cannot read"],
        ),
        (
            ra_args(&server, "p256.pkcs8.pem", "p256.pkcs8.pem"),
            vec!["p256.pkcs8.pem", "no PEM certificate"],
        ),
    ];
    for (args, wants) in cases {
        let run = refresh(&h, &args).await;
        assert_eq!(run.code, 2, "{wants:?}: {}", run.stderr);
        for want in wants {
            assert!(
                run.stderr.contains(want),
                "should mention '{want}': {}",
                run.stderr
            );
        }
    }
    // A wrong passphrase.
    let wrong = h.dir.path().join("wrong.txt");
    std::fs::write(&wrong, "Tr0ub4dor&3").unwrap();
    let mut args = ra_args(&server, "rsa2048.crt", "rsa2048.pkcs8-pbkdf2-aes256.pem");
    args.extend([
        "--ra-private-key-passphrase-file".to_string(),
        wrong.display().to_string(),
    ]);
    let run = refresh(&h, &args).await;
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("cannot decrypt")
            && run.stderr.contains("rsa2048.pkcs8-pbkdf2-aes256.pem"),
        "{}",
        run.stderr
    );
    // Regions that disagree, and incomplete settings.
    let mut args = ra_args(&server, "p256.crt", "p256.pkcs8.pem");
    args[7] = "arn:aws:rolesanywhere:eu-west-1:123456789012:profile/9a8c7d6e".into();
    let run = refresh(&h, &args).await;
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("same region"), "{}", run.stderr);
    let run = refresh(&h, &["--ra-certificate".to_string(), pem("p256.crt")]).await;
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("--ra-private-key") && run.stderr.contains("--ra-role-arn"),
        "{}",
        run.stderr
    );

    assert!(
        server.requests().is_empty(),
        "nothing reached Roles Anywhere: {:?}",
        server.requests()
    );
    assert!(h.aws.calls().is_empty());
    assert!(h.kube.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_services_refusal_is_surfaced_with_its_message() {
    let h = Harness::new(&["team-a"]).await;
    let server = RaServer::start(h.dir.path());
    // A certificate from a CA that is not the trust anchor: our checks pass, the service's do not.
    let run = refresh(
        &h,
        &ra_args(&server, "untrusted.crt", "untrusted.pkcs8.pem"),
    )
    .await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("HTTP 403") && run.stderr.contains("Untrusted signing certificate"),
        "{}",
        run.stderr
    );
    assert!(h.aws.calls().is_empty());
    assert!(h.kube.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_verifier_rejects_a_bad_signature() {
    // The server is only a witness if it can say no: replay an accepted request with one
    // signature digit changed, and with the body changed.
    let h = Harness::new(&["team-a"]).await;
    let server = RaServer::start(h.dir.path());
    let mut args = ra_args(&server, "rsa2048.crt", "rsa2048.pkcs8.pem");
    args.extend(["--ra-intermediates".to_string(), pem("intermediate.crt")]);
    assert_eq!(refresh(&h, &args).await.code, 0);
    let accepted = server.requests().last().unwrap().clone();
    let headers = accepted["headers"].as_object().unwrap();
    let send = |auth: String, body: &str| {
        let mut req = format!("POST {} HTTP/1.1\r\n", accepted["path"].as_str().unwrap());
        for (k, v) in headers {
            if k == "authorization" || k == "content-length" || k == "connection" {
                continue;
            }
            req.push_str(&format!("{k}: {}\r\n", v.as_str().unwrap()));
        }
        req.push_str(&format!(
            "authorization: {auth}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        ));
        let addr = server.url.trim_start_matches("http://").to_string();
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        std::io::Write::write_all(&mut stream, req.as_bytes()).unwrap();
        let mut resp = String::new();
        std::io::Read::read_to_string(&mut stream, &mut resp).unwrap();
        resp
    };
    let auth = headers["authorization"].as_str().unwrap().to_string();
    let body = r#"{"durationSeconds":3600}"#;
    assert!(
        send(auth.clone(), body).starts_with("HTTP/1.1 201"),
        "the replay itself is accepted"
    );
    let last = auth.chars().last().unwrap();
    let flipped = format!(
        "{}{}",
        &auth[..auth.len() - 1],
        if last == '0' { '1' } else { '0' }
    );
    assert!(send(flipped, body).starts_with("HTTP/1.1 403"));
    assert!(send(auth, r#"{"durationSeconds":3601}"#).starts_with("HTTP/1.1 403"));
}

#[tokio::test(flavor = "multi_thread")]
async fn credential_process_output_works_as_an_aws_profile() {
    let h = Harness::new(&["team-a"]).await;
    let server = RaServer::start(h.dir.path());
    let mut args = vec!["credential-process".to_string()];
    args.extend(ra_args(&server, "p384.crt", "p384.traditional.pem"));
    args.extend(["--ra-intermediates".to_string(), pem("intermediate.crt")]);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    // stdout is the credentials, by design; stderr must still hold none.
    let run = h.run_unchecked(&refs, h.env_without_keys()).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_no_secrets(&run.stderr);
    let doc: Value = serde_json::from_str(run.stdout.trim()).expect("one JSON document on stdout");
    assert_eq!(doc["Version"], 1);
    assert_eq!(doc["AccessKeyId"], RA_KEY_ID);
    assert!(
        doc["SecretAccessKey"]
            .as_str()
            .unwrap()
            .starts_with("ra-secret-")
    );
    assert!(
        doc["SessionToken"]
            .as_str()
            .unwrap()
            .starts_with("ra-session-token-")
    );
    assert!(
        doc["Expiration"]
            .as_str()
            .unwrap()
            .parse::<jiff::Timestamp>()
            .is_ok()
    );

    // The same command as a profile's credential_process, read by aws-config's own parser.
    let command = std::iter::once(BIN.to_string())
        .chain(args.iter().cloned())
        .collect::<Vec<_>>()
        .join(" ");
    let config = h.dir.path().join("aws-config");
    std::fs::write(
        &config,
        format!("[profile ra]\nregion = us-east-1\ncredential_process = {command}\n"),
    )
    .unwrap();
    let mut env: Vec<(String, String)> = h
        .env_without_keys()
        .into_iter()
        .filter(|(k, _)| k != "AWS_CONFIG_FILE")
        .collect();
    env.push(("AWS_CONFIG_FILE".into(), config.display().to_string()));
    env.push(("AWS_PROFILE".into(), "ra".into()));
    let run = h
        .run_env(
            &[
                "--namespaces",
                "team-a",
                "--registries",
                &registry("us-east-1"),
                "--credentials-source",
                "profile",
            ],
            env,
        )
        .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let ecr = h
        .aws
        .calls()
        .into_iter()
        .find(|c| c.operation == "GetAuthorizationToken")
        .unwrap();
    assert_eq!(ecr.access_key, RA_KEY_ID);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_roles_anywhere_overlay_configuration_runs_as_shipped() {
    let h = Harness::new(&["default"]).await;
    let server = RaServer::start(h.dir.path());
    let objects = render("roles-anywhere");
    let cm = objects.iter().find(|o| o["kind"] == "ConfigMap").unwrap();
    let mut env = h.env_without_keys();
    for (k, v) in cm["data"].as_object().unwrap() {
        // The files the pod mounts from the tls Secret: a leaf-then-intermediate bundle and its key.
        let v = match k.as_str() {
            "ECR_REFRESHER_RA_CERTIFICATE" => pem("p384.bundle.crt"),
            "ECR_REFRESHER_RA_PRIVATE_KEY" => pem("p384.pkcs8.pem"),
            _ => v.as_str().unwrap().to_string(),
        };
        env.push((k.clone(), v));
    }
    env.push(("ECR_REFRESHER_RA_ENDPOINT".into(), server.url.clone()));
    let run = h.run_env(&[], env).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(server.requests().last().unwrap()["result"], "accepted");
    assert!(h.secret("default", "ecr").is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn create_session_is_retried_on_throttling_and_server_errors() {
    let h = Harness::new(&["team-a"]).await;
    // Two failures, then success: three requests, and the run succeeds.
    for status in ["503", "429"] {
        let server = RaServer::start_with(
            h.dir.path(),
            &["--fail-first", "2", "--fail-status", status],
        );
        let run = refresh(&h, &ra_args(&server, "direct.crt", "direct.pkcs8.pem")).await;
        assert_eq!(run.code, 0, "{status}: {}", run.stderr);
        let results: Vec<Value> = server
            .requests()
            .iter()
            .map(|r| r["result"].clone())
            .collect();
        assert_eq!(
            results,
            [
                format!("fault {status}"),
                format!("fault {status}"),
                "accepted".to_string()
            ],
            "{status}"
        );
    }
    assert!(h.secret("team-a", "ecr").is_some());

    // More failures than attempts: three requests in all, then a clear error and exit 3 (an
    // outage: a later run may pass).
    let server = RaServer::start_with(h.dir.path(), &["--fail-first", "10"]);
    let run = refresh(&h, &ra_args(&server, "direct.crt", "direct.pkcs8.pem")).await;
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert_eq!(server.requests().len(), 3, "{:?}", server.requests());
    assert!(
        run.stderr.contains("HTTP 503") && run.stderr.contains("after 3 attempts"),
        "{}",
        run.stderr
    );

    // credential-process retries too.
    let server = RaServer::start_with(h.dir.path(), &["--fail-first", "1"]);
    let mut args = vec!["credential-process".to_string()];
    args.extend(ra_args(&server, "direct.crt", "direct.pkcs8.pem"));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = h.run_unchecked(&refs, h.env_without_keys()).await;
    assert_no_secrets(&run.stderr);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(server.requests().len(), 2);
    let doc: Value = serde_json::from_str(run.stdout.trim()).unwrap();
    assert_eq!(doc["AccessKeyId"], RA_KEY_ID);
}

#[tokio::test(flavor = "multi_thread")]
async fn create_session_is_not_retried_on_a_client_error() {
    let h = Harness::new(&["team-a"]).await;
    let server = RaServer::start_with(h.dir.path(), &["--fail-first", "1", "--fail-status", "400"]);
    let run = refresh(&h, &ra_args(&server, "direct.crt", "direct.pkcs8.pem")).await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("HTTP 400"), "{}", run.stderr);
    assert_eq!(server.requests().len(), 1, "{:?}", server.requests());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_malformed_answer_holding_credentials_is_reported_without_them() {
    let h = Harness::new(&["team-a"]).await;
    let server = RaServer::start_with(h.dir.path(), &["--double-encode"]);
    let run = refresh(&h, &ra_args(&server, "direct.crt", "direct.pkcs8.pem")).await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("unexpected answer") && run.stderr.contains("line 1"),
        "{}",
        run.stderr
    );
    assert_no_secrets(&run.output());
    assert_eq!(server.requests()[0]["result"], "accepted");
    assert!(h.secret("team-a", "ecr").is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn create_session_is_retried_on_connection_errors() {
    // A listener that accepts each connection and closes it at once, counting them.
    let h = Harness::new(&["team-a"]).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            drop(stream);
        }
    });
    let server = RaServer::start(h.dir.path());
    let mut args = ra_args(&server, "direct.crt", "direct.pkcs8.pem");
    let at = args.iter().position(|a| a == "--ra-endpoint").unwrap();
    args[at + 1] = url.clone();
    let run = refresh(&h, &args).await;
    // Nobody answered: a later run may pass.
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(
        run.stderr.contains("cannot reach Roles Anywhere") && run.stderr.contains(&url),
        "{}",
        run.stderr
    );
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 3);
}

/// A forward proxy on loopback for plain-HTTP targets, as an egress proxy would be: it takes
/// absolute-form requests (`POST http://host:port/path HTTP/1.1`), records each (target,
/// headers and body), and forwards it to the target in origin form.
struct Proxy {
    url: String,
    seen: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Proxy {
    async fn start() -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = seen.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(proxy_connection(stream, log.clone()));
            }
        });
        Proxy { url, seen }
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

/// Serves the requests of one client connection, one after another.
async fn proxy_connection(
    stream: tokio::net::TcpStream,
    seen: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
) {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
    let (read, mut write) = stream.into_split();
    let mut client = tokio::io::BufReader::new(read);
    loop {
        let mut line = String::new();
        if client.read_line(&mut line).await.unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let (method, target) = (
            parts.next().unwrap_or("").to_string(),
            parts.next().unwrap_or("").to_string(),
        );
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            client.read_line(&mut h).await.unwrap();
            if h.trim().is_empty() {
                break;
            }
            headers.push(h.trim_end().to_string());
        }
        let length: usize = headers
            .iter()
            .find_map(|h| {
                let (k, v) = h.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .unwrap_or(0);
        let mut body = vec![0; length];
        client.read_exact(&mut body).await.unwrap();
        let body = String::from_utf8_lossy(&body).into_owned();
        seen.lock().unwrap().push(format!(
            "{method} {target}\n{}\n\n{body}",
            headers.join("\n")
        ));
        let Some(rest) = target.strip_prefix("http://") else {
            // Not absolute-form: the client did not treat us as a proxy.
            let _ = write
                .write_all(
                    b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                )
                .await;
            return;
        };
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let mut upstream = tokio::net::TcpStream::connect(authority).await.unwrap();
        let mut request = format!("{method} {path} HTTP/1.1\r\n");
        for h in headers.iter().filter(|h| {
            let name = h.split(':').next().unwrap_or("").to_ascii_lowercase();
            name != "connection" && name != "proxy-connection"
        }) {
            request.push_str(h);
            request.push_str("\r\n");
        }
        request.push_str("connection: close\r\n\r\n");
        request.push_str(&body);
        upstream.write_all(request.as_bytes()).await.unwrap();
        // The target closes after its answer (connection: close), which frames it.
        let mut response = Vec::new();
        upstream.read_to_end(&mut response).await.unwrap();
        write.write_all(&response).await.unwrap();
    }
}

fn operations_through(proxy: &Proxy, host: &str) -> Vec<&'static str> {
    let seen = proxy.seen();
    let mut ops = Vec::new();
    for (op, needle) in [
        ("sts", "GetCallerIdentity"),
        ("ecr", "GetAuthorizationToken"),
        ("rolesanywhere", "/sessions?"),
    ] {
        if seen
            .iter()
            .any(|r| r.contains(needle) && r.contains(&format!("http://{host}")))
        {
            ops.push(op);
        }
    }
    ops
}

#[tokio::test(flavor = "multi_thread")]
async fn every_aws_call_goes_through_the_environments_proxy() {
    let h = Harness::new(&["team-a"]).await;
    let server = RaServer::start(h.dir.path());
    let proxy = Proxy::start().await;
    let front = h.aws.url().trim_start_matches("http://").to_string();
    let ra = server.url.trim_start_matches("http://").to_string();
    // No --registries: the caller's account comes from STS, so all three services are called.
    let mut args = vec!["--namespaces".to_string(), "team-a".to_string()];
    args.extend(ra_args(&server, "direct.crt", "direct.pkcs8.pem"));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut env = h.env_without_keys();
    env.push(("HTTP_PROXY".into(), proxy.url.clone()));
    let run = h.run_env(&refs, env).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        operations_through(&proxy, &front),
        ["sts", "ecr"],
        "{:?}",
        proxy.seen()
    );
    assert_eq!(
        operations_through(&proxy, &ra),
        ["rolesanywhere"],
        "{:?}",
        proxy.seen()
    );
    assert_eq!(server.requests().last().unwrap()["result"], "accepted");
    assert!(h.secret("team-a", "ecr").is_some());

    // The lower-case twins, and NO_PROXY: Roles Anywhere, named as localhost, goes direct.
    let proxy = Proxy::start().await;
    let port = ra.rsplit(':').next().unwrap();
    let at = args.iter().position(|a| a == "--ra-endpoint").unwrap();
    args[at + 1] = format!("http://localhost:{port}");
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut env = h.env_without_keys();
    env.push(("http_proxy".into(), proxy.url.clone()));
    env.push(("no_proxy".into(), "localhost".into()));
    let before = server.requests().len();
    let run = h.run_env(&refs, env).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        operations_through(&proxy, &front),
        ["sts", "ecr"],
        "{:?}",
        proxy.seen()
    );
    assert!(
        !proxy.seen().iter().any(|r| r.contains("/sessions?")),
        "{:?}",
        proxy.seen()
    );
    let after = server.requests();
    assert_eq!(after.len(), before + 1);
    assert_eq!(after.last().unwrap()["result"], "accepted");
}

#[tokio::test(flavor = "multi_thread")]
async fn broken_certificate_and_key_files_are_reported_without_their_contents() {
    // The secret sits on the broken line of each file; the error names the file, never the line.
    let h = Harness::new(&["team-a"]).await;
    let server = RaServer::start(h.dir.path());
    let dir = h.dir.path();
    let good_key = std::fs::read_to_string(pem("direct.pkcs8.pem")).unwrap();
    let good_cert = std::fs::read_to_string(pem("direct.crt")).unwrap();
    let secret_line = format!("{SECRET_KEY}{SECRET_KEY}");
    // A broken line in the middle of a good block, and blocks that are all secret.
    let with_broken_line = |pem: &str| {
        let mut lines: Vec<&str> = pem.lines().collect();
        let at = lines.len() / 2;
        lines.insert(at, &secret_line);
        lines.join("\n") + "\n"
    };
    let cases = [
        ("cert-broken-line.crt", with_broken_line(&good_cert), true),
        (
            "cert-all-secret.crt",
            format!("-----BEGIN CERTIFICATE-----\n{secret_line}\n-----END CERTIFICATE-----\n"),
            true,
        ),
        ("key-broken-line.pem", with_broken_line(&good_key), false),
        (
            "key-all-secret.pem",
            format!("-----BEGIN PRIVATE KEY-----\n{secret_line}\n-----END PRIVATE KEY-----\n"),
            false,
        ),
        (
            "key-bad-der.pem",
            format!(
                "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
                base64::Engine::encode(
                    &base64::engine::general_purpose::STANDARD,
                    format!("0\u{82}{SECRET_KEY}")
                )
            ),
            false,
        ),
    ];
    for (name, text, is_cert) in cases {
        let path = dir.join(name);
        std::fs::write(&path, &text).unwrap();
        let mut args = ra_args(&server, "direct.crt", "direct.pkcs8.pem");
        let flag = if is_cert {
            "--ra-certificate"
        } else {
            "--ra-private-key"
        };
        let at = args.iter().position(|a| a == flag).unwrap();
        args[at + 1] = path.display().to_string();
        let run = refresh(&h, &args).await;
        assert_eq!(run.code, 2, "{name}: {}", run.stderr);
        assert!(
            run.stderr.contains(&path.display().to_string()),
            "{name}: names the file: {}",
            run.stderr
        );
        assert!(
            !run.stderr.contains("FMI-test-secret"),
            "{name}: {}",
            run.stderr
        );
        // Every body line (the BEGIN/END markers are in our own message, by design).
        for line in text
            .lines()
            .filter(|l| l.len() > 20 && !l.starts_with("-----"))
        {
            assert!(
                !run.stderr.contains(line),
                "{name}: prints a line of the file: {}",
                run.stderr
            );
        }
    }
    assert!(server.requests().is_empty());
}

"""The benchmark harness: the refresher against the local fake API server and moto, at 1, 100,
1,000 and 5,000 namespaces, plus the aws-cli + kubectl shell baseline at 1 and 100, the kubelet
plugin mode, and the long-running `watch` mode (bench/watch.py).

Called by scripts/bench, which builds the binaries and the environments. For each run it
records wall time, CPU time and peak resident memory of the process (os.wait4 gives them per
child), the Kubernetes requests the fake server counted, and the AWS requests moto logged.
It writes bench/results.md and exits non-zero when a budget is broken.
"""

import argparse
import datetime
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import watch

REGISTRY = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
BUDGETS = {
    "wall_1000_s": 3.0,
    "rss_5000_mb": 30.0,
    "token_calls_per_region": 1,
    "update_requests_per_ns": 1,
    "recreate_requests_per_ns": 3,
    "first_request_ms": 50.0,
    "kubelet_cold_start_ms": 30.0,
}
KUBELET_REQUEST = json.dumps({
    "apiVersion": "credentialprovider.kubelet.k8s.io/v1", "kind": "CredentialProviderRequest",
    "image": f"{REGISTRY}/team/app:v1",
})
KUBELET_ROLE_REQUEST = json.dumps({
    "apiVersion": "credentialprovider.kubelet.k8s.io/v1", "kind": "CredentialProviderRequest",
    "image": f"{REGISTRY}/team/app:v1", "serviceAccountToken": "bench.service-account.token",
    "serviceAccountAnnotations": {"eks.amazonaws.com/ecr-role-arn": "arn:aws:iam::123456789012:role/bench-pull"},
})
KUBELET_PUBLIC_REQUEST = json.dumps({
    "apiVersion": "credentialprovider.kubelet.k8s.io/v1", "kind": "CredentialProviderRequest",
    "image": "public.ecr.aws/docker/library/busybox:1.36",
})


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Moto:
    """moto_server on a free port; counts the AWS requests it logs."""

    def __init__(self, venv):
        self.port = free_port()
        self.log = tempfile.NamedTemporaryFile(prefix="moto-", suffix=".log", delete=False)
        self.proc = subprocess.Popen(
            [f"{venv}/bin/moto_server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=self.log, stderr=subprocess.STDOUT,
        )
        self.url = f"http://127.0.0.1:{self.port}"
        for _ in range(200):
            try:
                urllib.request.urlopen(self.url + "/moto-api/")
                return
            except OSError:
                time.sleep(0.05)
        raise SystemExit("moto_server did not start")

    def requests(self):
        return sum(1 for line in open(self.log.name, errors="replace") if '"POST /' in line)

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


class FakeKube:
    """The fake API server binary with `n` namespaces seeded."""

    def __init__(self, binary, n, workdir):
        self.kubeconfig = Path(workdir) / f"kubeconfig-{n}"
        self.proc = subprocess.Popen(
            [binary, "--namespaces", str(n), "--prefix", "ns-", "--kubeconfig", str(self.kubeconfig), "--allow-anonymous"],
            stdout=subprocess.PIPE, text=True,
        )
        self.url = self.proc.stdout.readline().strip()
        self.names = [f"ns-{i}" for i in range(n)]

    def reset(self):
        req = urllib.request.Request(self.url + "/fake/requests", method="DELETE")
        urllib.request.urlopen(req).read()

    def counts(self):
        return json.load(urllib.request.urlopen(self.url + "/fake/requests"))

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


def measure(cmd, env):
    """Runs one process; returns wall seconds, CPU seconds, peak RSS in MiB, exit code, stderr.

    CPU and memory come from GNU time, which forks from a small process: a child forked from
    this Python would report Python's own memory as its peak."""
    err = tempfile.TemporaryFile()
    usage = tempfile.NamedTemporaryFile(mode="r", suffix=".time")
    start = time.perf_counter()
    code = subprocess.call(["/usr/bin/time", "-o", usage.name, "-f", "%U %S %M", *cmd],
                           env=env, stdout=subprocess.DEVNULL, stderr=err)
    wall = time.perf_counter() - start
    fields = usage.read().split()[-3:]
    err.seek(0)
    return {
        "wall": wall,
        "cpu": float(fields[0]) + float(fields[1]),
        "rss_mb": int(fields[2]) / 1024,
        "code": code,
        "stderr": err.read().decode(errors="replace"),
    }


def refresher_env(base, moto, kube, names):
    env = dict(base)
    env.update({
        "AWS_ACCESS_KEY_ID": "AKIDBENCH", "AWS_SECRET_ACCESS_KEY": "bench-secret",
        "AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL": moto.url, "AWS_EC2_METADATA_DISABLED": "true",
        "ECR_REFRESHER_KUBECONFIG": str(kube.kubeconfig),
        "ECR_REFRESHER_NAMESPACES": ",".join(names),
        "ECR_REFRESHER_REGISTRIES": REGISTRY,
        "ECR_REFRESHER_LOG_FORMAT": "json",
    })
    return env


def run_refresher(binary, env, kube, moto, strategy):
    kube.reset()
    before = moto.requests()
    m = measure([binary, "--strategy", strategy], env)
    if m["code"] != 0:
        raise SystemExit(f"the refresher failed ({strategy}):\n{m['stderr'][-2000:]}")
    counts = kube.counts()
    # The connection check (GET /version, once per run) is not a per-namespace request.
    m["kube"] = counts["total"] - counts["by_verb"].get("list version", 0)
    m["aws"] = moto.requests() - before
    return m


def first_request_ms(binary, base, kube, runs=20):
    """Process start to the first network request: the AWS endpoint is a listener that notes
    when the first connection arrives, then drops it (the run then fails, as intended)."""
    samples = []
    for _ in range(runs):
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        env = refresher_env(base, type("M", (), {"url": f"http://127.0.0.1:{listener.getsockname()[1]}"}), kube, ["ns-0"])
        arrived = {}

        def accept():
            conn, _ = listener.accept()
            arrived["t"] = time.perf_counter()
            conn.close()

        t = threading.Thread(target=accept)
        t.start()
        start = time.perf_counter()
        proc = subprocess.Popen([binary], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        t.join(10)
        proc.kill()
        proc.wait()
        listener.close()
        if "t" in arrived:
            samples.append((arrived["t"] - start) * 1000)
    samples.sort()
    return samples[len(samples) // 2]


class StubEcr:
    """A loopback endpoint that answers ECR's and ECR Public's GetAuthorizationToken (and STS
    AssumeRoleWithWebIdentity) at once, with a 12-hour token, so a plugin run against it is all
    our own time: each AWS round trip is a loopback request to a server with nothing to do.
    Notes when each request arrived."""

    def __init__(self):
        import http.server
        import base64
        stub = self
        self.arrivals = []

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in two writes; without this, Nagle holds the body until the
            # client's delayed ACK (40 ms) on a reused connection, a stub artefact.
            disable_nagle_algorithm = True

            def do_POST(self):
                stub.arrivals.append(time.perf_counter())
                request = self.rfile.read(int(self.headers.get("content-length", 0)))
                if b"Action=AssumeRoleWithWebIdentity" in request:
                    expires = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
                    body = ("<AssumeRoleWithWebIdentityResponse><AssumeRoleWithWebIdentityResult><Credentials>"
                            "<AccessKeyId>ASIABENCH</AccessKeyId><SecretAccessKey>bench-session-secret</SecretAccessKey>"
                            f"<SessionToken>bench-session-token</SessionToken><Expiration>{expires}</Expiration>"
                            "</Credentials></AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>").encode()
                    self.send_response(200)
                    self.send_header("content-type", "text/xml")
                    self.send_header("content-length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                token = base64.b64encode(b"AWS:bench-password").decode()
                expires = int(time.time()) + 12 * 3600
                data = {"authorizationToken": token, "expiresAt": expires,
                        "proxyEndpoint": f"https://{REGISTRY}"}
                public = "SpencerFrontendService" in self.headers.get("x-amz-target", "")
                body = json.dumps({"authorizationData": data if public else [data]}).encode()
                self.send_response(200)
                self.send_header("content-type", "application/x-amz-json-1.1")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()


def kubelet_env(base, url):
    env = dict(base)
    env.update({
        "AWS_ACCESS_KEY_ID": "AKIDBENCH", "AWS_SECRET_ACCESS_KEY": "bench-secret",
        "AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL": url, "AWS_EC2_METADATA_DISABLED": "true",
    })
    return env


def kubelet_runs(binary, env, request, runs, on_start=None):
    """Runs the plugin `runs` times as the kubelet does (the request on stdin, the response read
    from stdout); returns the sorted wall times in ms, process start to exit after the answer."""
    samples = []
    for _ in range(runs):
        if on_start:
            on_start()
        start = time.perf_counter()
        out = subprocess.run([binary, "kubelet-credential-provider"], input=request.encode(), env=env,
                             capture_output=True)
        samples.append((time.perf_counter() - start) * 1000)
        if out.returncode != 0 or b"CredentialProviderResponse" not in out.stdout:
            raise SystemExit(f"the plugin failed:\n{out.stderr.decode(errors='replace')[-2000:]}")
    samples.sort()
    return samples


def kubelet_cold_start(binary, base, moto, runs=50):
    """The kubelet plugin mode, a new process per request: wall time against a stub that answers
    at once (our own time), time to the first network request, requests per invocation, and
    the same run against moto for scale."""
    stub = StubEcr()
    try:
        env = kubelet_env(base, stub.url)
        kubelet_runs(binary, env, KUBELET_REQUEST, 3)  # page cache warm
        starts = []
        stub.arrivals.clear()
        wall = kubelet_runs(binary, env, KUBELET_REQUEST, runs, on_start=lambda: starts.append(time.perf_counter()))
        firsts = sorted((min(a for a in stub.arrivals if a >= s) - s) * 1000 for s in starts)
        per_private = len(stub.arrivals) / runs
        stub.arrivals.clear()
        public = kubelet_runs(binary, env, KUBELET_PUBLIC_REQUEST, runs)
        per_public = len(stub.arrivals) / runs
        stub.arrivals.clear()
        role = kubelet_runs(binary, env, KUBELET_ROLE_REQUEST, runs)
        per_role = len(stub.arrivals) / runs
    finally:
        stub.stop()
    before = moto.requests()
    moto_wall = kubelet_runs(binary, kubelet_env(base, moto.url), KUBELET_REQUEST, runs)
    per_moto = (moto.requests() - before) / runs
    med = lambda xs: xs[len(xs) // 2]
    p90 = lambda xs: xs[int(len(xs) * 0.9)]
    return {
        "wall_ms": med(wall), "wall_p90_ms": p90(wall), "first_ms": med(firsts),
        "public_ms": med(public), "role_ms": med(role), "moto_ms": med(moto_wall),
        "requests_private": per_private, "requests_public": per_public, "requests_role": per_role,
        "requests_moto": per_moto,
        "runs": runs,
    }


def run_shell(aws_venv, kubectl, base, moto, kube, names, workdir):
    """The approach we replace: aws ecr get-login-password, then kubectl delete + create per
    namespace, one after another, against the same local servers."""
    script = Path(workdir) / "shell-refresh.sh"
    # `kubectl create secret docker-registry` sends its body as protobuf, which the fake API
    # server does not speak; the script builds the same Secret as JSON (what that command does
    # inside) and hands it to `kubectl create -f -`: still one kubectl process per create.
    script.write_text(f"""#!/bin/sh
set -e
PASSWORD=$({aws_venv}/bin/aws ecr get-login-password --region us-east-1 --endpoint-url {moto.url})
AUTH=$(printf 'AWS:%s' "$PASSWORD" | base64 -w0)
CONFIG=$(printf '{{"auths":{{"%s":{{"username":"AWS","password":"%s","auth":"%s"}}}}}}' {REGISTRY} "$PASSWORD" "$AUTH" | base64 -w0)
for ns in $NAMESPACES; do
  {kubectl} --kubeconfig {kube.kubeconfig} -n "$ns" delete secret ecr --ignore-not-found >/dev/null
  printf '{{"apiVersion":"v1","kind":"Secret","metadata":{{"name":"ecr"}},"type":"kubernetes.io/dockerconfigjson","data":{{".dockerconfigjson":"%s"}}}}' "$CONFIG" \\
    | {kubectl} --kubeconfig {kube.kubeconfig} -n "$ns" create --validate=false -f - >/dev/null
done
""")
    script.chmod(0o755)
    env = dict(base)
    env.update({
        "AWS_ACCESS_KEY_ID": "AKIDBENCH", "AWS_SECRET_ACCESS_KEY": "bench-secret",
        "AWS_DEFAULT_REGION": "us-east-1", "NAMESPACES": " ".join(names),
        "HOME": str(Path(workdir) / "shell-home"),
    })
    kube.reset()
    before = moto.requests()
    m = measure([str(script)], env)
    if m["code"] != 0:
        raise SystemExit(f"the shell baseline failed:\n{m['stderr'][-2000:]}")
    m["kube"] = kube.counts()["total"]
    m["aws"] = moto.requests() - before
    return m


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--refresher", required=True)
    ap.add_argument("--fake-kube", required=True)
    ap.add_argument("--venv", required=True, help="venv with moto")
    ap.add_argument("--aws-venv", required=True, help="venv with aws-cli")
    ap.add_argument("--kubectl", default="kubectl")
    ap.add_argument("--image-size", default="")
    ap.add_argument("--out", default=None, help="default bench/results.md; --kubelet-only writes only when given")
    ap.add_argument("--sizes", default="1,100,1000,5000")
    ap.add_argument("--kubelet-only", action="store_true", help="measure the kubelet plugin mode only")
    ap.add_argument("--watch-only", action="store_true",
                    help="measure the watch mode only (and the one-shot at 10,000 namespaces); "
                         "rewrites only the watch section of bench/results.md (or --out)")
    args = ap.parse_args()
    if args.watch_only:
        return watch_only(args)

    base = {"PATH": os.environ["PATH"], "HOME": tempfile.mkdtemp(prefix="bench-home-")}
    workdir = tempfile.mkdtemp(prefix="bench-")
    moto = Moto(args.venv)
    rows, shell_rows, failures = [], {}, []
    watched = None
    try:
        kubelet = kubelet_cold_start(args.refresher, base, moto)
        print(f"kubelet plugin: {kubelet['wall_ms']:.1f} ms start to answer (median of {kubelet['runs']}, p90 "
              f"{kubelet['wall_p90_ms']:.1f}), first request at {kubelet['first_ms']:.1f} ms, "
              f"{kubelet['requests_private']:g} request(s) per invocation; against moto {kubelet['moto_ms']:.1f} ms", flush=True)
        if args.kubelet_only:
            args.sizes = ""
        for n in [int(x) for x in args.sizes.split(",") if x]:
            kube = FakeKube(args.fake_kube, n, workdir)
            try:
                env = refresher_env(base, moto, kube, kube.names)
                first = run_refresher(args.refresher, env, kube, moto, "update")  # creates
                update = run_refresher(args.refresher, env, kube, moto, "update")  # steady state
                recreate = run_refresher(args.refresher, env, kube, moto, "recreate")
                rows.append((n, first, update, recreate))
                print(f"{n:>5} namespaces: update {update['wall']:.3f}s {update['rss_mb']:.1f} MiB "
                      f"{update['kube']} kube / {update['aws']} aws requests; recreate {recreate['wall']:.3f}s", flush=True)
                if n in (1, 100):
                    shell_rows[n] = run_shell(args.aws_venv, args.kubectl, base, moto, kube, kube.names, workdir)
                    s = shell_rows[n]
                    print(f"{n:>5} namespaces, shell: {s['wall']:.3f}s {s['rss_mb']:.1f} MiB {s['kube']} kube requests", flush=True)
                if n == 1:
                    start_ms = first_request_ms(args.refresher, base, kube)
                    print(f"start to first request: {start_ms:.1f} ms (median of 20)", flush=True)
            finally:
                kube.stop()
        if not args.kubelet_only:
            watched = measure_watch(args, base, moto, workdir)
            failures += watch.failures(watched)
    finally:
        moto.stop()

    by_n = {n: (f, u, r) for n, f, u, r in rows}
    if 1000 in by_n and by_n[1000][1]["wall"] >= BUDGETS["wall_1000_s"]:
        failures.append(f"1,000 namespaces took {by_n[1000][1]['wall']:.2f} s (budget {BUDGETS['wall_1000_s']} s)")
    if 5000 in by_n:
        peak = max(m["rss_mb"] for m in by_n[5000])
        if peak >= BUDGETS["rss_5000_mb"]:
            failures.append(f"peak memory at 5,000 namespaces was {peak:.1f} MiB (budget {BUDGETS['rss_5000_mb']} MiB)")
    for n, f, u, r in rows:
        for label, m in (("create", f), ("update", u), ("recreate", r)):
            if m["aws"] > BUDGETS["token_calls_per_region"]:
                failures.append(f"{label} at {n}: {m['aws']} AWS requests for one region")
        if u["kube"] > BUDGETS["update_requests_per_ns"] * n:
            failures.append(f"update at {n}: {u['kube'] / n:.2f} Kubernetes requests per namespace")
        if r["kube"] > BUDGETS["recreate_requests_per_ns"] * n:
            failures.append(f"recreate at {n}: {r['kube'] / n:.2f} Kubernetes requests per namespace")
    if kubelet["wall_ms"] >= BUDGETS["kubelet_cold_start_ms"]:
        failures.append(f"the kubelet plugin took {kubelet['wall_ms']:.1f} ms from start to answer "
                        f"(budget {BUDGETS['kubelet_cold_start_ms']} ms)")
    if kubelet["requests_role"] != 2:
        failures.append(f"the kubelet plugin made {kubelet['requests_role']:g} AWS requests for a ServiceAccount role; budget 2")
    if kubelet["requests_private"] != 1 or kubelet["requests_public"] != 1:
        failures.append(f"the kubelet plugin made {kubelet['requests_private']:g} (private) and "
                        f"{kubelet['requests_public']:g} (public) AWS requests per invocation; budget 1")
    if "start_ms" in locals() and start_ms >= BUDGETS["first_request_ms"]:
        failures.append(f"start to first request took {start_ms:.1f} ms (budget {BUDGETS['first_request_ms']} ms)")

    cpu = "unknown"
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    out = [
        "# Benchmark results",
        "",
        f"Measured {datetime.date.today().isoformat()} by `scripts/bench` on {os.cpu_count()} cores ({cpu}), "
        f"{mem_gib:.0f} GiB, Linux {platform.release()}. The refresher is the static release binary; the "
        "Kubernetes API is the fake server from `tests/fake-kube` (release build) on loopback, AWS is moto. "
        "Times are wall-clock for the whole process, CPU is user+system, memory is peak RSS. "
        "Requests are what the servers counted.",
        "",
        "| namespaces | run | wall (s) | CPU (s) | peak RSS (MiB) | Kubernetes requests | per namespace | AWS requests |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for n, f, u, r in rows:
        for label, m in (("first run (create)", f), ("update, steady", u), ("recreate, steady", r)):
            out.append(f"| {n:,} | {label} | {m['wall']:.3f} | {m['cpu']:.3f} | {m['rss_mb']:.1f} | {m['kube']:,} | {m['kube'] / n:.2f} | {m['aws']} |")
    if shell_rows:
        out += ["", "Shell baseline (aws-cli from PyPI, then `kubectl delete secret` + `kubectl create` of the docker-registry Secret per namespace, sequentially; "
                "the create goes through `kubectl create -f -` with the Secret as JSON, because `kubectl create secret docker-registry` sends protobuf, which the fake API server does not speak):", "",
                "| namespaces | wall (s) | CPU (s) | peak RSS (MiB) | Kubernetes requests | AWS requests | ours/theirs wall | ours/theirs CPU | ours/theirs RSS |",
                "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for n, s in sorted(shell_rows.items()):
            ours = by_n[n][2]  # recreate: the same work the script does
            out.append(f"| {n:,} | {s['wall']:.3f} | {s['cpu']:.3f} | {s['rss_mb']:.1f} | {s['kube']:,} | {s['aws']} | "
                       f"{ours['wall'] / s['wall']:.3f} | {ours['cpu'] / max(s['cpu'], 1e-9):.3f} | {ours['rss_mb'] / s['rss_mb']:.3f} |")
        out += ["", "The ratios compare our `recreate` run (the same delete-and-create work) with the script; "
                "the shell's peak RSS is the largest single process (aws-cli's Python)."]
    out += ["", f"Start to first network request: {start_ms:.1f} ms (median of 20 runs)." if "start_ms" in locals() else ""]
    out += ["", "Kubelet credential provider mode (`kubelet-credential-provider`, a new process per request, "
            "static keys in the environment, the request on stdin):", "",
            "| measure | value |", "|---|---:|",
            f"| start to answer, private ECR, against a loopback stub that answers at once (median of {kubelet['runs']}) | {kubelet['wall_ms']:.1f} ms |",
            f"| the same, 90th percentile | {kubelet['wall_p90_ms']:.1f} ms |",
            f"| start to answer, ECR Public, stub (median) | {kubelet['public_ms']:.1f} ms |",
            f"| start to answer, ServiceAccount role (KEP-4412: STS, then ECR), stub (median) | {kubelet['role_ms']:.1f} ms |",
            f"| start to the first AWS request (median) | {kubelet['first_ms']:.1f} ms |",
            f"| start to answer against moto (median; moto's own time included) | {kubelet['moto_ms']:.1f} ms |",
            f"| AWS requests per invocation: private / public / ServiceAccount role / private against moto | {kubelet['requests_private']:g} / {kubelet['requests_public']:g} / {kubelet['requests_role']:g} / {kubelet['requests_moto']:g} |"]
    if watched:
        out += watch_section(watched)
    if args.image_size:
        out += ["", f"Sizes: {args.image_size}."]
    out += ["", "Budgets: 1,000 namespaces under 3 s; peak memory under 30 MiB at 5,000; one token request per region; "
            "at most 1 Kubernetes request per namespace for `update` and 3 for `recreate` on the steady path; "
            "start to first request under 50 ms; the kubelet plugin under 30 ms from start to answer "
            "apart from AWS round trips, with one AWS request per invocation; `watch`: a new namespace has its "
            "Secret within 2 s (p50) and 5 s (p99), peak memory at most 16 MiB with 10,000 namespaces watched and "
            "no growth over 2,000 create/delete cycles; the one-shot refresh at most 16 MiB at 10,000.", "",
            "Result: " + ("every budget holds." if not failures else "BROKEN: " + "; ".join(failures)), ""]
    if args.out or not args.kubelet_only:
        Path(args.out or "bench/results.md").write_text("\n".join(out))
    print("\n".join(out))
    if failures:
        print("budgets broken:\n- " + "\n- ".join(failures), file=sys.stderr)
        sys.exit(1)


WATCH_BEGIN, WATCH_END = "<!-- watch: written by scripts/bench -->", "<!-- /watch -->"


def measure_watch(args, base, moto, workdir):
    stub = StubEcr()
    try:
        return watch.run_all(args.refresher, args.fake_kube, base, moto, stub.url, workdir)
    finally:
        stub.stop()


def watch_section(watched):
    return ["", WATCH_BEGIN] + watch.markdown(watched) + [
        "", "Watch budgets: " + ("hold." if not watch.failures(watched) else
                                 "BROKEN: " + "; ".join(watch.failures(watched))), WATCH_END]


def watch_only(args):
    """`--watch-only`: the watch figures, written into the watch section of the results file
    (replacing the last one there, or appended), the rest of the file untouched."""
    base = {"PATH": os.environ["PATH"], "HOME": tempfile.mkdtemp(prefix="bench-home-")}
    workdir = tempfile.mkdtemp(prefix="bench-")
    moto = Moto(args.venv)
    try:
        watched = measure_watch(args, base, moto, workdir)
    finally:
        moto.stop()
    section = "\n".join(watch_section(watched)[1:])
    path = Path(args.out or "bench/results.md")
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    if WATCH_BEGIN in text and WATCH_END in text:
        head, rest = text.split(WATCH_BEGIN, 1)
        text = head + section + rest.split(WATCH_END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(text)
    print(section)
    broken = watch.failures(watched)
    if broken:
        print("budgets broken:\n- " + "\n- ".join(broken), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()

"""The benchmark harness: the refresher against the local fake API server and moto, at 1, 100,
1,000 and 5,000 namespaces, plus the aws-cli + kubectl shell baseline at 1 and 100.

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

REGISTRY = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
BUDGETS = {
    "wall_1000_s": 3.0,
    "rss_5000_mb": 30.0,
    "token_calls_per_region": 1,
    "update_requests_per_ns": 1,
    "recreate_requests_per_ns": 3,
    "first_request_ms": 50.0,
}


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
    ap.add_argument("--out", default="bench/results.md")
    ap.add_argument("--sizes", default="1,100,1000,5000")
    args = ap.parse_args()

    base = {"PATH": os.environ["PATH"], "HOME": tempfile.mkdtemp(prefix="bench-home-")}
    workdir = tempfile.mkdtemp(prefix="bench-")
    moto = Moto(args.venv)
    rows, shell_rows, failures = [], {}, []
    try:
        for n in [int(x) for x in args.sizes.split(",")]:
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
    if args.image_size:
        out += ["", f"Sizes: {args.image_size}."]
    out += ["", "Budgets: 1,000 namespaces under 3 s; peak memory under 30 MiB at 5,000; one token request per region; "
            "at most 1 Kubernetes request per namespace for `update` and 3 for `recreate` on the steady path; "
            "start to first request under 50 ms.", "",
            "Result: " + ("every budget holds." if not failures else "BROKEN: " + "; ".join(failures)), ""]
    Path(args.out).write_text("\n".join(out))
    print("\n".join(out))
    if failures:
        print("budgets broken:\n- " + "\n- ".join(failures), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()

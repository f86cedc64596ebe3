# Sourced by scripts/run and scripts/test: installs whatever this machine lacks.
# Idempotent: each step checks first, so a second run costs seconds.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
AZURITE_VERSION="3.35.0"   # 3.36+ needs Node 21/22; 3.35.0 runs on Node 20

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

# Runs a noisy install quietly, showing its output only if it fails.
quietly() {
  local out
  out="$(mktemp)"
  if ! "$@" >"$out" 2>&1; then
    cat "$out" >&2
    rm -f "$out"
    return 1
  fi
  rm -f "$out"
}

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

ensure_python() {
  local stamp="$ROOT/.venv/.requirements.sha"
  local want
  want="$(cat "$ROOT/requirements.txt" "$ROOT/requirements-dev.txt" | sha256sum | cut -c1-16)"
  if [ -x "$ROOT/.venv/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
    return
  fi
  log "Python virtual environment (.venv)"
  python3 -m venv "$ROOT/.venv"
  quietly "$ROOT/.venv/bin/pip" install --upgrade pip
  quietly "$ROOT/.venv/bin/pip" install -r "$ROOT/requirements-dev.txt"
  echo "$want" > "$stamp"
}

ensure_checkov() {
  # checkov pins dependencies that clash with the app's, so it gets a venv of its own.
  local want="3.3.30"   # the version the Bicep checks were validated against
  if [ -x "$ROOT/.venv-checkov/bin/checkov" ] && \
     "$ROOT/.venv-checkov/bin/checkov" --version 2>/dev/null | grep -qx "$want"; then return; fi
  log "checkov (.venv-checkov)"
  python3 -m venv "$ROOT/.venv-checkov"
  quietly "$ROOT/.venv-checkov/bin/pip" install --upgrade pip
  quietly "$ROOT/.venv-checkov/bin/pip" install "checkov==$want"
}

ensure_redis() {
  if command -v redis-server >/dev/null 2>&1; then return; fi
  log "redis-server (Debian package)"
  quietly as_root apt-get update
  quietly as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y redis-server
}

ensure_azurite() {
  if [ -x "$ROOT/.tools/node_modules/.bin/azurite-table" ]; then return; fi
  log "Azurite $AZURITE_VERSION (npm, into .tools)"
  mkdir -p "$ROOT/.tools"
  [ -f "$ROOT/.tools/package.json" ] || echo '{"name":"dipguard-tools","private":true}' > "$ROOT/.tools/package.json"
  (cd "$ROOT/.tools" && quietly npm install --no-audit --no-fund "azurite@$AZURITE_VERSION")
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Sourced by scripts/run and scripts/test: installs what the machine it runs on lacks.
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

# The Python the app runs on in Azure (Python|3.13 on Elastic Premium), and the first one
# with Microsoft's worker on PyPI (azure-functions-runtime), which the dev host runs.
PYTHON_WANT="3.13"

is_python_want() {
  "$1" -c "import sys; sys.exit('%d.%d' % sys.version_info[:2] != '$PYTHON_WANT')" >/dev/null 2>&1
}

# Prints the path of a Python $PYTHON_WANT: $DIPGUARD_PYTHON, python3.13 on PATH, or one
# installed under pyenv. A pyenv shim on PATH may refuse to run when the global version
# differs, so each candidate is asked for its version rather than trusted by name.
find_python() {
  local candidates=() root
  [ -n "${DIPGUARD_PYTHON:-}" ] && candidates+=("$DIPGUARD_PYTHON")
  command -v "python$PYTHON_WANT" >/dev/null 2>&1 && candidates+=("$(command -v "python$PYTHON_WANT")")
  root="$(pyenv root 2>/dev/null || echo "${PYENV_ROOT:-$HOME/.pyenv}")"
  for found in "$root"/versions/"$PYTHON_WANT".*/bin/python"$PYTHON_WANT"; do
    [ -x "$found" ] && candidates+=("$found")
  done
  for py in "${candidates[@]}"; do
    if is_python_want "$py"; then
      echo "$py"
      return 0
    fi
  done
  return 1
}

ensure_python() {
  # The venv is rebuilt whenever a lock changes: requirements.txt is what Azure installs,
  # requirements-dev.txt is that plus the dev tools, each version pinned and hashed.
  local stamp="$ROOT/.venv/.requirements.sha"
  local want python
  want="$(cat "$ROOT/requirements.txt" "$ROOT/requirements-dev.txt" | sha256sum | cut -c1-16)"
  if [ -x "$ROOT/.venv/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ] && \
     is_python_want "$ROOT/.venv/bin/python"; then
    return
  fi
  if ! python="$(find_python)"; then
    cat >&2 <<MSG
dipguard needs Python $PYTHON_WANT, the version it runs on in Azure, and found none: not
\$DIPGUARD_PYTHON, not python$PYTHON_WANT on PATH, not under pyenv. Any one of these will do:
  pyenv install $PYTHON_WANT                      (https://github.com/pyenv/pyenv)
  uv python install $PYTHON_WANT                  (then DIPGUARD_PYTHON=\$(uv python find $PYTHON_WANT))
  an installer from https://www.python.org/downloads/
then run this command again. DIPGUARD_PYTHON=/path/to/python$PYTHON_WANT picks a specific one.
MSG
    exit 1
  fi
  log "Python virtual environment (.venv, $("$python" -V 2>&1))"
  rm -rf "$ROOT/.venv"
  "$python" -m venv "$ROOT/.venv"
  quietly "$ROOT/.venv/bin/pip" install --upgrade pip
  quietly "$ROOT/.venv/bin/pip" install --require-hashes -r "$ROOT/requirements-dev.txt"
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

# Shared by scripts/test, scripts/bench and scripts/demo: find Python >= 3.12 and keep .venv current.
# Sourced, not executed. Sets ROOT and VENV_PY.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
VENV="$ROOT/.venv"
VENV_PY="$VENV/bin/python"

_py_ok() {  # $1: interpreter; true if it runs and is >= 3.12 with venv support
  "$1" -c 'import sys, venv; sys.exit(0 if sys.version_info >= (3, 12) else 1)' >/dev/null 2>&1
}

find_python() {
  local c
  # Explicit choice first, then PATH, then pyenv's installed versions (newest first).
  for c in "${SHADOW_PYTHON:-}" python3.14 python3.13 python3.12 python3; do
    [ -n "$c" ] || continue
    if command -v "$c" >/dev/null 2>&1 && _py_ok "$(command -v "$c")"; then command -v "$c"; return 0; fi
  done
  local roots=("${PYENV_ROOT:-$HOME/.pyenv}")
  if command -v pyenv >/dev/null 2>&1; then roots+=("$(pyenv root 2>/dev/null || true)"); fi
  local r
  for r in "${roots[@]}"; do
    [ -d "$r/versions" ] || continue
    for c in $(ls -d "$r"/versions/3.* 2>/dev/null | sort -t. -k2,2nr -k3,3nr); do
      if [ -x "$c/bin/python3" ] && _py_ok "$c/bin/python3"; then echo "$c/bin/python3"; return 0; fi
    done
  done
  return 1
}

ensure_venv() {
  if [ ! -x "$VENV_PY" ] || ! _py_ok "$VENV_PY"; then
    local py
    if ! py=$(find_python); then
      echo "error: mitmproxy-shadow needs Python >= 3.12; looked for \$SHADOW_PYTHON, python3.14/3.13/3.12/python3 on PATH and pyenv versions under ${PYENV_ROOT:-$HOME/.pyenv}/versions. Install one (e.g. 'pyenv install 3.12') or set SHADOW_PYTHON." >&2
      return 1
    fi
    echo "creating .venv with $py ($("$py" --version))" >&2
    rm -rf "$VENV"
    "$py" -m venv "$VENV"
  fi
  # Reinstall only when the project's metadata changed: keeps repeated runs quick.
  local stamp="$VENV/.shadow-installed" want
  want=$(cat "$ROOT/pyproject.toml" | sha256sum | cut -d' ' -f1)
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "installing mitmproxy-shadow and its test tools into .venv" >&2
    # pip's and setuptools' chatter goes to a log, shown only if the install fails.
    local log="$VENV/install.log"
    if ! { "$VENV_PY" -m pip install --quiet --disable-pip-version-check --upgrade pip \
          && "$VENV_PY" -m pip install --quiet --disable-pip-version-check -e "$ROOT[test]"; } >"$log" 2>&1; then
      cat "$log" >&2
      echo "error: installing into .venv failed (log above, also in $log)" >&2
      return 1
    fi
    echo "$want" > "$stamp"
  fi
}

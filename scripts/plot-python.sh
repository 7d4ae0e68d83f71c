#!/usr/bin/env bash
# Prints the Python to draw plots with: .venv/bin/python with matplotlib (created and installed
# when missing), or plain python3 with a warning on stderr when that fails (callers then write
# their reports without the plot). Shared by scripts/bench.sh and scripts/soak/soak.sh.
#   PY=$(bash scripts/plot-python.sh NAME)    NAME prefixes the messages
set -uo pipefail
cd "$(dirname "$0")/.."
who=${1:-plot-python.sh}
if [ ! -x .venv/bin/python ]; then python3 -m venv .venv >/dev/null 2>&1 || true; fi
if [ -x .venv/bin/python ] && ! .venv/bin/python -c 'import matplotlib' 2>/dev/null; then
    echo "$who: installing matplotlib into .venv (for the plot)" >&2
    .venv/bin/python -m pip install --quiet --disable-pip-version-check matplotlib >&2 || true
fi
if .venv/bin/python -c 'import matplotlib' 2>/dev/null; then
    echo .venv/bin/python
else
    echo "$who: matplotlib unavailable; no plot" >&2
    echo python3
fi

#!/usr/bin/env bash
# Run the pinned uv (from PyPI) on this checkout: `bash scripts/uv.sh lock` after changing a
# dependency in pyproject.toml, `bash scripts/uv.sh lock --check` to verify uv.lock (CI does).
# uv lives in a small bootstrap venv under the cache dir; its package cache (every wheel the lock
# names, hard-linked into each checkout's .venv) sits beside it, shared by all clones.
set -euo pipefail
uv_version=0.13.9
py=${STREAMREC_PYTHON:-python3.11}
command -v "$py" >/dev/null || { echo "uv.sh: $py not found (Python >= 3.11 required)" >&2; exit 1; }
cache_root=${STREAMREC_CACHE_DIR:-$HOME/.cache/streamrec}
tool_venv="$cache_root/uv-$uv_version"

if [ ! -x "$tool_venv/bin/uv" ]; then
    echo "uv.sh: installing uv $uv_version into $tool_venv" >&2
    rm -rf "$tool_venv"
    mkdir -p "$cache_root"
    "$py" -m venv "$tool_venv"
    "$tool_venv/bin/python" -m pip install --quiet --disable-pip-version-check "uv==$uv_version"
fi

export UV_CACHE_DIR=${UV_CACHE_DIR:-$cache_root/uv-cache}
export UV_PYTHON=${UV_PYTHON:-$("$py" -c 'import sys; print(sys.executable)')}
export UV_PYTHON_DOWNLOADS=never  # Python comes from the machine; only PyPI is reachable
export UV_LINK_MODE=${UV_LINK_MODE:-hardlink}
cd "$(dirname "$0")/.."
exec "$tool_venv/bin/uv" "$@"

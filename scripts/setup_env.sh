#!/usr/bin/env bash
# Create .venv/ in the checkout from the committed uv.lock: exactly the locked versions (hashes
# checked), this project installed editable (entry point `streamrec`, its metadata, --version).
# Wheels come from uv's cache under ~/.cache/streamrec (shared by every clone, hard-linked into
# each .venv), so only the first setup on a machine downloads torch's multi-GB CUDA build.
# STREAMREC_EXTRAS (default train,dev) picks the optional dependency sets.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
extras=${STREAMREC_EXTRAS:-train,dev}
extra_args=()
for extra in ${extras//,/ }; do extra_args+=(--extra "$extra"); done

venv="$root/.venv"
if [ -f "$venv/.deps" ]; then  # the overlay venv older setups made: not a uv environment
    rm -rf "$venv"
fi
export UV_PROJECT_ENVIRONMENT="$venv"
# --locked: fail, rather than re-resolve, when pyproject.toml and uv.lock disagree
bash "$root/scripts/uv.sh" sync --locked "${extra_args[@]}"
"$venv/bin/python" -c 'import faust, aiokafka, rocksdict, pydantic, onnxruntime, numpy' \
    || { echo "setup: dependency import check failed" >&2; exit 1; }
echo "setup: .venv ready ($("$venv/bin/python" --version), $("$venv/bin/streamrec" --version))"

#!/usr/bin/env bash
# CPU vs CUDA for engine tower-v2 (bench/gpu_check.py's docstring): locates the project's own
# environment and runs the check in it; installs nothing, needs no network.
#   bash bench/gpu_check.sh [--quick] [--registry DIR --version V] [--json]
# Exit 0: agreement (or no CUDA device: CPU rows only); 1: top-K disagreement; 2: a GPU is
# present but CUDA did not start; 3: nothing to run (no environment, no model).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
py=${STREAMREC_VENV:-$root/.venv}/bin/python
if [ ! -x "$py" ]; then
    echo "gpu_check.sh: no project environment at ${py%/bin/python} (run: make setup)" >&2
    exit 3
fi
cd "$root"
exec "$py" bench/gpu_check.py "$@"

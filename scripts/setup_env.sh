#!/usr/bin/env bash
# Create .venv/ in the checkout. Dependencies live in a venv cached outside the clone,
# keyed by the dependency spec (pyproject's dependency lists + Python version), so a
# fresh clone reuses a multi-GB torch install. .venv/ is a tiny overlay venv that adds
# the cached site-packages and puts this checkout on sys.path, with bin/streamrec.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
py=${STREAMREC_PYTHON:-python3.11}
command -v "$py" >/dev/null || { echo "setup: $py not found (Python >= 3.11 required)" >&2; exit 1; }
cache_root=${STREAMREC_CACHE_DIR:-$HOME/.cache/streamrec}
extras=${STREAMREC_EXTRAS:-train,dev}

reqs=$("$py" - "$root/pyproject.toml" "$extras" <<'PY'
import sys, tomllib
cfg = tomllib.load(open(sys.argv[1], "rb"))["project"]
deps = list(cfg["dependencies"])
for extra in filter(None, sys.argv[2].split(",")):
    deps += cfg["optional-dependencies"][extra]
print("\n".join(deps))
PY
)
key=$( { "$py" -c 'import sys; print(sys.version_info[:2])'; printf '%s\n' "$reqs"; } | sha256sum | cut -c1-16)
deps_venv="$cache_root/venv-$key"

if [ ! -f "$deps_venv/.complete" ]; then
    echo "setup: installing dependencies into $deps_venv (first time for this spec; torch is several GB)"
    rm -rf "$deps_venv"
    mkdir -p "$cache_root"
    "$py" -m venv "$deps_venv"
    "$deps_venv/bin/python" -m pip install --quiet --upgrade pip
    printf '%s\n' "$reqs" > "$deps_venv/requirements.txt"
    "$deps_venv/bin/python" -m pip install --progress-bar off -r "$deps_venv/requirements.txt"
    touch "$deps_venv/.complete"
else
    echo "setup: reusing cached dependencies $deps_venv"
fi

venv="$root/.venv"
site_rel=$("$deps_venv/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$venv/.deps" 2>/dev/null)" != "$deps_venv" ]; then
    rm -rf "$venv"
    "$py" -m venv --without-pip "$venv"
fi
vsite=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
printf 'import site; site.addsitedir(%s)\n' "'$site_rel'" > "$vsite/_streamrec_deps.pth"
printf '%s\n' "$root" > "$vsite/_streamrec_src.pth"
for tool in streamrec; do
    cat > "$venv/bin/$tool" <<PY
#!$venv/bin/python
import sys
from stream_app.cli import main
sys.exit(main())
PY
    chmod +x "$venv/bin/$tool"
done
for tool in pytest mypy; do
    printf '#!/usr/bin/env bash\nexec "%s/bin/python" -m %s "$@"\n' "$venv" "$tool" > "$venv/bin/$tool"
    chmod +x "$venv/bin/$tool"
done
ln -sf "$deps_venv/bin/ruff" "$venv/bin/ruff"  # a native binary: `python -m ruff` would find
                                                # this very file first and loop
echo "$deps_venv" > "$venv/.deps"
"$venv/bin/python" -c 'import faust, aiokafka, rocksdict, pydantic, onnxruntime, numpy' \
    || { echo "setup: dependency import check failed" >&2; exit 1; }
echo "setup: .venv ready ($("$venv/bin/python" --version))"

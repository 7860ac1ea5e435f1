"""The layers hold: the worker's entry point loads no torch or transformers (in a fresh
interpreter, and in one where they cannot be imported at all), and the import-linter
contracts in pyproject.toml fail when a runtime module imports torch."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "transformers")

# A fresh interpreter that imports what ``streamrec worker`` imports, runs its --help, then
# prints the heavy modules it finds loaded. With BLOCK set, torch/transformers cannot be
# imported at all (as in an environment installed without the [train] extra).
PROBE = """
import importlib.abc, sys
if BLOCK:
    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in HEAVY:
                raise ModuleNotFoundError(f"No module named {name!r} (blocked)", name=name)
    sys.meta_path.insert(0, Block())
import stream_app.worker.app, stream_app.worker.agents, stream_app.worker.web
from stream_app.cli import main
code = main(["worker", "--help"])
print("EXIT", code)
print("LOADED", sorted(m for m in sys.modules if m.split(".")[0] in HEAVY))
"""


def _probe(block: bool) -> subprocess.CompletedProcess[str]:
    code = f"BLOCK = {block!r}\nHEAVY = {HEAVY!r}\n{PROBE}"
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120
    )


def test_the_worker_entry_point_loads_no_torch_or_transformers() -> None:
    out = _probe(block=False)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "EXIT 0" in out.stdout and "LOADED []" in out.stdout, out.stdout[-2000:]
    assert "Run the streaming worker" in out.stdout


def test_streamrec_worker_help_works_where_torch_cannot_be_imported() -> None:
    out = _probe(block=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "EXIT 0" in out.stdout and "--registry" in out.stdout, out.stdout[-2000:]


def _lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    code = "import sys; from importlinter.cli import lint_imports_command as c; sys.exit(c())"
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, timeout=300
    )


def test_the_import_contracts_hold_and_fail_when_the_worker_imports_torch(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    shutil.copy(ROOT / "pyproject.toml", tree)
    for pkg in ("schemas", "stream_app", "model_export"):
        shutil.copytree(ROOT / pkg, tree / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    kept = _lint_imports(tree)
    assert kept.returncode == 0, kept.stdout[-3000:]
    assert "0 broken" in kept.stdout
    agents = tree / "stream_app" / "worker" / "agents.py"
    agents.write_text(agents.read_text() + "\nimport torch  # a forbidden import\n")
    broken = _lint_imports(tree)
    assert broken.returncode != 0
    assert "stream_app.worker is not allowed to import torch" in broken.stdout, broken.stdout

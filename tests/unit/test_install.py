"""The installed environment (scripts/setup_env.sh from uv.lock): the project's own metadata and
entry point, one onnxruntime flavour, and a CUDA provider whose libraries all come from wheels.

The CUDA checks need no GPU: they resolve shared libraries the way the dynamic loader does
(``ldd``), with the nvidia wheels' library directories on the search path, as
``onnxruntime.preload_dlls()`` (called by the serving code) makes them available at run time.
"""

from __future__ import annotations

import importlib.metadata as md
import importlib.util
import os
import platform
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
CUDA_PLATFORM = sys.platform == "linux" and platform.machine() == "x86_64"
# The GPU driver's own library: installed with the driver, never from a wheel; absent on a CPU box.
DRIVER_LIBS = frozenset({"libcuda.so.1"})
PROVIDER = "onnxruntime/capi/libonnxruntime_providers_cuda.so"

needs_cuda_platform = pytest.mark.skipif(
    not CUDA_PLATFORM, reason="onnxruntime-gpu is installed on Linux x86_64 only"
)


def installed(dist: str) -> bool:
    try:
        md.distribution(dist)
    except md.PackageNotFoundError:
        return False
    return True


def site_packages() -> Path:
    spec = importlib.util.find_spec("onnxruntime")
    assert spec is not None and spec.origin is not None, "onnxruntime is not installed"
    return Path(spec.origin).parents[1]


def nvidia_lib_dirs() -> list[Path]:
    """Library directories of the installed nvidia-* wheels (the ``nvidia`` namespace package)."""
    spec = importlib.util.find_spec("nvidia")
    if spec is None or not spec.submodule_search_locations:
        return []
    return sorted(d for loc in spec.submodule_search_locations for d in Path(loc).glob("*/lib"))


def unresolved(lib: Path, search: list[Path]) -> set[str]:
    """Libraries ``lib`` needs (transitively) that the loader cannot find with ``search`` on
    LD_LIBRARY_PATH, less the driver's own."""
    assert lib.is_file(), f"{lib} is missing"
    env = {**os.environ, "LD_LIBRARY_PATH": os.pathsep.join(map(str, search))}
    out = subprocess.run(
        ["ldd", str(lib)], capture_output=True, text=True, env=env, check=True
    ).stdout
    missing = {line.split("=>")[0].strip() for line in out.splitlines() if "=> not found" in line}
    return missing - DRIVER_LIBS


def test_streamrec_version_prints_the_installed_version():
    script = Path(sys.executable).with_name("streamrec")
    out = subprocess.run([script, "--version"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"streamrec, version {PROJECT['version']}"


def declared_requires() -> set[str]:
    """pyproject's dependency lists as the core-metadata Requires-Dist lines they become."""
    out = {str(Requirement(r)) for r in PROJECT["dependencies"]}
    for extra, reqs in PROJECT["optional-dependencies"].items():
        for r in reqs:
            spec, _, marker = r.partition(";")
            cond = f"({marker.strip()}) and " if marker else ""
            out.add(str(Requirement(f'{spec}; {cond}extra == "{extra}"')))
    return out


def test_installed_metadata_matches_pyproject():
    dist = md.distribution("streamrec")
    assert dist.version == PROJECT["version"]
    (entry,) = dist.entry_points.select(group="console_scripts", name="streamrec")
    assert entry.value == PROJECT["scripts"]["streamrec"]
    installed_requires = {str(Requirement(r)) for r in dist.requires or []}
    assert installed_requires == declared_requires(), "stale install: run `make setup`"
    assert "threadpoolctl" in {Requirement(r).name for r in PROJECT["dependencies"]}


def test_exactly_one_onnxruntime_flavour():
    flavours = ("onnxruntime-gpu", "onnxruntime")
    wanted, other = flavours if CUDA_PLATFORM else flavours[::-1]
    assert installed(wanted), f"{wanted} should be installed on this platform"
    assert not installed(other), f"{other} shares {wanted}'s package directory: never both"


@needs_cuda_platform
def test_loader_check_reports_libraries_missing_from_the_search_path():
    missing = unresolved(site_packages() / PROVIDER, search=[])
    assert {"libcudart.so.13", "libcublas.so.13"} <= missing


@needs_cuda_platform
def test_cuda_provider_dependencies_resolve_from_the_nvidia_wheels():
    dirs = nvidia_lib_dirs()
    assert dirs, "no nvidia-* wheel is installed"
    missing = unresolved(site_packages() / PROVIDER, dirs)
    assert not missing, f"{PROVIDER} needs {sorted(missing)}: not found in {dirs}"


@needs_cuda_platform
def test_libraries_onnxruntime_preloads_exist_and_resolve():
    import onnxruntime

    paths = getattr(onnxruntime, "_get_nvidia_dll_paths", None)
    assert paths is not None, "onnxruntime no longer lists its CUDA libraries: revisit this test"
    dirs = nvidia_lib_dirs()
    for rel in paths(False, cuda=True, cudnn=True):
        lib = site_packages().joinpath(*rel)
        missing = unresolved(lib, dirs)
        assert not missing, f"{lib.name} needs {sorted(missing)}: not found in {dirs}"

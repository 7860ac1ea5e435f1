"""ONNX Runtime sessions for registry graphs: providers chosen from the ``device`` setting and
each session checked against the graph contract (``schemas.onnx_spec``) when it loads.

Providers: ``auto`` = CUDA when a CUDA session really starts (onnxruntime-gpu lists CUDA even on
machines without a GPU, and silently falls back to CPU, so we check
``session.get_providers()``), else CPU; ``cuda`` fails loudly without it.
"""

from __future__ import annotations

import logging
from pathlib import Path

import onnxruntime as ort

from schemas.onnx_spec import GraphSpec

log = logging.getLogger("streamrec.serving")


class ModelLoadError(RuntimeError):
    """A version that cannot serve: missing/tampered files, wrong graph contract, bad outputs."""


def _gpu_present() -> bool:
    return Path("/dev/nvidiactl").exists() or Path("/dev/dxg").exists()


_warned: set[str] = set()


def _warn_once(reason: str) -> None:
    """``device=auto`` fell back to CPU: one WARNING per reason and process (a version opens
    several sessions)."""
    if reason not in _warned:
        _warned.add(reason)
        log.warning("serving.device=auto: running on CPU: %s", reason)


def choose_providers(device: str) -> list[str]:
    """Provider list for a device setting. ``auto`` only tries CUDA when a GPU device node
    exists (otherwise onnxruntime-gpu logs load errors for every session); every fallback to
    CPU under ``auto`` is a WARNING that says why."""
    available = ort.get_available_providers()
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if device == "auto" and not _gpu_present():
        _warn_once("no GPU device (/dev/nvidiactl or /dev/dxg not present)")
        return ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" in available and hasattr(ort, "preload_dlls"):
        try:  # CUDA/cuDNN from the nvidia-* pip packages, when installed
            ort.preload_dlls()
        except Exception as exc:  # noqa: BLE001 - system CUDA may still work
            log.warning("onnxruntime.preload_dlls failed (system CUDA may still work): %s", exc)
    if "CUDAExecutionProvider" not in available:
        if device == "cuda":
            msg = f"device=cuda: onnxruntime has no CUDAExecutionProvider (has {available})"
            raise ModelLoadError(msg)
        _warn_once(f"onnxruntime has no CUDAExecutionProvider (has {available})")
        return ["CPUExecutionProvider"]
    return ["CUDAExecutionProvider", "CPUExecutionProvider"]


def open_session(
    path: Path, spec: GraphSpec, device: str, threads: int = 0
) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    providers = choose_providers(device)
    try:
        sess = ort.InferenceSession(str(path), sess_options=opts, providers=providers)
    except Exception as exc:  # any ORT load failure refuses the version
        msg = f"{path.name}: onnxruntime could not load it: {exc}"
        raise ModelLoadError(msg) from exc
    if providers[0] == "CUDAExecutionProvider" and sess.get_providers()[0] != providers[0]:
        if device == "cuda":
            msg = f"{path.name}: CUDA requested but the session runs on {sess.get_providers()}"
            raise ModelLoadError(msg)
        _warn_once(
            f"the CUDA provider did not start a session ({_cuda_error()}); "
            "check that the nvidia-* wheels' libraries load (bench/gpu_check.sh)"
        )
        sess = ort.InferenceSession(
            str(path), sess_options=opts, providers=["CPUExecutionProvider"]
        )
    _check_contract(sess, spec, path)
    return sess


def _cuda_error() -> str:
    """Why the CUDA provider library does not load: the loader's own message (e.g. a missing
    ``libcudnn.so.9``), or 'no load error' when it loads and the session still fell back."""
    import ctypes

    lib = Path(ort.__file__).parent / "capi" / "libonnxruntime_providers_cuda.so"
    if not lib.exists():
        return f"{lib.name} is not installed"
    try:
        ctypes.CDLL(str(lib))
    except OSError as exc:
        return str(exc)
    return "its library loads; the device or driver refused the session"


def _check_contract(sess: ort.InferenceSession, spec: GraphSpec, path: Path) -> None:
    """Names and dtypes as ``spec`` says; an optional tensor (added to the contract later) may
    be absent, all of them together (a graph exported before they existed)."""
    types = {"float32": "tensor(float)", "int64": "tensor(int64)"}
    got = {i.name: i.type for i in sess.get_inputs()}
    for t in spec.inputs:
        if t.optional and t.name not in got:
            continue
        if got.get(t.name) != types[t.dtype]:
            msg = f"{path.name}: input {t.name!r} expected {types[t.dtype]}, got {got.get(t.name)}"
            raise ModelLoadError(msg)
    outs = [o.name for o in sess.get_outputs()]
    if outs not in (spec.output_names, spec.required().output_names):
        msg = f"{path.name}: outputs expected {spec.output_names}, got {outs}"
        raise ModelLoadError(msg)

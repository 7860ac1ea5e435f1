"""One ``streamrec worker`` subprocess, started with exactly a ``Settings`` (its
``to_env()``; inherited ``STREAMREC_*`` variables are dropped), so whoever starts a worker (the
demo, ``replay --via-kafka``, the benchmark, the integration tests) runs the configuration it
holds and nothing else. Start, wait until ``/health`` says ok, query the web port, stop
(SIGTERM, then SIGKILL), kill -9.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from schemas.settings import PREFIX, Settings

Health = dict[str, Any]
STOP_TIMEOUT_S = 30.0


class WorkerExited(RuntimeError):
    """The worker process ended (or never got healthy); the message has its log's tail."""


def _healthy(health: Health) -> bool:
    return health.get("status") == "ok"


class WorkerProcess:
    def __init__(
        self,
        settings: Settings,
        log_dir: Path,
        name: str = "worker",
        cwd: Path | None = None,
        profile: Path | None = None,
    ) -> None:
        """``log_dir`` gets one log file per start (``<name>-<n>.log``); ``profile`` runs the
        worker under cProfile, writing its stats there."""
        self.settings, self.log_dir, self.name = settings, Path(log_dir), name
        self.cwd, self.profile = cwd, profile
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def port(self) -> int:
        return self.settings.serving.web_port

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"{self.name}-{self.starts}.log"

    @property
    def pid(self) -> int:
        if self.proc is None:
            msg = f"{self.name}: not started"
            raise WorkerExited(msg)
        return self.proc.pid

    def env(self) -> dict[str, str]:
        inherited = {k: v for k, v in os.environ.items() if not k.startswith(PREFIX)}
        return {**inherited, **self.settings.to_env()}

    def command(self) -> list[str]:
        prof = ["-m", "cProfile", "-o", str(self.profile)] if self.profile is not None else []
        return [sys.executable, *prof, "-m", "stream_app.cli", "worker"]

    def start(self) -> Self:
        self.starts += 1
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as out:
            self.proc = subprocess.Popen(
                self.command(),
                env=self.env(),
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.cwd,
                start_new_session=True,
            )
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    # -- the web port ----------------------------------------------------------------------
    def get(self, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
        """(HTTP status, body) of ``GET path`` on the worker's web port."""
        url = f"http://localhost:{self.port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def health(self) -> Health | None:
        """``/health`` (with ``http``: the status code), None while nothing answers."""
        try:
            status, body = self.get("/health")
            return {"http": status, **json.loads(body)}
        except (OSError, ValueError):
            return None

    def metrics(self) -> dict[str, float]:
        from stream_app.worker.metrics import parse_counters

        return parse_counters(self.get("/metrics")[1].decode())

    def state(self, user_id: str) -> dict[str, Any] | None:
        status, body = self.get(f"/state/{user_id}")
        return json.loads(body) if status == 200 else None

    # -- waiting -----------------------------------------------------------------------------
    def _check(self, ready: Callable[[Health], bool]) -> Health | None:
        if not self.alive():
            code = self.proc.returncode if self.proc is not None else None
            msg = f"{self.name} exited with code {code} before it was ready:\n{self.log()[-4000:]}"
            raise WorkerExited(msg)
        health = self.health()
        return health if health is not None and ready(health) else None

    def _timed_out(self, timeout: float) -> WorkerExited:
        msg = f"{self.name} not healthy on :{self.port}/health within {timeout:.0f} s:\n"
        return WorkerExited(msg + self.log()[-4000:])

    def wait_healthy(
        self, timeout: float = 180.0, ready: Callable[[Health], bool] = _healthy
    ) -> Health:
        """Block until ``ready(/health)``; WorkerExited when it exits or times out first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            health = self._check(ready)
            if health is not None:
                return health
            time.sleep(0.3)
        raise self._timed_out(timeout)

    async def wait_ready(
        self, timeout: float = 180.0, ready: Callable[[Health], bool] = _healthy
    ) -> Health:
        """``wait_healthy`` for callers inside an event loop."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            health = await asyncio.to_thread(self._check, ready)
            if health is not None:
                return health
            await asyncio.sleep(0.3)
        raise self._timed_out(timeout)

    # -- ending ------------------------------------------------------------------------------
    def stop(self, timeout: float = STOP_TIMEOUT_S) -> int:
        """SIGTERM (a clean shutdown commits offsets), SIGKILL after ``timeout``; exit code."""
        if self.proc is None:
            return 0
        if self.proc.poll() is not None:
            return self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(10)

    def kill9(self) -> None:
        """SIGKILL now: nothing is flushed or committed (crash drills)."""
        os.kill(self.pid, signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(10)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

"""Versioned model registry on a file system. No torch: workers import this.

Layout::

    <root>/CURRENT              the served version (replaced atomically with os.replace)
    <root>/history.json         stack of versions made current (publish/promote push,
                                rollback pops)
    <root>/v0001/manifest.json  ``schemas.manifest.Manifest``: version, parent, created_at,
                                status, files (sha256, bytes), encoder, engine, training
                                settings and window, metrics
    <root>/v0001/...            encoder.onnx, item_tower.onnx, ranker.onnx, tokenizer/, ...
    <root>/.staging-*           a version being written; never visible as a version

A version directory appears by one atomic rename of a fully written, fsynced staging
directory whose manifest was written last; CURRENT only ever names such a directory. A crash
at any point leaves at most a stale staging directory (cleaned up by ``gc_staging``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from schemas.manifest import FileEntry, Manifest, ManifestDraft, ShadowRecord, Status

log = logging.getLogger("streamrec.registry")

MANIFEST = "manifest.json"
_VERSION_RE = re.compile(r"^v(\d{4,})$")
_STAGING_RE = re.compile(r"^\.staging-(\d+)-v(\d{4,})$")


class RegistryError(RuntimeError):
    pass


class CurrentChanged(RegistryError):
    """A compare-and-swap on CURRENT found another version there (someone acted first)."""


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _atomic_write(path: Path, data: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


class Registry:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    # -- reading ---------------------------------------------------------------------
    def path(self, version: str) -> Path:
        return self.root / version

    def versions(self) -> list[str]:
        if not self.root.exists():
            return []
        found = [
            p.name
            for p in self.root.iterdir()
            if _VERSION_RE.match(p.name) and (p / MANIFEST).exists()
        ]
        return sorted(found, key=lambda v: int(v[1:]))

    def manifest(self, version: str) -> Manifest:
        path = self.path(version) / MANIFEST
        try:
            return Manifest.model_validate_json(path.read_bytes())
        except FileNotFoundError:
            msg = f"model version {version!r}: no manifest at {path} (known: {self.versions()})"
            raise RegistryError(msg) from None
        except ValidationError as exc:
            msg = f"model version {version!r}: {path} is not a valid manifest: {exc}"
            raise RegistryError(msg) from None

    def manifests(self) -> Iterator[Manifest]:
        """Every version's manifest, oldest first; a version whose manifest cannot be read
        is logged and left out (it cannot be served or compared anyway)."""
        for version in self.versions():
            try:
                yield self.manifest(version)
            except RegistryError as exc:
                log.warning("%s", exc)

    def current(self) -> str | None:
        try:
            version = (self.root / "CURRENT").read_text().strip()
        except FileNotFoundError:
            return None
        return version or None

    def require_current(self) -> str:
        """CURRENT, or RegistryError saying the registry has none."""
        version = self.current()
        if version is None:
            msg = f"registry {self.root}: no CURRENT model version (train one first)"
            raise RegistryError(msg)
        return version

    def history(self) -> list[str]:
        try:
            return list(json.loads((self.root / "history.json").read_text()))
        except FileNotFoundError:
            return []

    def verify(self, version: str) -> list[str]:
        """Problems with a version's files (missing, truncated, tampered); [] when sound."""
        try:
            files = self.manifest(version).files
        except RegistryError as exc:
            return [f"{version}: unreadable manifest: {exc}"]
        problems = []
        base = self.path(version)
        for name, meta in files.items():
            path = base / name
            if not path.exists():
                problems.append(f"{version}/{name}: missing")
                continue
            size = path.stat().st_size
            if size != meta.bytes:
                problems.append(f"{version}/{name}: expected {meta.bytes} bytes, got {size}")
                continue
            digest = sha256_file(path)
            if digest != meta.sha256:
                problems.append(
                    f"{version}/{name}: sha256 mismatch (expected "
                    f"{meta.sha256[:12]}…, got {digest[:12]}…)"
                )
        return problems

    # -- writing ---------------------------------------------------------------------
    def _next_number(self) -> int:
        """Above every version and every live reservation (a crashed one leaves a gap)."""
        nums = []
        for p in self.root.iterdir() if self.root.exists() else []:
            if m := _VERSION_RE.match(p.name):
                nums.append(int(m.group(1)))
            elif m := _STAGING_RE.match(p.name):
                nums.append(int(m.group(2)))
        return max(nums, default=0) + 1

    @contextlib.contextmanager
    def _lock(self, timeout: float = 60.0) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        lock = self.root / ".lock"
        deadline = time.monotonic() + timeout
        while True:
            try:
                fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
                os.write(fd, str(os.getpid()).encode())
                os.close(fd)
                break
            except FileExistsError:
                if self._stale_lock(lock):
                    lock.unlink(missing_ok=True)
                    continue
                if time.monotonic() > deadline:
                    msg = f"registry {self.root}: lock held by another process ({lock})"
                    raise RegistryError(msg) from None
                time.sleep(0.05)
        try:
            yield
        finally:
            lock.unlink(missing_ok=True)

    @staticmethod
    def _stale_lock(lock: Path) -> bool:
        try:
            pid = int(lock.read_text() or "0")
        except (OSError, ValueError):
            return False
        return pid > 0 and not Path(f"/proc/{pid}").exists()

    def staging(self) -> tuple[str, Path]:
        """Reserve the next version id and a fresh directory to write it into."""
        with self._lock():
            version = f"v{self._next_number():04d}"
            path = self.root / f".staging-{os.getpid()}-{version}"
            path.mkdir()
        return version, path

    def copy_version(
        self,
        source: str,
        make_current: bool = True,
        status: Status = "published",
        edit: Callable[[Path], None] | None = None,
        **manifest_changes: Any,
    ) -> str:
        """Publish a new version with ``source``'s files (``edit(staging_dir)`` may change them
        first; ``manifest_changes`` replace top-level manifest fields, validated), its parent
        the current version. No gate: drills, benchmarks (a swap to an identical model) and
        tests use it."""
        _, staging = self.staging()
        src = self.path(source)
        for f in src.rglob("*"):
            if f.is_file() and f.name != "manifest.json":
                dst = staging / f.relative_to(src)
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(f, dst)
        if edit is not None:
            edit(staging)
        draft = self.manifest(source).draft(**{"parent": self.current(), **manifest_changes})
        return self.publish(staging, draft, make_current=make_current, status=status)

    def import_version(self, source_dir: Path, make_current: bool = True) -> str:
        """A copy of another registry's version directory under its own name (scratch
        registries: a replay's fine-tuning rounds); refused when that name is taken."""
        version = source_dir.name
        if not _VERSION_RE.match(version) or (self.root / version).exists():
            msg = f"import_version: {source_dir} is not a version name free in {self.root}"
            raise RegistryError(msg)
        self.root.mkdir(parents=True, exist_ok=True)
        _, staging = self.staging()
        shutil.rmtree(staging)
        shutil.copytree(source_dir, staging)
        os.rename(staging, self.path(version))
        if make_current:
            self._push_current(version)
        return version

    def publish(
        self,
        staging: Path,
        draft: ManifestDraft,
        make_current: bool = True,
        status: Status = "published",
    ) -> str:
        """Hash every file, write the manifest last, rename into place, then move CURRENT."""
        m = _STAGING_RE.match(staging.name)
        if m is None or staging.parent != self.root:
            msg = f"publish: expected a directory from Registry.staging(), got {staging}"
            raise RegistryError(msg)
        version = f"v{m.group(2)}"
        files = {}
        for path in sorted(p for p in staging.rglob("*") if p.is_file()):
            rel = path.relative_to(staging).as_posix()
            if rel == MANIFEST:
                continue
            with open(path, "rb") as fh:
                os.fsync(fh.fileno())
            files[rel] = FileEntry(sha256=sha256_file(path), bytes=path.stat().st_size)
        with self._lock():
            manifest = Manifest(
                **dict(draft),
                version=version,
                created_at=datetime.now(UTC),
                status=status,
                files=files,
            )
            _atomic_write(staging / MANIFEST, manifest.model_dump_json(indent=2))
            _fsync_dir(staging)
            os.rename(staging, self.path(version))
            _fsync_dir(self.root)
            if make_current:
                self._push_current(version)
        return version

    def _push_current(self, version: str) -> None:
        history = self.history()
        if not history or history[-1] != version:
            history.append(version)
        _atomic_write(self.root / "history.json", json.dumps(history))
        _atomic_write(self.root / "CURRENT", version + "\n")

    def promote(self, version: str, expected_current: str | None = None) -> None:
        """Make ``version`` CURRENT. ``expected_current``: only if CURRENT still is that
        version (compare-and-swap under the registry lock), else ``CurrentChanged``."""
        problems = self.verify(version)
        if problems:
            msg = f"cannot promote {version}: " + "; ".join(problems)
            raise RegistryError(msg)
        status = self.manifest(version).status
        if status != "published":
            msg = f"cannot promote {version}: status is {status!r}"
            raise RegistryError(msg)
        with self._lock():
            self._expect_current(expected_current, f"promote {version}")
            self._push_current(version)

    def set_status(
        self,
        version: str,
        status: Status,
        refused_reason: str | None = None,
        shadow: ShadowRecord | None = None,
    ) -> None:
        """Rewrite a version's manifest status (and why it was refused, the shadow verdict),
        atomically; its files and their hashes are untouched."""
        changes: dict[str, Any] = {}
        if refused_reason is not None:
            changes["refused_reason"] = refused_reason
        if shadow is not None:
            changes["shadow"] = shadow
        with self._lock():
            manifest = self.manifest(version).with_status(status, **changes)
            _atomic_write(self.path(version) / MANIFEST, manifest.model_dump_json(indent=2))

    def _expect_current(self, expected: str | None, what: str) -> None:
        current = self.current()
        if expected is not None and current != expected:
            msg = f"{what}: expected CURRENT={expected}, found {current} (someone acted first)"
            raise CurrentChanged(msg)

    def rollback(self, expected_current: str | None = None) -> tuple[str, str]:
        """Move CURRENT back to the version served before it. Returns (from, to).

        ``expected_current``: roll back only if CURRENT still is that version (compare-and-swap
        under the registry lock), else ``CurrentChanged``: several workers that each detect the
        same bad version roll it back once, not once each (which would pop good versions)."""
        with self._lock():
            self._expect_current(expected_current, "rollback")
            history = self.history()
            current = self.current()
            if current is None or len(history) < 2:
                msg = f"nothing to roll back to (CURRENT={current}, history={history})"
                raise RegistryError(msg)
            while history and history[-1] == current:
                history.pop()
            if not history:
                msg = f"nothing to roll back to from {current}"
                raise RegistryError(msg)
            target = history[-1]
            _atomic_write(self.root / "history.json", json.dumps(history))
            _atomic_write(self.root / "CURRENT", target + "\n")
        return current, target

    def gc_staging(self, older_than_s: float = 0.0) -> int:
        """Remove staging dirs left by crashed writers (their pid is gone)."""
        removed = 0
        for p in self.root.glob(".staging-*"):
            m = _STAGING_RE.match(p.name)
            pid = int(m.group(1)) if m else 0
            age = time.time() - p.stat().st_mtime
            if (pid and not Path(f"/proc/{pid}").exists()) or (older_than_s and age > older_than_s):
                shutil.rmtree(p, ignore_errors=True)
                removed += 1
        return removed

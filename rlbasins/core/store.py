"""The run directory: the only place results live, written so that nothing is lost.

Layout (``runs/<experiment>/``)::

    config.yaml                       resolved config (every default filled in)
    manifest.json                     versions, git commit, config hash, per-seed status, own sha256
    .lock                             held (flock) by the one process writing this run
    seeds/<k>/ckpt/<step>.safetensors        policy in the exchange format
    seeds/<k>/ckpt/<step>.state.safetensors  optimizer, RNG and env state for exact resume
    seeds/<k>/ckpt/index.json                checkpoints and their sha256, in order
    tb/seed_<k>/, tb/aggregate/       TensorBoard runs
    analysis/                         JSON/CSV results
    report.html

Every file is written to a temporary name in the same folder, fsynced and renamed, so a
reader sees either the old file or the new one. Checkpoints are listed in ``index.json``
only after they are complete, with their sha256, and every load checks that hash.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save


class StoreError(Exception):
    """A run directory cannot be used as asked (exists, finished, locked, config changed)."""


class StoreWriteError(StoreError):
    """A file could not be written (disk full, permissions); the previous version of it is intact."""

    def __init__(self, path: Path | str, error: OSError):
        self.path, self.error = Path(path), error
        super().__init__(f"could not write {self.path}: {error.strerror or error} — its previous version is "
                         "intact; free space (or fix permissions) and run again (training: --resume)")

    def __reduce__(self):  # rebuilt from its arguments when it crosses a process boundary
        return type(self), (self.path, self.error)


class CorruptFileError(StoreError):
    """A stored file is truncated, altered or unreadable; ``path`` names it."""

    def __init__(self, path: Path | str, reason: str):
        self.path, self.reason = Path(path), reason
        super().__init__(f"corrupt file {self.path}: {reason}")

    def __reduce__(self):  # rebuilt from its arguments when it crosses a process boundary
        return type(self), (self.path, self.reason)


# --------------------------------------------------------------------------- atomic files


_UMASK = os.umask(0)
os.umask(_UMASK)  # read once: the only portable way to learn the process umask


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file and rename (readers never see half a file).

    A failed write (e.g. the disk is full) raises :class:`StoreWriteError` naming ``path`` and leaves
    the previous file, if any, untouched.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise StoreWriteError(path, exc) from exc
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; results are shared like any written file
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise StoreWriteError(path, exc) from exc
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _json_bytes(obj: Any) -> bytes:
    """The bytes :func:`atomic_write_json` writes for ``obj`` (one layout for a given content)."""
    return (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode()


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, _json_bytes(obj))


def read_json(path: Path) -> Any:
    """Parse a JSON file written by this module; a damaged one raises :class:`CorruptFileError`."""
    return _parse_json(path, path.read_bytes())


def _parse_json(path: Path, data: bytes) -> Any:
    try:
        return json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CorruptFileError(path, f"not valid JSON ({exc})") from None


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    return sha256_bytes(path.read_bytes())


# --------------------------------------------------------------------------- tensors files


def encode_tensors(tensors: dict[str, torch.Tensor], meta: dict[str, Any] | None = None) -> bytes:
    """safetensors bytes of ``tensors``; ``meta`` (JSON-able) rides in the header."""
    header = {"meta": json.dumps(meta, sort_keys=True)} if meta is not None else None
    contiguous = {name: t.detach().cpu().contiguous() for name, t in tensors.items()}
    return st_save(contiguous, metadata=header)


def load_verified(path: Path, expected_sha256: str | None) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Load a safetensors file, checking its sha256 first when one is known."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CorruptFileError(path, "listed in the index but missing") from None
    if expected_sha256 is not None and sha256_bytes(data) != expected_sha256:
        raise CorruptFileError(path, f"sha256 {sha256_bytes(data)[:12]}… does not match the recorded "
                                     f"{expected_sha256[:12]}… (truncated or modified)")
    try:
        tensors = st_load(data)
        header = _safetensors_header(data)
    except (SafetensorError, ValueError, json.JSONDecodeError) as exc:
        raise CorruptFileError(path, f"not a readable safetensors file ({exc})") from None
    meta = json.loads(header.get("__metadata__", {}).get("meta", "null"))
    return tensors, meta


def _safetensors_header(data: bytes) -> dict:
    size = int.from_bytes(data[:8], "little")
    return json.loads(data[8 : 8 + size])


# --------------------------------------------------------------------------- the lock


@contextmanager
def run_lock(root: Path) -> Iterator[None]:
    """Hold an exclusive lock on a run directory; a second process gets :class:`StoreError`.

    ``flock`` is released by the kernel when the process dies, so a killed run never leaves
    a stale lock behind.
    """
    root.mkdir(parents=True, exist_ok=True)
    handle = open(root / ".lock", "a+")
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        owner = handle.read().strip() or "unknown"
        handle.close()
        raise StoreError(f"run directory {root} is in use by another rlbasins process (pid {owner}); "
                         "wait for it to finish or stop it first") from None
    try:
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        yield
    finally:
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        handle.close()


# --------------------------------------------------------------------------- checkpoints


@dataclass(frozen=True)
class CheckpointEntry:
    """One complete checkpoint of one seed: env step and sha256 of each of its files."""

    step: int
    files: dict[str, str]  # file name -> sha256


class SeedStore:
    """Checkpoints of one seed: ``seeds/<k>/ckpt/``. Only that seed's trainer writes here."""

    def __init__(self, seed_dir: Path):
        self.dir = seed_dir
        self.ckpt_dir = seed_dir / "ckpt"
        self.index_path = self.ckpt_dir / "index.json"

    def entries(self) -> list[CheckpointEntry]:
        if not self.index_path.exists():
            return []
        return [CheckpointEntry(step=e["step"], files=e["files"]) for e in read_json(self.index_path)]

    def last(self) -> CheckpointEntry | None:
        entries = self.entries()
        return entries[-1] if entries else None

    def policy_path(self, step: int) -> Path:
        return self.ckpt_dir / f"{step}.safetensors"

    def state_path(self, step: int) -> Path:
        return self.ckpt_dir / f"{step}.state.safetensors"

    def save(self, step: int, policy: dict[str, torch.Tensor], policy_meta: dict[str, Any],
             state: dict[str, torch.Tensor], state_meta: dict[str, Any]) -> CheckpointEntry:
        """Write the policy and resume-state files, then list them (with hashes) in the index."""
        files = {}
        for path, tensors, meta in ((self.policy_path(step), policy, policy_meta),
                                    (self.state_path(step), state, state_meta)):
            data = encode_tensors(tensors, meta)
            atomic_write_bytes(path, data)
            files[path.name] = sha256_bytes(data)
        entry = CheckpointEntry(step=step, files=files)
        kept = [e for e in self.entries() if e.step < step]
        atomic_write_json(self.index_path, [e.__dict__ for e in kept + [entry]])
        return entry

    def _load(self, path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        for entry in self.entries():
            if path.name in entry.files:
                return load_verified(path, entry.files[path.name])
        raise CorruptFileError(path, f"not listed in {self.index_path}")

    def load_policy(self, step: int) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """The exchange-format state dict at ``step`` and its metadata, hash-checked."""
        return self._load(self.policy_path(step))

    def load_state(self, step: int) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """The resume state at ``step``, hash-checked."""
        return self._load(self.state_path(step))


# --------------------------------------------------------------------------- the run directory


MANIFEST_HASH_KEY = "content_sha256"
"""The manifest's own field holding the sha256 of the rest of it (see :func:`_content_sha256`)."""


def _content_sha256(obj: dict[str, Any]) -> str:
    """sha256 of ``obj`` as canonical JSON (sorted keys, no whitespace): independent of the file's layout."""
    return sha256_bytes(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode())


class RunDir:
    """Paths and records of one experiment's run directory."""

    def __init__(self, root: Path | str):
        self.root = Path(root)
        self.config_path = self.root / "config.yaml"
        self.manifest_path = self.root / "manifest.json"
        self.tb_dir = self.root / "tb"
        self.analysis_dir = self.root / "analysis"
        self.report_path = self.root / "report.html"

    def clear(self) -> None:
        """Delete everything in the run directory but its lock (``--overwrite``; the caller holds the lock)."""
        for child in self.root.iterdir():
            if child.name != ".lock":
                shutil.rmtree(child) if child.is_dir() else child.unlink()

    def seed(self, k: int) -> SeedStore:
        return SeedStore(self.root / "seeds" / str(k))

    def exists(self) -> bool:
        return self.manifest_path.exists()

    def manifest(self) -> dict[str, Any]:
        """The manifest, checked against the sha256 it was written with (:meth:`write_manifest`)."""
        if not self.manifest_path.exists():
            raise FileNotFoundError(f"{self.root} is not a run directory (no manifest.json); "
                                    "create one with `rlbasins train CONFIG`")
        data = self.manifest_path.read_bytes()
        stored = _parse_json(self.manifest_path, data)
        manifest = {k: v for k, v in stored.items() if k != MANIFEST_HASH_KEY} if isinstance(stored, dict) else {}
        # the hash catches a changed content, the byte comparison a changed layout (e.g. a lost final newline)
        if (not isinstance(stored, dict) or stored.get(MANIFEST_HASH_KEY) != _content_sha256(manifest)
                or data != _json_bytes(stored)):
            raise CorruptFileError(self.manifest_path, f"not as rlbasins wrote it: its {MANIFEST_HASH_KEY} does "
                                   "not match its content (truncated or modified); the checkpoints are checked "
                                   "separately — restore the file, or train again with --overwrite")
        return manifest

    @staticmethod
    def seeds_with_status(manifest: dict[str, Any], *statuses: str) -> list[int]:
        """Seed indices whose manifest status is one of ``statuses``, in numeric order (the manifest's
        keys are strings, stored sorted as text: "10" before "2")."""
        return sorted(int(k) for k, seed in manifest["seeds"].items() if seed["status"] in statuses)

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        """Write the manifest with the sha256 of its content, so that any change to the file is detected."""
        atomic_write_json(self.manifest_path, {**manifest, MANIFEST_HASH_KEY: _content_sha256(manifest)})


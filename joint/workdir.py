"""Run directories: resumable, exactly-once reconstruction in chunks.

A run (``joint.runner.reconstruct_files``) cuts its inputs into **chunks** (a range of entries
of one input file, ``chunk_events`` long). Each chunk is fitted on its own — in this process or
on a Dask worker — and its output columns are written to one file of the run directory,
``<output>.work/chunks-<hash>/<input>-<first entry>-<stop>.npz``, through a temporary name and an
atomic rename. A chunk file therefore either exists whole or not at all, and a chunk fitted
twice (a worker killed after writing, a client restarted) writes the same file again: when
the outputs are merged every chunk is read exactly once, so every event appears exactly once.

``manifest.json`` in the run directory holds the configuration hash (:func:`config_hash`: the
reconstruction configuration, batch size, layout, chunking, the source code of the fitter and
the inputs' sizes and modification times), the inputs with their entry counts and the state of
every input (pending / done / failed, with the error). Rerunning the same command finds the
chunks already written and fits only the others; a run with a different configuration refuses
to mix its output with the old chunks (``RunError``: remove the directory or ``--overwrite``).

When every chunk of an output is written, the chunks are merged in input order into the ROOT
file ``reco`` tree (written as ``<output>.part`` and renamed), the run summary is written to
``<output>.run.json`` and the run directory is removed.

Layer: ``joint`` (numpy and the standard library only).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from joint.io.errors import RunError

__all__ = ["ChunkTask", "WorkDir", "config_hash", "plan_chunks", "atomic_write_bytes",
           "work_dir_for", "MANIFEST_VERSION"]

MANIFEST_VERSION = 1


@dataclasses.dataclass(frozen=True)
class ChunkTask:
    """One unit of work: entries ``start``..``stop`` of input ``input_index`` (file ``path``),
    merged into output ``output_index``."""
    input_index: int
    path: str
    start: int
    stop: int
    output_index: int = 0

    @property
    def name(self) -> str:
        return f"{self.input_index:05d}-{self.start:010d}-{self.stop:010d}.npz"

    @property
    def n_events(self) -> int:
        return self.stop - self.start

    def describe(self) -> str:
        return f"{self.path} entries {self.start}..{self.stop - 1}"


def plan_chunks(inputs, n_events, chunk_events: int, output_of=None) -> list:
    """Chunks of at most ``chunk_events`` entries of every input, in input order.
    ``output_of[i]``: the output index of input i (default 0: one output)."""
    tasks = []
    for i, (path, n) in enumerate(zip(inputs, n_events)):
        for start in range(0, n, chunk_events):
            tasks.append(ChunkTask(i, str(path), start, min(n, start + chunk_events),
                                   0 if output_of is None else output_of[i]))
    return tasks


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same directory and a rename
    (readers never see a partial file); the file gets the usual permissions (umask), not
    mkstemp's 0600, so a group-shared output directory stays readable."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _file_identity(path) -> dict:
    st = os.stat(path)
    return {"path": str(Path(path).resolve()), "bytes": st.st_size, "mtime_ns": st.st_mtime_ns}


def config_hash(settings: dict, inputs) -> str:
    """Hash of everything that determines a run's output: ``settings`` (JSON-serialisable:
    the configuration's repr, batch size, layout, chunking, calibration metadata, ...), the
    source code of the fitter (``joint.traced.source_hash``) and the inputs' identities (path,
    size, modification time)."""
    from joint.traced import source_hash

    blob = json.dumps({"settings": settings, "code": source_hash(),
                       "inputs": [_file_identity(p) for p in inputs]}, sort_keys=True,
                      default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def work_dir_for(output: Path) -> Path:
    """The run directory of an output file (``<output>.work``)."""
    output = Path(output)
    return output.with_name(output.name + ".work")


class WorkDir:
    """The run directory: manifest and chunk files (see module docstring)."""

    def __init__(self, root, config_hash: str):
        self.root = Path(root)
        # the chunk folder is named by the configuration hash: a task of an older run (a Dask
        # worker still busy when the run was restarted with --overwrite) cannot write into it
        self.chunks = self.root / f"chunks-{config_hash}"
        self.manifest_path = self.root / "manifest.json"

    # ------------------------------------------------------------------ manifest
    def read_manifest(self) -> dict | None:
        try:
            return json.loads(self.manifest_path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as err:
            raise RunError(f"{self.manifest_path}: unreadable run manifest ({err}); remove "
                           f"{self.root} to start the run again") from None

    def open(self, manifest: dict, overwrite: bool) -> int:
        """Create the run directory, or reuse it when its configuration hash equals
        ``manifest['config_hash']``; returns the number of chunk files already there.
        A different hash: RunError (``overwrite``: the old directory is removed)."""
        old = self.read_manifest() if self.root.exists() else None
        if old is not None and old.get("config_hash") != manifest["config_hash"]:
            if not overwrite:
                raise RunError(
                    f"{self.root} holds the unfinished run of a different configuration "
                    f"(hash {old.get('config_hash')}, this run {manifest['config_hash']}): "
                    "its chunks are not mixed with this run's; remove it or use --overwrite")
            old = None
        if old is None and self.root.exists():
            shutil.rmtree(self.root)
        self.chunks.mkdir(parents=True, exist_ok=True)
        if old is None:
            manifest = dict(manifest, created=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
            self.write_manifest(manifest)
        else:
            # keep the recorded state; the inputs and settings are the same (same hash)
            manifest = dict(manifest, created=old.get("created"), resumed=old.get("resumed", 0) + 1,
                            state=old.get("state", {}))
            self.write_manifest(manifest)
        return sum(1 for _ in self.chunks.glob("*.npz"))

    def matches(self, config_hash: str) -> bool:
        """The run directory exists and belongs to a run with this hash."""
        m = self.read_manifest() if self.root.exists() else None
        return m is not None and m.get("config_hash") == config_hash

    def write_manifest(self, manifest: dict) -> None:
        atomic_write_bytes(self.manifest_path, json.dumps(manifest, indent=1).encode())

    # ------------------------------------------------------------------ chunks
    def chunk_path(self, task: ChunkTask) -> Path:
        return self.chunks / task.name

    def is_done(self, task: ChunkTask) -> bool:
        return self.chunk_path(task).exists()

    def save_chunk(self, task: ChunkTask, cols: dict, meta: dict) -> None:
        """The output columns of one chunk (atomic: all or nothing)."""
        import io

        buf = io.BytesIO()
        np.savez(buf, __meta__=np.array(json.dumps(meta)), **cols)
        atomic_write_bytes(self.chunk_path(task), buf.getvalue())

    def load_chunk(self, task: ChunkTask) -> tuple[dict, dict]:
        with np.load(self.chunk_path(task), allow_pickle=False) as z:
            meta = json.loads(str(z["__meta__"]))
            cols = {k: z[k] for k in z.files if k != "__meta__"}
        if len(cols["event_id"]) != task.n_events:
            raise RunError(f"{self.chunk_path(task)}: {len(cols['event_id'])} rows, expected "
                           f"{task.n_events} ({task.describe()}); remove it to refit the chunk")
        return cols, meta

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

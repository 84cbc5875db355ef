"""Traced programs kept on disk, so that a second run neither traces nor compiles.

JAX's persistent compilation cache (``lhaaso_joint.cache``) skips XLA's compilation, but every
new process still *traces* the Python model into a program before it can look the compiled
program up: for the reconstruction that is most of a warm run (a 16-event KM2A file: ~18 of
35 s, issue 14). :func:`disk_jit` keeps the traced program too: the first call exports it
(``jax.export``, StableHLO) next to the compilation cache, later processes deserialize it and
call it, which goes straight to the compilation cache.

The on-disk key holds everything the program depends on: a ``name`` and a ``key`` string from
the caller (the configuration), the argument tree and shapes/dtypes, the JAX version, the
platform, ``jax_enable_x64``, and a hash of the source files of ``detectors/``, ``joint/`` and
``analysis/``
(a code change makes new programs; old files are simply never read again). Any failure to
export or to read a file falls back to the plain ``jax.jit`` call, with one warning.

Enabled when JAX's compilation cache directory is set (``jax_compilation_cache_dir``); the
programs go to its ``traced/`` subdirectory. Module imports: jax, numpy and the standard library.
"""
from __future__ import annotations

import hashlib
import os
import pickle
import warnings
from functools import lru_cache
from pathlib import Path

import jax
import numpy as np

__all__ = ["disk_jit", "traced_dir", "source_hash"]

_PACKAGES = ("detectors", "joint", "analysis")
_UNSEEN = object()


@lru_cache(maxsize=1)
def source_hash() -> str:
    """sha256 of the source files of the packages the traced programs come from."""
    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for pkg in _PACKAGES:
        for p in sorted((root / pkg).rglob("*.py")):
            h.update(str(p.relative_to(root)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()[:16]


def traced_dir() -> Path | None:
    """``<jax_compilation_cache_dir>/traced`` (None: no compilation cache, nothing stored)."""
    base = jax.config.jax_compilation_cache_dir
    if not base or os.environ.get("LHAASO_JOINT_TRACED_CACHE", "").lower() in ("off", "0"):
        return None
    return Path(base) / "traced"


class _DiskJit:
    def __init__(self, fn, name: str, key: str):
        self._jit = jax.jit(fn)
        self._fn = fn
        self._name = name
        self._key = key
        self._calls: dict = {}
        self._failed = False

    def _file(self, where: Path, in_tree, specs) -> Path:
        sig = repr((self._name, self._key, str(in_tree),
                    [(s.shape, str(s.dtype), bool(getattr(s, "weak_type", False))) for s in specs],
                    jax.__version__, jax.default_backend(), bool(jax.config.jax_enable_x64),
                    source_hash()))
        return where / f"{self._name}-{hashlib.sha256(sig.encode()).hexdigest()[:32]}.jaxexport"

    def _program(self, leaves, in_tree):
        """(callable on the flat leaves, output treedef), from disk or exported now."""
        specs = [jax.ShapeDtypeStruct(np.shape(x), jax.dtypes.result_type(x),
                                      weak_type=getattr(x, "weak_type", False)) for x in leaves]
        where = traced_dir()
        if where is None:
            return None
        path = self._file(where, in_tree, specs)
        if path.exists():
            try:
                blob = pickle.loads(path.read_bytes())
                exp = jax.export.deserialize(bytearray(blob["exported"]))
                return jax.jit(exp.call), blob["out_tree"]
            except Exception as err:  # a damaged or foreign file: export again
                warnings.warn(f"{path}: stored program not readable ({err}); tracing again")
        box = {}

        def flat(*xs):
            out = self._fn(*jax.tree_util.tree_unflatten(in_tree, xs))
            out_leaves, box["out_tree"] = jax.tree_util.tree_flatten(out)
            return out_leaves

        exp = jax.export.export(jax.jit(flat))(*specs)
        blob = pickle.dumps({"exported": bytes(exp.serialize()), "out_tree": box["out_tree"]})
        where.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(blob)
        tmp.replace(path)
        return jax.jit(exp.call), box["out_tree"]

    def __call__(self, *args):
        if self._failed:
            return self._jit(*args)
        leaves, in_tree = jax.tree_util.tree_flatten(args)
        sig = (in_tree, tuple((np.shape(x), str(jax.dtypes.result_type(x))) for x in leaves))
        prog = self._calls.get(sig, _UNSEEN)
        if prog is _UNSEEN:
            try:
                prog = self._program(leaves, in_tree)
            except Exception as err:  # e.g. a custom call jax.export does not serialise
                warnings.warn(f"{self._name}: traced program not stored ({type(err).__name__}: "
                              f"{err}); plain jit from now on")
                self._failed = True
                return self._jit(*args)
            self._calls[sig] = prog
        if prog is None:  # no cache directory when this shape was first seen: plain jit
            return self._jit(*args)
        call, out_tree = prog
        return jax.tree_util.tree_unflatten(out_tree, call(*leaves))


def disk_jit(fn, name: str, key: str):
    """``jax.jit(fn)`` whose traced program is stored on disk under (``name``, ``key``, the
    argument shapes, the code) and reused by later processes (module docstring). ``key`` must
    name everything ``fn`` closes over that changes the program (e.g. ``repr`` of a frozen
    configuration)."""
    return _DiskJit(fn, name, key)

"""JAX's persistent compilation cache, on by default for the API and the command line.

Almost all of the time of a small reconstruction run is XLA compilation (a 16-event
three-detector file: ~110 s cold); the compiled executables are stored on disk and reused by
every later run with the same shapes (BENCHMARKS.md, issue 14: cold vs warm). The directory is

1. the ``path`` argument of :func:`enable_compilation_cache`, else
2. ``$LHAASO_JOINT_CACHE_DIR`` (``off`` or an empty value disables the cache), else
3. ``$JAX_COMPILATION_CACHE_DIR`` (JAX's own setting), else
4. ``~/.cache/lhaaso-joint/jax`` (``$XDG_CACHE_HOME`` respected).

The cache is keyed by the program, the JAX/XLA version, the device and the flags: a stale entry
is never used for a different program. It can be deleted at any time.
"""
from __future__ import annotations

import os
from pathlib import Path

import jax

__all__ = ["enable_compilation_cache", "cache_dir"]

#: compilations faster than this are not written to disk [s] (small kernels are cheaper to
#: recompile than to read back)
MIN_COMPILE_TIME_S = 0.3


def cache_dir(path=None) -> Path | None:
    """The directory the cache uses (None: disabled), by the rules of the module docstring."""
    if path is not None:
        return Path(path).expanduser()
    env = os.environ.get("LHAASO_JOINT_CACHE_DIR")
    if env is not None:
        return None if env.strip().lower() in ("", "off", "0", "none") else Path(env).expanduser()
    if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return Path(os.environ["JAX_COMPILATION_CACHE_DIR"]).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "lhaaso-joint" / "jax"


def enable_compilation_cache(path=None, min_compile_time_s: float = MIN_COMPILE_TIME_S):
    """Turn on JAX's persistent compilation cache in ``cache_dir(path)``; returns the directory
    (None when disabled or not writable: compilation then simply is not cached)."""
    where = cache_dir(path)
    if where is None:
        return None
    try:
        where.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    jax.config.update("jax_compilation_cache_dir", str(where))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", float(min_compile_time_s))
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return where

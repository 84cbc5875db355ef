"""Shared test configuration.

float64 is enabled for the whole test session so that gradient checks and reference
comparisons are done in double precision; production code paths that must be float32
cast explicitly and their tests say so.
"""
from pathlib import Path

import jax
import pytest

jax.config.update("jax_enable_x64", True)

# the persistent compilation cache and the stored traced programs (lhaaso_joint.cache,
# joint.traced), as users get them: programs compiled by one test module (or one xdist worker)
# are read back by the others instead of compiled again
from lhaaso_joint.cache import enable_compilation_cache  # noqa: E402

enable_compilation_cache()

import gc
import os


def _find_shared_data() -> Path:
    """``$LHAASO_SHARED_DATA``, else ``../shared/data`` beside the checkout, else /work/shared/data."""
    cands = [os.environ.get("LHAASO_SHARED_DATA"),
             Path(__file__).resolve().parents[1].parent / "shared" / "data",
             "/work/shared/data"]
    for c in cands:
        if c and (Path(c) / "lhaaso").is_dir():
            return Path(c)
    return Path(cands[1])


SHARED_DATA = _find_shared_data()


@pytest.fixture(autouse=True, scope="module")
def _free_compiled_programs():
    """Drop every compiled XLA program after each test module. Each CPU executable holds ~30
    memory maps of JIT code; a whole session of tests compiles a few thousand programs and
    passed the kernel's vm.max_map_count (65530), after which XLA segfaulted inside a later
    compilation (CI, issue 14). Programs needed again come back from the persistent
    compilation cache (lhaaso_joint.cache) or are recompiled."""
    yield
    jax.clear_caches()
    gc.collect()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path to the reference data written by others (``../shared/data``); skip if absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"reference data folder {SHARED_DATA} not present")
    return SHARED_DATA

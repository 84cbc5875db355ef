"""joint.traced: a program traced in one process is stored on disk and called by the next
without tracing the Python function again (the warm start of issue 14)."""
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = textwrap.dedent("""
    import json, sys
    import jax, jax.numpy as jnp
    jax.config.update("jax_compilation_cache_dir", sys.argv[1])
    from detectors.shower import Shower
    from joint.traced import disk_jit
    traces = []

    def f(s, x):
        traces.append(1)   # runs only while tracing
        return {"r": s._replace(core_x=s.core_x + x.sum()), "n": jnp.sum(x ** 2)}

    g = disk_jit(f, "test_fn", "v1")
    s = Shower.make(dtype=jnp.float32, core_x=jnp.arange(3.0))
    out = g(s, jnp.ones(4))
    out2 = g(s, jnp.ones(4))           # same shapes: no new trace in this process either
    print(json.dumps({"traces": len(traces), "core_x": [float(v) for v in out["r"].core_x],
                      "n": float(out["n"]), "type": type(out["r"]).__name__,
                      "same": bool(jnp.all(out2["r"].core_x == out["r"].core_x))}))
""")


def _run(cache):
    import json
    res = subprocess.run([sys.executable, "-c", CHILD, str(cache)], capture_output=True,
                         text=True, cwd=ROOT, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    return json.loads(res.stdout.strip().splitlines()[-1]), res.stderr


def test_second_process_calls_the_stored_program_without_tracing(tmp_path):
    first, _ = _run(tmp_path)
    assert first["traces"] == 1 and first["same"]
    stored = list((tmp_path / "traced").glob("test_fn-*.jaxexport"))
    assert len(stored) == 1
    second, err = _run(tmp_path)
    assert second["traces"] == 0, "the second process traced the function again"
    assert second["core_x"] == first["core_x"] == [4.0, 5.0, 6.0]
    assert second["n"] == first["n"] == 4.0 and second["type"] == "Shower"
    # a damaged file is traced again (with a warning), never a wrong answer
    stored[0].write_bytes(b"not a program")
    third, err = _run(tmp_path)
    assert third["traces"] == 1 and third["core_x"] == first["core_x"]
    assert "not readable" in err

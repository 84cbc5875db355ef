"""The file runner: input event files (own schema or G4KM2A) -> the ``reco`` tree, one output
row per input event in input order (failed fits included, with their status).

A run goes in four steps, and nothing is fitted before the first three are through:

1. **arguments**: batch size, output path (not an input, a writable place), detectors — a
   one-line ``RunError`` otherwise;
2. **whole inputs validated** (``joint.io.validate``): every entry of every file (NaN, unknown
   ids, jagged mismatches, fractional ids: ``EventFileError`` naming the file, branch and the
   entry counted in the file); warnings with counts for zero-hit events, duplicated event ids
   and negative charges;
3. **plan**: the inputs cut into chunks (``joint.workdir``: resumable, exactly once), the batch
   size chosen from the memory budget when not given (:func:`auto_batch_size`);
4. **fit** every chunk not already in the run directory — here, reading the next chunk while
   the current one is fitted, or on a Dask cluster (an ``executor``, ``lhaaso_joint.farm``) —
   then merge the chunks into the output (``<output>.part`` renamed) with a run summary
   ``<output>.run.json``.

Every chunk is padded to the batch size so that one compilation serves the whole run.

Layer: ``joint``. What lies above it comes in as arguments: per-event observables
(``analysis.observables``), the per-event set-up (a :class:`SetupProvider`, e.g. the
calibration's ``calib.provider.CalibrationProvider``) and the executor (``lhaaso_joint.farm``).
``lhaaso_joint.api`` wires them.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import os
import resource
import socket
import time
from functools import lru_cache
from pathlib import Path
from typing import Protocol

import numpy as np
from tqdm import tqdm

from detectors import registry
from joint.config import (DEFAULT_MAX_MEMORY_GB, ReconstructionConfig, auto_batch_size,
                          detector_setup, estimated_peak_mb)
from joint.io import file_kind, num_entries, read_file
from joint.io.columns import branch_types, check
from joint.io.errors import EventFileError, RunError, open_tree
from joint.io.lhevent import read_lhevent
from joint.io.schema import TREE, TRUTH, presence, read_events, to_event_batch
from joint.pipeline import reconstruct_records
from joint.sky import sky_columns
from joint.workdir import ChunkTask, WorkDir, atomic_write_bytes, config_hash, plan_chunks, \
    work_dir_for

__all__ = ["reconstruct_files", "detectors_in_file", "SetupProvider", "RunContext",
           "fit_chunk", "LocalExecutor", "check_output", "check_batch_size", "peak_rss_mb"]

#: chunks (the unit of resume and of a cluster task) hold this many batches
CHUNK_BATCHES = 8
#: the run manifest's state is written at most this often [s] (and at the end)
MANIFEST_EVERY_S = 5.0


def _key_branches(spec) -> list:
    return [f"{b.name}_{b.key}" for b in spec.blocks]


def detectors_in_file(path) -> tuple:
    """The registered detectors with hit branches in an input file (own schema or G4KM2A)."""
    if file_kind(path) == "own":
        fin, tree = open_tree(path, TREE)
        with fin:
            keys = set(tree.keys())
    else:
        keys = set(read_lhevent(path))
    return tuple(s.name for s in registry.specs() if any(k in keys for k in _key_branches(s)))


def _check_inputs(inputs, detectors, cfg):
    """Every input file has hits of every detector to fit (and truth when the geometry comes
    from it) — an EventFileError naming the file and the missing branch."""
    for path in inputs:
        present = detectors_in_file(path)
        for d in detectors:
            if d not in present:
                raise EventFileError(path, _key_branches(registry.get(d))[0],
                                     f"is missing: the run fits {d.upper()} "
                                     f"(detectors {', '.join(sorted(detectors))})")
        if cfg.truth_fields and cfg.geometry_from == "truth" and file_kind(path) == "own":
            fin, tree = open_tree(path, TREE)
            with fin:
                keys = set(tree.keys())
            for f in cfg.truth_fields:
                if f"true_{f}" not in keys:
                    raise EventFileError(path, f"true_{f}", "is missing: the geometry is fixed "
                                         "from the truth (use --geometry-from km2a or wcda)")


def check_batch_size(batch_size, name="--batch-size") -> None:
    """RunError unless ``batch_size`` is a positive integer (or "auto")."""
    if isinstance(batch_size, str) and batch_size == "auto":
        return
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) \
            or batch_size < 1:
        raise RunError(f"{name} must be a positive integer (or auto), got {batch_size!r}")


def check_output(output, inputs) -> None:
    """RunError when ``output`` is one of the inputs, or cannot be written: its parent is a
    file, or a directory without write permission (the parent is created when missing)."""
    out = Path(output)
    for p in inputs:
        p = Path(p)
        if out.resolve() == p.resolve() or (out.exists() and p.exists() and os.path.samefile(out, p)):
            raise RunError(f"the output {out} is the input {p}: the input would be replaced; "
                           "choose another output path")
    parent = out.parent
    for anc in [parent, *parent.parents]:
        if anc.exists():
            if not anc.is_dir():
                raise RunError(f"cannot write {out}: {anc} is a file, not a directory")
            if not os.access(anc, os.W_OK | os.X_OK):
                raise RunError(f"cannot write {out}: no write permission in {anc}")
            break
    if out.is_dir():
        raise RunError(f"the output {out} is a directory; give a file name (e.g. {out}/reco.root)")


def peak_rss_mb() -> float:
    """Peak resident memory of this process [MB] (``getrusage``)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# --------------------------------------------------------------------------------------------
# one chunk (what a worker runs)
# --------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class RunContext:
    """Everything a worker needs to fit a chunk (picklable: sent to Dask workers)."""
    cfg: ReconstructionConfig
    needed: tuple
    layout_config: str
    batch_size: int
    work_root: str
    config_hash: str
    frame_rotation_deg: float = 0.0
    observables: object = None
    setups: object = None


@lru_cache(maxsize=4)
def _setup(needed: tuple, layout_config: str):
    return detector_setup(set(needed), layout_config)


@lru_cache(maxsize=1)
def _lhevent_records(path: str, layouts_key):
    return read_file(path, **dict(layouts_key))


def read_chunk(task: ChunkTask, ctx: RunContext) -> dict:
    """The records of a chunk (own schema: only its entries are read)."""
    layouts = _setup(ctx.needed, ctx.layout_config)[0]
    if file_kind(task.path) == "own":
        return read_events(task.path, layouts, entry_start=task.start, entry_stop=task.stop)
    rec = _lhevent_records(task.path, tuple(sorted(layouts.items(), key=lambda kv: kv[0])))
    return {k: v[task.start:task.stop] for k, v in rec.items()}


def fit_records(task: ChunkTask, rec: dict, ctx: RunContext) -> dict:
    """Fit a chunk's records and write its columns to the run directory; returns the chunk's
    metadata (events, status counts, calibration entries used, seconds, peak memory, host)."""
    t0 = time.perf_counter()
    cfg = ctx.cfg
    layouts, geometry, response = _setup(ctx.needed, ctx.layout_config)
    used = {}
    # dense blocks one batch at a time (a chunk of 8 batches converted at once held
    # 8 x (B, 6404) KM2A blocks: +0.8 GB at batch 512)
    n, parts = len(rec["event_id"]), []
    for a in range(0, n, ctx.batch_size):
        sub = {k: v[a:a + ctx.batch_size] for k, v in rec.items()}
        if ctx.setups is None:
            batch = to_event_batch(sub, layouts, source=task.path, as_jax=False,
                                   entry_offset=task.start + a)
            parts.append(reconstruct_records(batch, geometry, response, cfg, ctx.batch_size,
                                             ctx.observables))
        else:
            parts.append(_reconstruct_with_setups(sub, task.path, ctx.setups, set(ctx.needed),
                                                  layouts, cfg, ctx.batch_size,
                                                  ctx.observables, used))
    cols = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    cols["run"] = np.asarray(rec["run"], np.int32)
    cols["event_id"] = np.asarray(rec["event_id"], np.int64)
    cols["time_mjd"] = np.asarray(rec["time_mjd"], np.float64)
    with np.errstate(invalid="ignore"):
        cols.update(sky_columns(cols, cols["time_mjd"], ctx.frame_rotation_deg))
    flags = presence()
    for t in (*TRUTH, *flags):
        if t in rec:
            cols[t] = np.asarray(rec[t], np.int8 if t in flags else np.float64)
    check(cols, task.path)
    meta = {"events": task.n_events,
            "status_counts": np.bincount(cols["status"], minlength=4)[:4].tolist(),
            "calibration": used, "seconds": time.perf_counter() - t0,
            "peak_rss_mb": peak_rss_mb(), "host": socket.gethostname(), "pid": os.getpid()}
    WorkDir(ctx.work_root, ctx.config_hash).save_chunk(task, cols, meta)
    return meta


def fit_chunk(task: ChunkTask, ctx: RunContext) -> dict:
    """Read, fit and store one chunk (the task a Dask worker runs)."""
    return fit_records(task, read_chunk(task, ctx), ctx)


class LocalExecutor:
    """Fit the chunks in this process, one after the other, reading the next chunk in a thread
    while the current one is fitted (the fit releases the GIL)."""

    def map_chunks(self, tasks, ctx):
        if not tasks:
            return
        with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="read") as pool:
            pending = pool.submit(read_chunk, tasks[0], ctx)
            for i, task in enumerate(tasks):
                rec = pending.result()
                if i + 1 < len(tasks):
                    pending = pool.submit(read_chunk, tasks[i + 1], ctx)
                yield task, fit_records(task, rec, ctx)

    def describe(self) -> str:
        return "this process"


# --------------------------------------------------------------------------------------------
# the run
# --------------------------------------------------------------------------------------------
def _resolve_detectors(inputs, cfg, detectors):
    if isinstance(detectors, str) and detectors == "auto":
        dets = detectors_in_file(inputs[0])
        if not dets:
            raise EventFileError(inputs[0], "/".join(_key_branches(registry.specs()[0])),
                                 "has no hits of a registered detector "
                                 f"({', '.join(registry.names())})")
        return dataclasses.replace(cfg, detectors=dets)
    if not isinstance(detectors, str):
        return dataclasses.replace(cfg, detectors=tuple(detectors))
    return cfg


def _outputs(output, inputs):
    """(output paths, output index of each input): one file, or — ``output`` an existing
    directory or ending in '/' — one ``<stem>.reco.root`` per input in that directory."""
    text = str(output)
    if text.endswith(os.sep) or Path(output).is_dir():
        d = Path(output)
        if d.exists() and not d.is_dir():
            raise RunError(f"cannot write into {d}: it is a file, not a directory")
        names = [Path(p).stem + ".reco.root" for p in inputs]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise RunError(f"inputs with the same name would write the same output in {d} "
                           f"({sorted(dup)[0]}); give one output file instead")
        return [d / n for n in names], list(range(len(inputs)))
    return [Path(output)], [0] * len(inputs)


def _done_summary(path: Path, chash: str):
    """The stored summary of a finished output with this configuration hash, or None."""
    run_json = path.with_name(path.name + ".run.json")
    if not path.exists() or not run_json.exists():
        return None
    try:
        s = json.loads(run_json.read_text())
    except (OSError, ValueError):
        return None
    return s if s.get("config_hash") == chash else None


def reconstruct_files(inputs, output, cfg: ReconstructionConfig = ReconstructionConfig(),
                      batch_size="auto", layout_config="full", progress=True, log=print,
                      detectors="config", frame_rotation_deg=0.0, observables=None,
                      setups=None, max_memory_gb=None, chunk_events=None, overwrite=False,
                      executor=None, validate=True):
    """Reconstruct input files into ``output`` (tree ``reco``): resumable, memory-bounded,
    on this machine or a cluster.

    output : a ROOT file (every input's events, in input order), or a directory (an existing
        one, or a path ending in '/'): one ``<input stem>.reco.root`` per input.
    batch_size : events fitted at once; "auto" (default): from ``max_memory_gb`` and the
        detectors (:func:`joint.config.auto_batch_size`).
    detectors : "config" (``cfg.detectors``), "auto" (every registered detector with hits in the
        first input file, fitted jointly) or a tuple of names.
    frame_rotation_deg : angle of the array's +x axis from true East (``joint.sky``) for the sky
        columns ``ra``, ``dec``, ``ra_dec_err``, ``glon``, ``glat`` [deg] at each event's time.
    observables : per-event observables at the fitted shower (``reconstruct_batch``'s argument;
        the API and the CLI pass ``analysis.observables.observables``); None: fit columns only.
    setups : a :class:`SetupProvider` giving each event's layout, geometry and Response (e.g.
        ``calib.provider.CalibrationProvider``); the output then has a column ``calib_<det>``
        per fitted detector (−1 = nominal) and a string ``calibration``. None: nominal.
    max_memory_gb : memory budget of one process for ``batch_size="auto"`` (default
        ``joint.config.DEFAULT_MAX_MEMORY_GB``).
    chunk_events : entries per chunk, the unit of resume and of a cluster task (default
        ``CHUNK_BATCHES`` batches).
    overwrite : replace a finished output, and discard an unfinished run directory of a
        different configuration (default: such a directory stops the run with a RunError).
    executor : where the chunks are fitted: None (:class:`LocalExecutor`: this process) or an
        object with ``map_chunks(tasks, ctx)`` yielding (task, metadata or exception) as they
        finish (``lhaaso_joint.farm.DaskExecutor``), or a function returning one (called after
        the inputs are validated, so that a cluster is not started for bad inputs).

    Resume: the chunks are written to ``<output>.work`` (``joint.workdir``); rerunning the same
    call fits only the chunks not yet written (a killed run loses at most the chunks in
    flight), and a finished output of the same configuration is returned without refitting.
    Returns a summary dict (events, seconds, events/s, status counts, detectors, batch size,
    chunks fitted/reused, peak memory [MB], input warnings, and with ``setups``
    ``calibration`` {detector: {entry name or "nominal": events}}); it is also written to
    ``<output>.run.json``. Inputs are never modified.
    """
    t_start = time.perf_counter()
    # absolute paths: Dask workers (a farm job's scratch directory) read and write them too
    inputs = [os.path.abspath(p) for p in ([inputs] if isinstance(inputs, (str, Path))
                                           else inputs)]
    if not inputs:
        raise RunError("no input files given")
    seen = {}
    for p in inputs:
        key = str(Path(p).resolve())
        if key in seen:
            raise RunError(f"the input {p} is given twice (its events would be fitted twice)")
        seen[key] = p
    check_batch_size(batch_size)
    if chunk_events is not None:
        check_batch_size(chunk_events, "chunk_events")
    if max_memory_gb is not None and not (np.isfinite(max_memory_gb) and max_memory_gb > 0):
        raise RunError(f"--max-memory must be a positive number of GB, got {max_memory_gb!r}")
    outputs, output_of = _outputs(output, inputs)
    outputs = [Path(os.path.abspath(o)) for o in outputs]
    for out in outputs:
        check_output(out, inputs)
    log = log or (lambda *a, **k: None)

    # 2. every input whole, before any fit
    cfg = _resolve_detectors(inputs, cfg, detectors)
    needed = set(cfg.detectors)
    if cfg.truth_fields and cfg.geometry_from != "truth":
        needed.add(cfg.geometry_from)
    needed = tuple(sorted(needed))
    layouts = _setup(needed, layout_config)[0]
    _check_inputs(inputs, needed, cfg)
    reports = []
    if validate:
        from joint.io.validate import validate_inputs

        reports = validate_inputs(inputs, layouts, progress=progress)
        n_events = [r.n_events for r in reports]
        for r in reports:
            for w in r.warnings():
                log(f"warning: {w}")
    else:
        n_events = [num_entries(p) for p in inputs]
    if setups is not None:
        setups.check(inputs, needed)

    # 3. plan
    if batch_size == "auto":
        batch_size = auto_batch_size(needed, max_memory_gb)
        budget = DEFAULT_MAX_MEMORY_GB if max_memory_gb is None else max_memory_gb
        peak = estimated_peak_mb(needed, batch_size)
        if peak > 1024.0 * budget:
            log(f"warning: {'+'.join(needed)} needs about {peak / 1024:.1f} GB even at the "
                f"smallest batch ({batch_size}), more than --max-memory {budget:g} GB")
    chunk = int(chunk_events or batch_size * CHUNK_BATCHES)
    tasks = plan_chunks(inputs, n_events, chunk, output_of)
    settings = {"cfg": repr(cfg), "needed": needed, "batch_size": int(batch_size),
                "layout": layout_config, "chunk_events": chunk,
                "frame_rotation_deg": float(frame_rotation_deg),
                "observables": getattr(observables, "__qualname__", repr(observables)),
                "setups": None if setups is None else setups.metadata(),
                "outputs": [str(o) for o in outputs]}
    chash = config_hash(settings, inputs)
    stored = [_done_summary(o, chash) for o in outputs]
    work = WorkDir(work_dir_for(outputs[0] if len(outputs) == 1 else
                                outputs[0].parent / ".lhaaso-joint"), chash)
    if all(s is not None for s in stored) and not overwrite:
        log(f"{', '.join(map(str, outputs))}: finished with this configuration; not refitted")
        if work.matches(chash):  # killed after the merge, before the clean-up
            work.remove()
        return _combined(stored, chash, cfg, batch_size, t_start)
    for out, s in zip(outputs, stored):
        if out.exists() and s is None and not overwrite:
            raise RunError(f"{out} exists (written with another configuration or inputs); "
                           "use --overwrite (overwrite=True) to replace it")
    manifest = {"version": 1, "config_hash": chash, "settings": settings,
                "inputs": [{"path": p, "events": n, "output": str(outputs[o])}
                           for p, n, o in zip(inputs, n_events, output_of)],
                "state": {}}
    if executor is None:
        executor = LocalExecutor()
    elif not hasattr(executor, "map_chunks"):  # a factory: start the cluster only now
        executor = executor()
    n_reused = work.open(manifest, overwrite)
    todo = [t for t in tasks if not work.is_done(t)]
    if n_reused:
        log(f"resuming {work.root}: {len(tasks) - len(todo)} of {len(tasks)} chunks already "
            "fitted")
    ctx = RunContext(cfg, needed, layout_config, int(batch_size), str(work.root), chash,
                     float(frame_rotation_deg), observables, setups)

    # 4. fit what is missing, then merge
    total = sum(n_events)
    bar = tqdm(total=total, initial=total - sum(t.n_events for t in todo), unit="ev",
               disable=not progress, desc="reconstruct " + "+".join(cfg.detectors))
    failed, fitted, t_fit = {}, 0, time.perf_counter()
    state = _State(manifest, tasks, todo, work)
    try:
        for task, result in executor.map_chunks(todo, ctx):
            if isinstance(result, BaseException):
                failed[task.name] = f"{task.describe()}: {type(result).__name__}: {result}"
                state.failed(task, failed[task.name])
            else:
                fitted += task.n_events
                state.done(task)
                bar.update(task.n_events)
                bar.set_postfix(ev_s=f"{fitted / (time.perf_counter() - t_fit):.1f}")
            state.write()
    finally:
        bar.close()
        state.write(force=True)
    summaries = []
    for o, out in enumerate(outputs):
        mine = [t for t in tasks if t.output_index == o]
        if any(t.name in failed for t in mine):
            continue
        summaries.append(_merge(out, mine, work, ctx, chash, reports, t_start, fitted,
                                len(tasks) - len(todo), executor))
    if failed:
        first = next(iter(failed.values()))
        raise RunError(f"{len(failed)} of {len(tasks)} chunks failed (first: {first}); the "
                       f"finished chunks are kept in {work.root}: rerun the same command to "
                       "retry the failed ones")
    work.remove()
    s = _combined(summaries, chash, cfg, batch_size, t_start)
    if setups is not None and log:
        for d, counts in s.get("calibration", {}).items():
            log(f"{d.upper()} calibration: " + ", ".join(
                f"{name!r} for {k} events" for name, k in counts.items())
                + f" ({setups.describe()})")
    return s


def _combined(summaries, chash, cfg, batch_size, t_start) -> dict:
    """The run summary: the output's, or with several outputs (``-o DIR/``) their totals and
    the list of per-output summaries."""
    if len(summaries) == 1:
        return summaries[0]
    s = {"outputs": summaries, "config_hash": chash,
         "events": sum(x["events"] for x in summaries),
         "status_counts": np.sum([x["status_counts"] for x in summaries], 0).tolist(),
         "detectors": list(cfg.detectors), "batch_size": int(batch_size),
         "peak_rss_mb": max(x.get("peak_rss_mb", float("nan")) for x in summaries),
         "chunks": sum(x["chunks"] for x in summaries),
         "calibration": {}}
    for x in summaries:
        for d, counts in x.get("calibration", {}).items():
            for name, k in counts.items():
                s["calibration"].setdefault(d, {})
                s["calibration"][d][name] = s["calibration"][d].get(name, 0) + k
    if not s["calibration"]:
        del s["calibration"]
    s["seconds"] = time.perf_counter() - t_start
    s["events_per_s"] = s["events"] / max(s["seconds"], 1e-9)
    return s


class _State:
    """The manifest's per-input state (pending / done / failed, chunks done), kept up to date
    incrementally and written at most every :data:`MANIFEST_EVERY_S` seconds (a farm run has
    ~10⁵ chunks: neither a directory scan nor a manifest write per chunk)."""

    def __init__(self, manifest, tasks, todo, work):
        self.manifest, self.work, self.last = manifest, work, 0.0
        self.total, self.left = {}, {}
        for t in tasks:
            self.total[t.path] = self.total.get(t.path, 0) + 1
        for t in todo:
            self.left[t.path] = self.left.get(t.path, 0) + 1
        state = manifest.setdefault("state", {})
        for path, n in self.total.items():
            self._set(path, state)

    def _set(self, path, state=None):
        state = self.manifest["state"] if state is None else state
        if state.get(path, {}).get("status") == "failed" and self.left.get(path, 0):
            return
        left = self.left.get(path, 0)
        state[path] = {"status": "done" if left == 0 else "pending",
                       "chunks_done": self.total[path] - left, "chunks": self.total[path]}

    def done(self, task):
        self.left[task.path] -= 1
        self._set(task.path)

    def failed(self, task, error):
        self.manifest["state"][task.path] = {"status": "failed", "error": error}

    def write(self, force=False):
        if force or time.monotonic() - self.last > MANIFEST_EVERY_S:
            self.work.write_manifest(self.manifest)
            self.last = time.monotonic()


def _merge(out: Path, tasks, work: WorkDir, ctx: RunContext, chash, reports, t_start, fitted,
           n_reused, executor) -> dict:
    """The chunks of one output, in order, into ``out`` (``.part`` renamed) and its summary."""
    import uproot

    tmp = out.with_name(out.name + ".part")
    out.parent.mkdir(parents=True, exist_ok=True)
    status_counts, used, n, rss, hosts = np.zeros(4, int), {}, 0, [peak_rss_mb()], set()
    try:
        with uproot.recreate(tmp) as fout:
            tree, types = None, None
            for task in tasks:
                cols, meta = work.load_chunk(task)
                if tree is None:  # the declared schema (joint/io/columns.py)
                    types = branch_types(cols, where=str(task.path))
                    tree = fout.mktree("reco", types)
                else:
                    check(cols, task.path)
                tree.extend({k: np.asarray(v, t[0] if isinstance(t, tuple) else t)
                             for k, v in cols.items() for t in (types[k],)})
                status_counts += np.asarray(meta["status_counts"])
                n += meta["events"]
                rss.append(meta.get("peak_rss_mb", 0.0))
                hosts.add(f"{meta.get('host')}:{meta.get('pid')}")
                for d, counts in meta.get("calibration", {}).items():
                    for name, k in counts.items():
                        used.setdefault(d, {})
                        used[d][name] = used[d].get(name, 0) + k
            if ctx.setups is not None:
                fout["calibration"] = ctx.setups.metadata()
        with open(tmp, "rb+") as fh:  # on disk before the chunks it replaces are removed
            os.fsync(fh.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    seconds = time.perf_counter() - t_start
    summary = {"output": str(out), "events": n, "seconds": seconds,
               "events_per_s": n / max(seconds, 1e-9), "events_fitted_now": fitted,
               "chunks": len(tasks), "chunks_reused": n_reused,
               "status_counts": status_counts.tolist(), "detectors": list(ctx.cfg.detectors),
               "batch_size": ctx.batch_size, "config_hash": chash,
               "peak_rss_mb": float(max(rss)), "workers": sorted(hosts),
               "executor": executor.describe(),
               "inputs": sorted({t.path for t in tasks}),
               "warnings": [w for r in reports if str(r.path) in {t.path for t in tasks}
                            for w in r.warnings()]}
    if ctx.setups is not None:
        summary["calibration"] = used
    # the summary first, then the output under its name: an output is never there without
    # its summary (a kill in between leaves the chunks, and the next run merges them again)
    atomic_write_bytes(out.with_name(out.name + ".run.json"),
                       json.dumps(summary, indent=1).encode())
    os.replace(tmp, out)
    return summary


class SetupProvider(Protocol):
    """Where a run gets each event's detector set-up (what ``calib`` supplies: joint does not
    import calib). ``calib.provider.CalibrationProvider`` implements it from a calibration
    database."""

    def check(self, inputs, detectors) -> None:
        """Before any fit: raise (naming the file) if some event cannot be set up."""

    def setups(self, time_mjd, detectors, default_layouts) -> list:
        """Groups of events with one set-up each: objects with ``index`` (event indices),
        ``entries`` ({detector: entry name or None for nominal}), ``layouts``, ``geometries``,
        ``responses`` ({detector: ...})."""

    def entry_index(self, name) -> int:
        """The index written in ``calib_<det>`` for entry ``name`` (None: −1, nominal)."""

    def metadata(self) -> str:
        """The ``calibration`` string stored in the output file (JSON)."""

    def describe(self) -> str:
        """One line for the log (e.g. the database path)."""


def _reconstruct_with_setups(rec, path, setups, detectors, layouts, cfg, batch_size, observables,
                             used):
    """Output columns of one chunk of records, each group of events (same set-up) converted with
    its period's layout and fitted with its geometry and Response."""
    n = len(rec["event_id"])
    cols = None
    for setup in setups.setups(rec["time_mjd"], sorted(detectors), layouts):
        sub = {k: v[setup.index] for k, v in rec.items()}
        batch = to_event_batch(sub, setup.layouts, source=path, as_jax=False)
        out = reconstruct_records(batch, setup.geometries, setup.responses, cfg, batch_size,
                                  observables)
        m = setup.index.size
        if cols is None:
            cols = {k: np.zeros((n,) + np.shape(v)[1:], np.asarray(v).dtype) for k, v in out.items()}
            for d in cfg.detectors:
                cols[f"calib_{d}"] = np.full(n, -1, np.int32)
        for k, v in out.items():
            cols[k][setup.index] = np.asarray(v)[:m]
        for d in cfg.detectors:
            name = setup.entries.get(d)
            cols[f"calib_{d}"][setup.index] = -1 if name is None else setups.entry_index(name)
            key = "nominal" if name is None else name
            used.setdefault(d, {})
            used[d][key] = used[d].get(key, 0) + m
    return cols

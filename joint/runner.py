"""The file runner: input event files (own schema or G4KM2A) -> the ``reco`` tree, streamed in
chunks through ``joint.pipeline``, one output row per input event in input order (failed fits
included, with their status). Every chunk is padded to ``batch_size`` so that one compilation
serves the whole run.

Layer: ``joint``. What lies above it comes in as arguments: per-event observables
(``analysis.observables``) and the per-event set-up (a :class:`SetupProvider`, e.g. the
calibration's ``calib.provider.CalibrationProvider``). ``lhaaso_joint.api`` wires them.
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Protocol

import numpy as np
import uproot
from tqdm import tqdm

from detectors import registry
from joint.config import ReconstructionConfig, detector_setup
from joint.io import file_kind, read_file
from joint.io.columns import branch_types, check
from joint.io.errors import EventFileError, open_tree
from joint.io.lhevent import read_lhevent
from joint.io.schema import TREE, TRUTH, presence, read_events, to_event_batch
from joint.pipeline import reconstruct_records
from joint.sky import sky_columns

__all__ = ["reconstruct_files", "detectors_in_file", "SetupProvider"]


def _iter_chunks(path, layouts, batch_size):
    """Yield (records_chunk) of at most batch_size events from an input file (streamed)."""
    kind = file_kind(path)
    if kind == "own":
        with uproot.open(path) as f:
            n = f[TREE].num_entries
        if n == 0:
            read_events(path, layouts)  # raises the empty-file error
        for start in range(0, n, batch_size):
            yield read_events(path, layouts, entry_start=start, entry_stop=min(n, start + batch_size))
    else:
        rec = read_file(path, **layouts)
        n = len(rec["event_id"])
        for start in range(0, n, batch_size):
            yield {k: v[start:start + batch_size] for k, v in rec.items()}


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
    """Before any fitting: every input file has hits of every detector to fit (and truth when
    the geometry comes from it) — an EventFileError naming the file and the missing branch."""
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


def reconstruct_files(inputs, output, cfg: ReconstructionConfig = ReconstructionConfig(),
                      batch_size=512, layout_config="full", progress=True, log=print,
                      detectors="config", frame_rotation_deg=0.0, observables=None,
                      setups=None):
    """Reconstruct input files into ``output`` (tree ``reco``), streaming in chunks.

    detectors : "config" (``cfg.detectors``), "auto" (every registered detector with hits in the
        first input file, fitted jointly) or a tuple of names.
    frame_rotation_deg : angle of the array's +x axis from true East (``joint.sky``) for the sky
        columns ``ra``, ``dec``, ``ra_dec_err``, ``glon``, ``glat`` [deg] at each event's time.
    observables : per-event observables at the fitted shower (``reconstruct_batch``'s argument;
        the API and the CLI pass ``analysis.observables.observables``); None: fit columns only.
    setups : a :class:`SetupProvider` giving each event's layout, geometry and Response (e.g.
        ``calib.provider.CalibrationProvider``: the calibration valid at the event's time); the
        output then has a column ``calib_<det>`` per fitted detector (the provider's index of the
        entry used, −1 = nominal) and a string ``calibration`` (the provider's metadata). None:
        the nominal set-up of ``layout_config``.
    Returns a summary dict (events, seconds, events/s, status counts, detectors, and with
    ``setups`` ``calibration`` {detector: {entry name or "nominal": events}}).

    The output is written to ``output.part`` and renamed when complete: an interrupted run never
    leaves a truncated file under the final name, and no input is modified.
    """
    if isinstance(detectors, str) and detectors == "auto":
        dets = detectors_in_file(inputs[0])
        if not dets:
            raise EventFileError(inputs[0], "/".join(_key_branches(registry.specs()[0])),
                                 "has no hits of a registered detector "
                                 f"({', '.join(registry.names())})")
        cfg = dataclasses.replace(cfg, detectors=dets)
    elif not isinstance(detectors, str):
        cfg = dataclasses.replace(cfg, detectors=tuple(detectors))
    needed = set(cfg.detectors)
    if cfg.truth_fields and cfg.geometry_from != "truth":
        needed.add(cfg.geometry_from)
    layouts, geometry, response = detector_setup(needed, layout_config)
    _check_inputs(inputs, needed, cfg)
    used = {}
    if setups is not None:
        setups.check(inputs, needed)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_suffix(output.suffix + ".part")
    n_done, t_start = 0, time.perf_counter()
    status_counts = np.zeros(4, int)
    bar = tqdm(unit="ev", disable=not progress, desc="reconstruct " + "+".join(cfg.detectors))
    with uproot.recreate(tmp) as fout:
        tree = None
        for path in inputs:
            for rec in _iter_chunks(path, layouts, batch_size):
                n = len(rec["event_id"])
                if setups is None:
                    batch = to_event_batch(rec, layouts, source=path, as_jax=False)
                    cols = reconstruct_records(batch, geometry, response, cfg, batch_size,
                                               observables)
                else:
                    cols = _reconstruct_with_setups(rec, path, setups, needed, layouts, cfg,
                                                    batch_size, observables, used)
                cols["run"] = np.asarray(rec["run"], np.int32)
                cols["event_id"] = np.asarray(rec["event_id"], np.int64)
                cols["time_mjd"] = np.asarray(rec["time_mjd"], np.float64)
                cols.update(sky_columns(cols, cols["time_mjd"], frame_rotation_deg))
                flags = presence()
                for t in (*TRUTH, *flags):
                    if t in rec:
                        cols[t] = np.asarray(rec[t], np.int8 if t in flags else np.float64)
                if tree is None:  # the declared schema (joint/io/columns.py), checked once
                    types = branch_types(cols, where=str(path))
                    tree = fout.mktree("reco", types)
                else:
                    check(cols, str(path))
                tree.extend({k: np.asarray(v, t[0] if isinstance(t, tuple) else t)
                             for k, v in cols.items() for t in (types[k],)})
                status_counts += np.bincount(cols["status"], minlength=4)[:4]
                n_done += n
                bar.update(n)
                bar.set_postfix(ev_s=f"{n_done / (time.perf_counter() - t_start):.1f}")
        if setups is not None:
            fout["calibration"] = setups.metadata()
    bar.close()
    tmp.replace(output)
    seconds = time.perf_counter() - t_start
    summary = {"events": n_done, "seconds": seconds, "events_per_s": n_done / max(seconds, 1e-9),
               "status_counts": status_counts.tolist(), "detectors": list(cfg.detectors)}
    if setups is not None:
        summary["calibration"] = used
        if log:
            for d, counts in used.items():
                log(f"{d.upper()} calibration: " + ", ".join(
                    f"{name!r} for {k} events" for name, k in counts.items())
                    + f" ({setups.describe()})")
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

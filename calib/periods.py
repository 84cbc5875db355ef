"""Run periods of a batch of events: which calibration entries reconstruct which events.

A batch may span several run periods (a KM2A 3/4-array period and a full-array one, a WFCTA
entry that starts half-way through a KM2A one). :func:`group_events` splits it by the tuple of
entries valid at each event's time, one lookup per fitted detector
(``CalibrationDB.for_times(t, detector)``), and the two views built on it give each group what
its fit needs:

* :func:`setups_for_events` — :class:`EventSetup`: the period's layout, Geometry (dead channels
  off) and Response per detector (what ``joint.runner`` fits a file with, through
  ``calib.provider.CalibrationProvider``);
* :func:`responses_for_events` — the Responses only, for a geometry the caller holds.

The storage format itself (entries, validity intervals, provenance) is ``calib.db``.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import numpy as np

from calib.db import DETECTORS, CalibrationDB
from calib.response import DETECTOR_MODULES

__all__ = ["group_events", "EventSetup", "setups_for_events", "responses_for_events"]


def group_events(db: CalibrationDB, time_mjd, detectors: Sequence[str], missing: str = "raise"):
    """Group a batch's events by the tuple of entries valid at their times.

    Parameters
    ----------
    time_mjd : (n_events,) UTC MJD of the events
    detectors : detector names; each is looked up among the entries that calibrate it
    missing : "raise" (ValueError naming the database, the detector, the number of events
        without an entry and their MJD range) or "nominal" (such events get entry index −1)

    Returns
    -------
    (dets, groups): ``dets`` the known detectors of ``detectors`` in canonical order; ``groups``
    a list of (event indices (n_g,) int array, [entry index into ``db.entries()`` per detector
    of ``dets``, −1: none]), together a partition of range(n_events), ordered by the entries'
    start times (groups with a missing entry last).
    """
    if missing not in ("raise", "nominal"):
        raise ValueError(f"missing must be 'raise' or 'nominal', got {missing!r}")
    t = np.asarray(time_mjd, np.float64).reshape(-1)
    dets = [d for d in DETECTORS if d in detectors]
    if not dets:
        raise ValueError(f"no known detector in {detectors!r}")
    idx = np.stack([db.for_times(t, d) for d in dets], axis=1) if t.size else \
        np.zeros((0, len(dets)), np.int64)
    if missing == "raise":
        for j, d in enumerate(dets):
            lost = idx[:, j] < 0
            if np.any(lost):
                tl = t[lost][np.isfinite(t[lost])]
                span = f"MJD {tl.min():.6f} .. {tl.max():.6f}" if tl.size else "unknown times"
                raise ValueError(f"{db.index_path}: {int(lost.sum())} event(s) have no {d.upper()} "
                                 f"calibration ({span}); add an entry or pass missing='nominal'")
    keys, inverse = np.unique(idx, axis=0, return_inverse=True)
    inverse = np.asarray(inverse).reshape(-1)
    order = sorted(range(len(keys)), key=lambda g: (bool(np.any(keys[g] < 0)),
                                                    tuple(int(k) if k >= 0 else len(db) for k in keys[g])))
    return dets, [(np.nonzero(inverse == g)[0], [int(k) for k in keys[g]]) for g in order]


def _per_group(db: CalibrationDB, time_mjd, detectors, missing: str, cache: dict,
               build: Callable[[int, str], object]) -> list[tuple[np.ndarray, dict]]:
    """[(event indices, {detector: build(entry index, detector)})] per group of
    :func:`group_events`; ``build`` runs once per (entry index, detector), memoised in ``cache``."""
    dets, grouped = group_events(db, time_mjd, detectors, missing)
    out = []
    for index, ks in grouped:
        values = {}
        for d, k in zip(dets, ks):
            if (k, d) not in cache:
                cache[(k, d)] = build(k, d)
            values[d] = cache[(k, d)]
        out.append((index, values))
    return out


def responses_for_events(db: CalibrationDB, time_mjd, detectors: Sequence[str], geometries: dict,
                         *, missing: str = "raise") -> tuple[list[np.ndarray], list[dict]]:
    """Group a batch's events by the calibration valid at their times (:func:`group_events`),
    with the Responses of each group for geometries the caller holds.

    Parameters
    ----------
    time_mjd : (n_events,) UTC MJD of the events
    detectors : detector names fitted (each is looked up in the entries that calibrate it, so
        KM2A and WFCTA may come from entries with different periods)
    geometries : {detector: Geometry} used by the fit; the stored arrays must match their
        channel counts
    missing : "raise" (ValueError naming the detector, the number of events and their time
        range, default) or "nominal" (``Response.nominal(geometry)`` for events no entry covers)

    Returns
    -------
    groups : list of (n_g,) int arrays of event indices, together a partition of range(n_events),
        ordered by the entries' start time (events without an entry last with "nominal")
    responses : list of {detector: Response}, one per group
    """
    def build(k, d):
        if k < 0:
            return DETECTOR_MODULES[d].Response.nominal(geometries[d])
        return db.response(k, d, geometries[d])

    grouped = _per_group(db, time_mjd, detectors, missing, {}, build)
    return [index for index, _ in grouped], [resps for _, resps in grouped]


@dataclasses.dataclass
class EventSetup:
    """What one group of events is reconstructed with (:func:`setups_for_events`).

    index : (n_g,) event indices of the group;  entries : {detector: entry name, or None when
    the nominal calibration is used};  layouts, geometries, responses : {detector: ...} of the
    group's period (layout and dead channels of the entry, its Response)."""

    index: np.ndarray
    entries: dict
    layouts: dict
    geometries: dict
    responses: dict


def setups_for_events(db: CalibrationDB, time_mjd, detectors: Sequence[str], default_layouts: dict,
                      *, missing: str = "raise", cache: dict | None = None) -> list[EventSetup]:
    """Like :func:`responses_for_events`, but each group also gets its period's layout and
    Geometry (KM2A 3/4 array, dead channels) from the entries, so a run that spans periods of
    different configurations is fitted with each period's own geometry. Events without an
    entry (``missing="nominal"``) get ``default_layouts`` and the nominal Response. ``cache``: a
    dict kept by the caller between batches, so each entry's geometry and Response are built
    once per run."""
    def build(k, d):
        module = DETECTOR_MODULES[d]
        if k < 0:
            layout = default_layouts[d]
            geometry = module.Geometry.from_layout(layout)
            return None, layout, geometry, module.Response.nominal(geometry)
        e = db.entries()[k]
        geometry = db.geometry(e, d)
        return e.name, e._config(d).layout_object(), geometry, db.response(e, d, geometry)

    grouped = _per_group(db, time_mjd, detectors, missing, {} if cache is None else cache, build)
    out = []
    for index, per_det in grouped:
        entries, layouts, geos, resps = ({d: v[i] for d, v in per_det.items()} for i in range(4))
        out.append(EventSetup(index, entries, layouts, geos, resps))
    return out

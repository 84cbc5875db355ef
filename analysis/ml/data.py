"""Training, validation and test samples for the networks: simulate → reconstruct → point clouds.

A sample is a dict of numpy arrays with one row per event (``points`` (N, P, F), ``mask``,
``channel``, ``kind``, ``hit_label`` (N, P) int8: 1 shower hit, 0 noise hit, −1 unknown),
``event`` (N, E) raw event features (:data:`EVENT_FEATURES`), ``label`` (N,) (1 = gamma / light),
``weight`` (N,) flux weights, and the columns the tables need (``true_log10_energy``,
``reco_log10_energy``, ``reco_zenith``, ``nmu_ne``, ``status``, ``true_mass_number``).

Independent seeds: each split is simulated from its own seed (:data:`SPLIT_SEEDS`), so the test
events share no random numbers with the training or validation ones; choices (architecture,
epochs, learning rate) are made on the validation split only.

Spectra [M], docs/ml.md: events are simulated log-uniform in energy (E^−1) for statistics in
every bin and weighted to E^−2.6 for photons (Crab-like, PHYSICS.md §8) and E^−2.7 for hadrons
(``analysis.composition.FLUX_SPECTRAL_INDEX``), each class normalised to a total weight of 1.
"""
from __future__ import annotations

import numpy as np

from analysis.ml.points import KM2A_FEATURES, fitted_showers, km2a_points_batch

__all__ = ["EVENT_FEATURES", "WCDA_EVENT_FEATURES", "wcda_sample", "simulate_wcda", "SPLIT_SEEDS", "SIM_INDEX", "FLUX_INDEX", "event_features",
           "km2a_sample", "simulate_km2a", "concat", "flux_weight", "save_sample", "load_sample"]

#: raw event features joined at the network's head (standardised with the training sample's
#: mean and spread, stored with the model)
EVENT_FEATURES = ("reco_log10_energy", "cos_zenith", "core_distance_100m", "log10_ne",
                  "log10_nmu", "age")
WCDA_EVENT_FEATURES = ("reco_log10_energy", "cos_zenith", "core_distance_100m", "log10_npe",
                       "log10_nhit", "log10_cxpe")
#: simulation seeds of the splits (independent streams)
SPLIT_SEEDS = {"train": 1701, "val": 1702, "test": 1703}
SIM_INDEX = -1.0
#: flux spectral index per primary [M]
FLUX_INDEX = {"gamma": -2.6, "proton": -2.7}


def event_features(columns, detector="km2a") -> np.ndarray:
    """(N, 6) event features from the reconstruction's columns (NaN → 0; the fit's ``status``
    says whether they mean anything). KM2A: :data:`EVENT_FEATURES`; WCDA:
    :data:`WCDA_EVENT_FEATURES` (the WCDA fit has no Ne / Nμ: its hit count and charge)."""
    g = lambda k: np.asarray(columns[k], np.float64)
    if detector == "km2a":
        size = (np.log10(1.0 + np.maximum(g("ne"), 0.0)),
                np.log10(1.0 + np.maximum(g("nmu"), 0.0)), g("age"))
    else:  # the WCDA fit has no lateral-age column: the largest charge beyond 45 m instead
        size = (np.log10(1.0 + np.maximum(g("wcda_npe"), 0.0)),
                np.log10(1.0 + np.maximum(g("wcda_nhit"), 0.0)),
                np.log10(1.0 + np.maximum(g("cxpe"), 0.0)))
    f = np.stack([g("reco_log10_energy"), np.cos(g("reco_zenith")),
                  np.hypot(g("reco_core_x"), g("reco_core_y")) / 100.0, *size], axis=1)
    return np.where(np.isfinite(f), f, 0.0).astype(np.float32)


def flux_weight(true_log10_energy, sim_index, flux_index) -> np.ndarray:
    """Weights ∝ E^(flux − sim), normalised to a sum of 1."""
    lg = np.asarray(true_log10_energy, np.float64)
    w = 10.0 ** ((flux_index - sim_index) * (lg - lg.min()))
    return w / w.sum()


def _labels_to_points(labels, ids_to_index, channel, kind, n_ch):
    """Per-hit labels (jagged, aligned with the hit ids) → (N, P) int8 on the point cloud."""
    import awkward as ak

    out = np.full(channel.shape, -1, np.int8)
    for blk, (lab, idmap) in enumerate(zip(labels, ids_to_index)):
        if lab is None:
            continue
        ids, vals = lab
        counts = ak.to_numpy(ak.num(ids))
        rows = np.repeat(np.arange(len(counts)), counts)
        cols = idmap(ak.to_numpy(ak.flatten(ids)))
        dense = np.full((len(counts), n_ch[blk]), -1, np.int8)
        dense[rows, cols] = ak.to_numpy(ak.flatten(vals)).astype(np.int8)
        sel = (kind == blk) & (channel >= 0)
        r, p = np.nonzero(sel)
        out[r, p] = dense[r, channel[r, p]]
    return out


def _chunks(records, columns, chunk):
    """(slice, records, reco_* columns) of consecutive chunks of ``chunk`` events."""
    n = len(records["event_id"])
    reco = [k for k in columns if k.startswith("reco_")]
    for s in range(0, n, chunk):
        sl = slice(s, min(n, s + chunk))
        yield (sl, {k: v[sl] for k, v in records.items()},
               {k: np.asarray(columns[k])[sl] for k in reco})


def km2a_sample(records, columns, layout, n_ed=160, n_md=32, chunk=512, progress=None) -> dict:
    """Point clouds and event features of reconstructed KM2A events.

    records : the events' records (``joint.io`` form; hit labels ``km2a_ed_signal`` /
        ``km2a_md_signal`` used when present), columns : ``reconstruct``'s output for them,
    layout : the KM2A layout they were read with."""
    from detectors import km2a
    from joint.io.schema import to_event_batch

    geo = km2a.Geometry.from_layout(layout)
    resp = km2a.Response.nominal(geo)
    parts = []
    for sl, rec, cols in _chunks(records, columns, chunk):
        batch = to_event_batch(rec, km2a=layout, as_jax=False)
        pc = km2a_points_batch(fitted_showers(cols), batch.blocks["km2a_ed"],
                               batch.blocks["km2a_md"], geo, resp, n_ed, n_md)
        labels = [None, None]
        for b, name in enumerate(("km2a_ed", "km2a_md")):
            if f"{name}_signal" in rec:
                labels[b] = (rec[f"{name}_id"], rec[f"{name}_signal"])
        idmaps = (layout.ed_index_of, layout.md_index_of)
        hl = _labels_to_points(labels, idmaps, pc.channel, pc.kind, (geo.ed_pos.shape[0],
                                                                     geo.md_pos.shape[0]))
        parts.append(dict(points=pc.points, mask=pc.mask, channel=pc.channel, kind=pc.kind,
                          hit_label=hl))
        if progress is not None:
            progress(sl.stop - sl.start)
    out = concat(parts)
    out["event"] = event_features(columns)
    keep = ("reco_log10_energy", "reco_zenith", "status", "ne", "nmu")
    for k in keep:
        out[k] = np.asarray(columns[k])
    for k in ("true_log10_energy", "true_mass_number", "true_zenith"):
        if k in records:
            out[k] = np.asarray(records[k])
    from analysis.composition import nmu_ne_variable

    out["nmu_ne"] = np.asarray(nmu_ne_variable(out["nmu"], out["ne"]), np.float64)
    out["feature_names"] = np.array(KM2A_FEATURES)
    return out


def wcda_sample(records, columns, layout, n_points=256, chunk=512) -> dict:
    """Point clouds and event features of reconstructed WCDA events (as :func:`km2a_sample`),
    with the classic variables ``compactness``, ``pincness`` and ``wcda_score``."""
    from analysis.gamma_hadron import combined_score
    from analysis.ml.points import WCDA_FEATURES, wcda_points_batch
    from detectors import wcda
    from joint.io.schema import to_event_batch

    geo = wcda.Geometry.from_layout(layout)
    resp = wcda.Response.nominal(geo)
    parts = []
    for _, rec, cols in _chunks(records, columns, chunk):
        batch = to_event_batch(rec, wcda=layout, as_jax=False)
        pc = wcda_points_batch(fitted_showers(cols), batch.blocks["wcda"], geo, resp, n_points)
        parts.append(dict(points=pc.points, mask=pc.mask, channel=pc.channel, kind=pc.kind,
                          hit_label=np.full(pc.channel.shape, -1, np.int8)))
    out = concat(parts)
    out["event"] = event_features(columns, "wcda")
    for k in ("reco_log10_energy", "reco_zenith", "reco_core_x", "reco_core_y", "status",
              "compactness", "pincness"):
        out[k] = np.asarray(columns[k])
    for k in ("true_log10_energy", "true_mass_number", "true_zenith"):
        if k in records:
            out[k] = np.asarray(records[k])
    out["wcda_score"] = np.asarray(combined_score(out["compactness"], out["pincness"]),
                                   np.float64)
    out["feature_names"] = np.array(WCDA_FEATURES)
    return out


def concat(parts) -> dict:
    """Row-wise concatenation of samples (dicts of arrays with the same keys)."""
    keys = [k for k in parts[0] if k != "feature_names"]
    out = {k: np.concatenate([p[k] for p in parts]) for k in keys}
    if "feature_names" in parts[0]:
        out["feature_names"] = parts[0]["feature_names"]
    return out


def simulate_km2a(primary, n_events, seed, log10_energy_range=(4.0, 6.0), zenith_max_deg=40.0,
                  core_radius_m=400.0, layout="full", batch_size=256, hit_labels=True,
                  progress=None, **sim_kwargs):
    """Simulate ``n_events`` triggered KM2A events of ``primary`` (E^−1 in the range), reconstruct
    them (photon hypothesis, as a γ-ray analysis does) and return their sample
    (:func:`km2a_sample`) with ``label`` (1 for photons) and ``weight`` (flux weights)."""
    import inspect

    from detectors.layout import km2a_layout
    from detectors import km2a
    from joint.config import ReconstructionConfig
    from joint.io.schema import to_event_batch
    from joint.simulation import simulate_records

    lay = km2a_layout(layout)
    kw = dict(sim_kwargs)
    if hit_labels and "hit_labels" in inspect.signature(simulate_records).parameters:
        kw["hit_labels"] = True
    rec, _ = simulate_records(n_events, primary=primary, detectors=("km2a",),
                              log10_energy_range=log10_energy_range,
                              zenith_max_deg=zenith_max_deg, core_radius_m=core_radius_m,
                              seed=seed, km2a_layout=lay, spectral_index=SIM_INDEX, **kw)
    geo = km2a.Geometry.from_layout(lay)
    cfg = ReconstructionConfig(hypothesis="gamma", detectors=("km2a",))
    batch = to_event_batch(rec, km2a=lay, as_jax=False)
    cols = _reconstruct(batch, {"km2a": geo}, {"km2a": km2a.Response.nominal(geo)}, cfg,
                               batch_size=batch_size)
    s = km2a_sample(rec, cols, lay, progress=progress)
    s["label"] = np.full(len(s["status"]), 1 if primary == "gamma" else 0, np.int8)
    s["weight"] = flux_weight(rec["true_log10_energy"], SIM_INDEX,
                              FLUX_INDEX.get(primary, FLUX_INDEX["proton"]))
    return s


def simulate_wcda(primary, n_events, seed, log10_energy_range=(3.0, 4.0), zenith_max_deg=40.0,
                  batch_size=256, **sim_kwargs):
    """Simulate ``n_events`` triggered WCDA events (cores on the ponds, E^−1 in the range,
    default 1–10 TeV), reconstruct them WCDA-only with the photon hypothesis, and return their
    sample (:func:`wcda_sample`) with ``label`` and ``weight``."""
    from detectors import wcda
    from detectors.layout import wcda_layout
    from joint.config import ReconstructionConfig
    from joint.io.schema import to_event_batch
    from joint.simulation import simulate_records

    lay = wcda_layout()
    rec, _ = simulate_records(n_events, primary=primary, detectors=("wcda",),
                              log10_energy_range=log10_energy_range,
                              zenith_max_deg=zenith_max_deg, seed=seed, wcda_layout=lay,
                              cores_on="wcda", spectral_index=SIM_INDEX, **sim_kwargs)
    geo = wcda.Geometry.from_layout(lay)
    cfg = ReconstructionConfig(hypothesis="gamma", detectors=("wcda",))
    batch = to_event_batch(rec, wcda=lay, as_jax=False)
    cols = _reconstruct(batch, {"wcda": geo}, {"wcda": wcda.Response.nominal(geo)}, cfg,
                               batch_size=batch_size)
    s = wcda_sample(rec, cols, lay)
    s["label"] = np.full(len(s["status"]), 1 if primary == "gamma" else 0, np.int8)
    s["weight"] = flux_weight(rec["true_log10_energy"], SIM_INDEX,
                              FLUX_INDEX.get(primary, FLUX_INDEX["proton"]))
    return s


def _reconstruct(batch, geometry, response, cfg, batch_size=256):
    """``joint.pipeline.reconstruct_records`` with the observables of ``analysis.observables``
    (what ``lhaaso_joint.api.reconstruct_records`` does; analysis does not import the API layer)."""
    from analysis.observables import observables
    from joint.pipeline import reconstruct_records

    return reconstruct_records(batch, geometry, response, cfg, batch_size, observables)


def save_sample(path, sample) -> None:
    """Write a sample to ``path`` (.npz; refuses to overwrite)."""
    import os

    if os.path.exists(path):
        raise FileExistsError(f"{path}: exists; not overwritten")
    np.savez_compressed(path, **sample)


def load_sample(path) -> dict:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}

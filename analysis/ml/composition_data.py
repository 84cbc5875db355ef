"""Samples for the composition network (issue 17): light (H+He) vs heavier and ln A regression at
0.3–3 PeV on KM2A hits, the WFCTA image and an Xmax.

Events: ``analysis.composition.simulate_sample`` (KM2A + WFCTA simulated together, H, He, CNO,
Fe, log10(E/GeV) 5.5–6.5 flat in log E (E^−1), directions within 5° of a telescope axis, cores
within 300 m of the telescopes; an event is kept when either detector triggers), each split from
its own seed (:data:`SPLIT_SEEDS`), weighted to the flux mix with
``analysis.composition.flux_weights`` (E^−2.7, 30/30/15/25%).

Inputs of the network (everything from fits, never the truth):

* the KM2A hit point cloud at the fitted shower of the KM2A-alone fit
  (``analysis.ml.points.km2a_points`` through ``analysis.ml.data.km2a_sample``);
* event features :data:`COMPOSITION_EVENT_FEATURES`: the KM2A fit's six
  (``analysis.ml.data.EVENT_FEATURES``: energy, cos zenith, core distance, log10 Ne, log10 Nμ,
  age), the WFCTA image of the brightest telescope at the KM2A fit's geometry (Hillas size,
  length, width, Dist, and ``x_dist``, the depth its centroid points at; a presence flag, 0 and
  flag 0 without a cleaned image), and an Xmax with a presence flag (0 and flag 0 where absent).

Which Xmax (:func:`composition_sample`'s ``xmax_columns``) is the caller's choice and is recorded
in the sample (``xmax_source``); ``benchmarks/ml_composition.py`` says which it used.

Label: 1 = light (``analysis.composition.is_light``: H, He); regression target ``ln_a`` = ln A.
"""
from __future__ import annotations

import numpy as np

from analysis.ml.data import EVENT_FEATURES, event_features

__all__ = ["COMPOSITION_EVENT_FEATURES", "IMAGE_FEATURES", "XMAX_FEATURES", "SPLIT_SEEDS",
           "image_features", "xmax_features", "composition_event_features",
           "wfcta_image_columns", "composition_sample", "simulate_split", "reconstruct_split",
           "subset", "classify_event_features"]

#: WFCTA image features (brightest telescope, at the KM2A fit's geometry)
IMAGE_FEATURES = ("image_present", "log10_image_size", "hillas_length_deg", "hillas_width_deg",
                  "hillas_dist_deg", "x_dist_100")
#: Xmax features: presence flag, Xmax / 100 g/cm² (0 where absent)
XMAX_FEATURES = ("xmax_present", "xmax_100")
COMPOSITION_EVENT_FEATURES = tuple(EVENT_FEATURES) + IMAGE_FEATURES + XMAX_FEATURES
#: simulation seeds of the splits (independent streams; simulate_sample uses seed + mass index)
SPLIT_SEEDS = {"train": 1801, "val": 1811, "test": 1821}


def _col(columns, key, n):
    if key not in columns:
        return np.full(n, np.nan)
    return np.asarray(columns[key], np.float64)


def image_features(columns) -> np.ndarray:
    """(N, 6) :data:`IMAGE_FEATURES` from WFCTA observable columns (``analysis.observables``:
    ``hillas_size`` etc. (N, n_tel), ``x_dist``, ``wfcta_size``): the brightest telescope's
    log10(1 + size/PE), length, width and Dist [deg], x_dist / 100 g/cm², and a flag (1 when the
    event has a cleaned image, ``wfcta_size`` > 0 and finite Hillas parameters). Every feature is
    0 where the flag is 0."""
    size = np.asarray(columns["hillas_size"], np.float64)
    if size.ndim == 1:
        size = size[:, None]
    n = size.shape[0]
    s = np.where(np.isfinite(size), size, -np.inf)
    best = np.argmax(s, axis=1)
    rows = np.arange(n)
    pick = lambda k: (np.asarray(columns[k], np.float64).reshape(n, -1)[rows, best]
                      if k in columns else np.full(n, np.nan))
    total = _col(columns, "wfcta_size", n)
    length, width, dist = pick("hillas_length"), pick("hillas_width"), pick("hillas_dist")
    xd = _col(columns, "x_dist", n)
    present = (np.isfinite(total) & (total > 0) & np.isfinite(length) & np.isfinite(width)
               & np.isfinite(dist) & (size[rows, best] > 0))
    f = np.stack([present.astype(np.float64),
                  np.log10(1.0 + np.maximum(size[rows, best], 0.0)),
                  np.degrees(length), np.degrees(width), np.degrees(dist),
                  np.clip(xd, 0.0, 1500.0) / 100.0], axis=1)
    f[:, 5] = np.where(np.isfinite(xd), f[:, 5], 0.0)
    f = np.where(present[:, None] & np.isfinite(f), f, 0.0)
    return f.astype(np.float32)


def xmax_features(xmax, present=None) -> np.ndarray:
    """(N, 2) :data:`XMAX_FEATURES`: flag, Xmax / 100 g/cm². ``present`` (bool) marks the events
    whose Xmax counts (default: finite); absent → (0, 0)."""
    x = np.asarray(xmax, np.float64)
    ok = np.isfinite(x) if present is None else (np.asarray(present, bool) & np.isfinite(x))
    return np.stack([ok.astype(np.float64), np.where(ok, x / 100.0, 0.0)], 1).astype(np.float32)


def composition_event_features(km2a_columns, image_columns=None, xmax=None,
                               xmax_present=None) -> np.ndarray:
    """(N, 14) :data:`COMPOSITION_EVENT_FEATURES`: the KM2A fit's six
    (``analysis.ml.data.event_features``), the image's six (:func:`image_features`; all 0 with
    ``image_columns`` None) and the Xmax's two (:func:`xmax_features`; 0 with ``xmax`` None).
    This is the function ``classify`` calls for the composition model."""
    k = event_features(km2a_columns)
    n = k.shape[0]
    img = image_features(image_columns) if image_columns is not None else \
        np.zeros((n, len(IMAGE_FEATURES)), np.float32)
    xm = xmax_features(xmax, xmax_present) if xmax is not None else \
        np.zeros((n, len(XMAX_FEATURES)), np.float32)
    if img.shape[0] != n or xm.shape[0] != n:
        raise ValueError(f"event counts differ: KM2A {n}, image {img.shape[0]}, Xmax {xm.shape[0]}")
    return np.concatenate([k, img, xm], 1).astype(np.float32)


def wfcta_image_columns(records, km2a_columns, setup=None, chunk=64) -> dict:
    """WFCTA observables (``analysis.observables.wfcta_observables``: Hillas parameters per
    telescope, ``x_dist``, ``wfcta_size``) of every event at the geometry (and energy, Xmax) of
    the KM2A fit, without a WFCTA fit: the images as cleaned and parameterised by the
    reconstruction, the Dist / x_dist reference direction from KM2A. Events whose KM2A fit is not
    finite get the placeholder shower of ``analysis.ml.points.fitted_showers`` (their status
    says so)."""
    import jax

    from analysis.ml.points import fitted_showers
    from analysis.observables import wfcta_observables_fn
    from joint.config import detector_setup
    from joint.io.schema import to_event_batch

    lays, geos, resps = setup or detector_setup(("km2a", "wfcta"))
    n = len(records["event_id"])
    fn = wfcta_observables_fn(geos["wfcta"].col_x.shape[0])
    parts = []
    keys = ("reco_core_x", "reco_core_y", "reco_zenith", "reco_azimuth", "reco_log10_energy",
            "reco_xmax", "reco_log_muon_scale", "reco_t0")
    for s in range(0, n, chunk):
        sl = slice(s, min(n, s + chunk))
        m = sl.stop - sl.start
        rec = {k: v[sl] for k, v in records.items()}
        batch = to_event_batch(rec, {"wfcta": lays["wfcta"]}, as_jax=False)
        cols = {k: np.asarray(km2a_columns[k])[sl] for k in keys}
        if m < chunk:  # pad to one shape: one compilation
            cols = {k: np.concatenate([v, np.repeat(v[-1:], chunk - m)]) for k, v in cols.items()}
            pix = jax.tree_util.tree_map(
                lambda a: np.concatenate([a, np.repeat(a[-1:], chunk - m, 0)]),
                batch.blocks["wfcta"])
        else:
            pix = batch.blocks["wfcta"]
        obs = fn(fitted_showers(cols), pix, geos["wfcta"], resps["wfcta"])
        parts.append({k: np.asarray(v, np.float64)[:m] for k, v in obs.items()})
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def classify_event_features(records, km2a_columns, setup=None, xmax_from_km2a=True):
    """(N, 14) event features of the shipped composition model for ``classify``: ``records``
    read with the KM2A and WFCTA layouts (``joint.io.read_file(path, km2a=..., wfcta=...)``),
    ``km2a_columns`` the reco columns of a KM2A-alone reconstruction (with observables). The
    image features come from the records' WFCTA pixels at the KM2A fit
    (:func:`wfcta_image_columns`; all 0, flag 0, when the records have no ``wfcta_pe``), the Xmax
    from the KM2A fit (present where ``status`` == 0), as the model was trained."""
    n = len(np.asarray(km2a_columns["status"]))
    img = None
    if "wfcta_pe" in records:
        img = wfcta_image_columns(records, km2a_columns, setup)
    x = np.asarray(km2a_columns["reco_xmax"], np.float64) if xmax_from_km2a else None
    present = (np.asarray(km2a_columns["status"]) == 0) if xmax_from_km2a else None
    f = composition_event_features(km2a_columns, img, x, present)
    assert f.shape[0] == n
    return f


def composition_sample(records, km2a_columns, image_columns=None, xmax=None, xmax_present=None,
                       xmax_source="none", layout=None, n_ed=160, n_md=32) -> dict:
    """A sample in the form of ``analysis.ml.data`` (points, mask, channel, kind, hit_label,
    event, label, weight + columns) for the composition network.

    records : simulated events (``simulate_sample``); km2a_columns : the KM2A-alone fit
    (``reconstruct_sample(..., methods=("km2a",))["km2a"]``, with observables); image_columns :
    :func:`wfcta_image_columns`; xmax, xmax_present : the Xmax input and where it counts.
    Adds ``label`` (1 = H/He), ``ln_a``, ``weight`` (``flux_weights`` of the whole triggered
    sample), ``present_km2a`` / ``present_wfcta``, ``xmax_source``."""
    from analysis.composition import flux_weights, is_light
    from analysis.ml.data import km2a_sample

    if layout is None:
        from joint.config import detector_setup

        layout = detector_setup(("km2a",))[0]["km2a"]
    s = km2a_sample(records, km2a_columns, layout, n_ed=n_ed, n_md=n_md)
    s["event"] = composition_event_features(km2a_columns, image_columns, xmax, xmax_present)
    a = np.asarray(records["true_mass_number"], np.float64)
    s["label"] = is_light(a).astype(np.int8)
    s["ln_a"] = np.log(a).astype(np.float32)
    s["weight"] = flux_weights(a, records["true_log10_energy"]).astype(np.float64)
    for d in ("present_km2a", "present_wfcta"):
        s[d] = (np.asarray(records[d]) > 0) if d in records else np.ones(len(a), bool)
    s["true_xmax"] = np.asarray(records["true_xmax"], np.float64)
    s["xmax_source"] = np.array(xmax_source)
    s["event_feature_names"] = np.array(COMPOSITION_EVENT_FEATURES)
    return s


def subset(sample, keep) -> dict:
    """Rows ``keep`` (bool or indices) of a sample; 0-d entries (names) kept as they are."""
    n = len(sample["label"])
    return {k: (v[keep] if (isinstance(v, np.ndarray) and v.ndim and v.shape[0] == n) else v)
            for k, v in sample.items()}


def simulate_split(n_per_mass, seed, progress=None, **kw):
    """``analysis.composition.simulate_sample`` at 0.3–3 PeV: (records, thrown)."""
    from analysis.composition import simulate_sample

    return simulate_sample(n_per_mass, seed, log10_energy_range=(5.5, 6.5), progress=progress,
                           **kw)


def reconstruct_split(records, methods=("km2a",), progress=None, setup=None):
    """``analysis.composition.reconstruct_sample`` with ``methods`` (``km2a``: the KM2A fit the
    point cloud and event features use; ``joint``: KM2A+WFCTA, its Xmax and Nμ/Ne for the Fisher
    discriminant) and :func:`wfcta_image_columns` at the KM2A fit: ({method: columns},
    {method: s}, image columns)."""
    from analysis.composition import reconstruct_sample

    outs, sec = reconstruct_sample(records, methods=methods, setup=setup, progress=progress)
    img = wfcta_image_columns(records, outs["km2a"], setup) if "km2a" in outs else None
    return outs, sec, img

"""Apply the shipped networks to reconstructed events: ``gammaness``, ``p_light``, ``ln_a`` and a
per-hit signal probability (``lhaaso-joint classify``).

The models live in ``analysis/ml/models/`` (``NAME.npz`` + ``NAME.json``, the model card); a
path to another saved model may be given instead of a name. Inputs are the events (any file
``reconstruct`` reads) and the ``reco`` tree that ``reconstruct`` wrote for them; the output is a
NEW file with the reco columns plus the network's, and with ``hit_probability`` a tree ``hits``
(run, event_id and, per KM2A hit in the order of the event file, ``km2a_ed_p_signal`` /
``km2a_md_p_signal``; NaN for a hit outside the point cloud or of an event whose fit failed).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

__all__ = ["MODELS_DIR", "MODELS", "available_models", "load_model", "classify_columns",
           "hit_signal_probability", "classify_files", "ClassifyError"]

MODELS_DIR = Path(__file__).resolve().parent / "models"
#: shipped model per output: the γ/hadron model gives ``gammaness``, the composition model
#: ``p_light`` and ``ln_a``
MODELS = {"gamma_hadron": "km2a_gamma_hadron", "composition": "km2a_composition"}
#: point counts at inference for the per-hit probabilities (every hit of almost every event)
HIT_POINTS = (1024, 256)


class ClassifyError(ValueError):
    """Bad input of ``classify`` (one line naming the file, the field and the entry)."""


def available_models() -> dict:
    """{task: path stem} of the shipped models that exist."""
    return {t: MODELS_DIR / n for t, n in MODELS.items() if (MODELS_DIR / f"{n}.npz").exists()}


def load_model(name_or_path):
    """A :class:`analysis.ml.train.TrainedModel` from a shipped name or a saved path."""
    from analysis.ml.train import load

    p = Path(name_or_path)
    if not p.with_suffix(".json").exists() and (MODELS_DIR / f"{p.name}.json").exists():
        p = MODELS_DIR / p.name
    return load(p)


def _layout(records, layout):
    from detectors.layout import km2a_layout

    return km2a_layout(layout) if isinstance(layout, str) else layout


def classify_columns(records, columns, layout="full", models=None) -> dict:
    """{column: (N,) array} of the networks for events (``records``) and their reconstruction
    (``columns``): ``gammaness`` and, when a composition model exists, ``p_light`` and ``ln_a``.
    Events whose fit did not converge (``status`` ≠ 0) get NaN."""
    from analysis.ml.data import km2a_sample

    models = available_models() if models is None else dict(models)
    if not models:
        raise ClassifyError(f"no model: none in {MODELS_DIR} and none given")
    lay = _layout(records, layout)
    sample = km2a_sample(records, columns, lay)
    ok = np.asarray(columns["status"]) == 0
    out = {}
    for task, path in models.items():
        tm = load_model(path)
        event = sample["event"]
        if tm.card["config"]["n_event"] != event.shape[1]:
            # the composition model: KM2A fit + WFCTA image at the KM2A geometry + the KM2A Xmax
            # (docs/ml_composition.md); no WFCTA data gives image features 0 with flag 0
            from analysis.ml.composition_data import classify_event_features

            event = classify_event_features(records, columns)
            if event.shape[1] != tm.card["config"]["n_event"]:
                raise ClassifyError(f"model {path}: expects {tm.card['config']['n_event']} "
                                    f"event features, this input gives {event.shape[1]}")
        ev, _ = tm(sample["points"], sample["mask"], event)
        p = 1.0 / (1.0 + np.exp(-ev[:, 0].astype(np.float64)))
        if task == "gamma_hadron":
            out["gammaness"] = np.where(ok, p, np.nan)
        elif task == "composition":
            out["p_light"] = np.where(ok, p, np.nan)
            if ev.shape[1] > 1:
                out["ln_a"] = np.where(ok, ev[:, 1].astype(np.float64), np.nan)
        else:
            raise ClassifyError(f"unknown model task {task!r} (known: {sorted(MODELS)})")
    return out


def hit_signal_probability(model_path, records, reco_columns, layout="full",
                           points=HIT_POINTS):
    """Per-hit probability that a KM2A hit belongs to the shower, from the network's per-hit
    head: (ed, md), each a list (one numpy array per event, aligned with ``km2a_ed_id`` /
    ``km2a_md_id`` of ``records``). NaN for hits beyond the ``points`` = (EDs, MDs) largest
    charges and for events whose fit did not converge."""
    import awkward as ak

    from analysis.ml.data import km2a_sample

    tm = load_model(model_path)
    lay = _layout(records, layout)
    s = km2a_sample(records, reco_columns, lay, n_ed=points[0], n_md=points[1], chunk=128)
    _, hp = tm(s["points"], s["mask"], s["event"], batch_size=64)
    ok = np.asarray(reco_columns["status"]) == 0
    n = hp.shape[0]
    res = []
    for kind, (name, index_of, n_ch) in enumerate((("km2a_ed", lay.ed_index_of, lay.n_ed),
                                                   ("km2a_md", lay.md_index_of, lay.n_md))):
        dense = np.full((n, n_ch), np.nan)
        sel = (s["kind"] == kind) & s["mask"]
        r, p = np.nonzero(sel)
        dense[r, s["channel"][r, p]] = hp[r, p]
        dense[~ok] = np.nan
        ids = records[f"{name}_id"]
        counts = ak.to_numpy(ak.num(ids))
        rows = np.repeat(np.arange(n), counts)
        flat = dense[rows, index_of(ak.to_numpy(ak.flatten(ids)))]
        res.append(np.split(flat, np.cumsum(counts)[:-1]))
    return res[0], res[1]


def _read_reco(path):
    from joint.io.errors import open_tree

    fin, tree = open_tree(path, "reco")
    with fin:
        return {k: np.asarray(v) for k, v in tree.arrays(library="np").items()}


def classify_files(events, reco, output, models=None, layout="full", hit_model=None,
                   overwrite=False, log=None) -> dict:
    """Write ``output``: the ``reco`` tree of ``reco`` plus the network columns, and with
    ``hit_model`` the tree ``hits``. Inputs are checked before any work; nothing is overwritten
    unless ``overwrite``; the file is written under a temporary name and renamed at the end."""
    import awkward as ak
    import uproot

    from joint.io import read_file
    from joint.io.columns import branch_types, check

    events, reco, output = str(events), str(reco), str(output)
    for p in (events, reco):
        if not os.path.isfile(p):
            raise ClassifyError(f"{p}: no such file")
    if os.path.abspath(output) in (os.path.abspath(events), os.path.abspath(reco)):
        raise ClassifyError(f"{output}: the output would overwrite an input")
    if os.path.exists(output) and not overwrite:
        raise ClassifyError(f"{output}: exists (use --overwrite)")
    models = available_models() if models is None else models
    if not models:
        raise ClassifyError(f"no model: none in {MODELS_DIR} and none given")
    for t, m in models.items():
        try:
            load_model(m)
        except (FileNotFoundError, ValueError, KeyError) as err:
            raise ClassifyError(f"model {m}: {err}") from None
    lay = _layout(None, layout)
    cols = _read_reco(reco)
    for need in ("run", "event_id", "status", "reco_core_x", "reco_log10_energy", "ne", "nmu"):
        if need not in cols:
            raise ClassifyError(f"{reco}: tree 'reco' has no column {need!r} (a KM2A "
                                "reconstruction with observables is needed)")
    wfcta = None
    if "composition" in models:
        from detectors.layout import wfcta_layout

        wfcta = wfcta_layout()
    records = read_file(events, km2a=lay, wfcta=wfcta)
    n = len(records["event_id"])
    if len(cols["event_id"]) != n:
        raise ClassifyError(f"{reco}: {len(cols['event_id'])} entries, {events} has {n}: not "
                            "the reconstruction of these events")
    bad = np.nonzero((np.asarray(cols["event_id"]) != np.asarray(records["event_id"]))
                     | (np.asarray(cols["run"]) != np.asarray(records["run"])))[0]
    if bad.size:
        i = int(bad[0])
        raise ClassifyError(f"{reco}: entry {i}: event_id/run {cols['event_id'][i]}/"
                            f"{cols['run'][i]} differ from {events} entry {i} "
                            f"({records['event_id'][i]}/{records['run'][i]})")
    new = classify_columns(records, cols, lay, models)
    out_cols = {k: v for k, v in cols.items()}
    out_cols.update(new)
    check(out_cols, output)
    tmp = output + ".tmp"
    with uproot.recreate(tmp) as f:
        f.mktree("reco", branch_types(out_cols))
        f["reco"].extend(out_cols)
        if hit_model is not None:
            ed, md = hit_signal_probability(hit_model, records, cols, lay)
            f["hits"] = {"run": np.asarray(records["run"]),
                         "event_id": np.asarray(records["event_id"]),
                         "km2a_ed_id": records["km2a_ed_id"],
                         "km2a_ed_p_signal": ak.Array([a.astype(np.float32) for a in ed]),
                         "km2a_md_id": records["km2a_md_id"],
                         "km2a_md_p_signal": ak.Array([a.astype(np.float32) for a in md])}
    os.replace(tmp, output)
    if log:
        log(f"classified {n} events -> {output}")
    return {"events": n, "columns": sorted(new), "hits": hit_model is not None}

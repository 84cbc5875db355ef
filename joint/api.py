"""The Python API in a few calls: simulate event files, reconstruct them jointly, get a table.

    from joint.api import simulate, reconstruct
    simulate("events.root", 64, detectors=("km2a", "wfcta"), primary="mixed",
             log10_energy_range=(5.8, 6.2), cores_on="wfcta")
    table = reconstruct("events.root", "reco.root")    # every detector in the file, jointly
    table["energy", "reco_xmax", "ra", "dec", "gof_km2a", "gof_wfcta"]

``reconstruct`` writes the ``reco`` tree first (finished work is on disk, resumable per file),
then returns it as an astropy ``QTable`` with units (``joint.sky.events_table``). The command
line (``lhaaso-joint simulate | reconstruct``) is built on the same functions.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["simulate", "reconstruct", "read_reco", "config_for"]


def simulate(output, n_events, detectors=("km2a",), primary="proton", seed=1, **kwargs) -> Path:
    """Simulate ``n_events`` triggered events of ``detectors`` (any of km2a, wcda, wfcta) and
    write them to ``output`` (the project's ROOT schema). ``kwargs`` go to
    ``joint.simulation.simulate_records`` (``log10_energy_range``, ``cores_on``,
    ``zenith_max_deg``, ``wfcta_clear_fraction``, ``mjd``, ...). Returns the path."""
    from joint.io.schema import write_events
    from joint.simulation import simulate_records

    records, _ = simulate_records(n_events, primary=primary, detectors=tuple(detectors), seed=seed,
                                  **kwargs)
    out = Path(output)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_events(out, records)
    return out


def config_for(detectors, hypothesis="hadron", fix=(), geometry_from="truth", xmax_prior=None,
               free=None, n_iter=12):
    """The ReconstructionConfig a physicist would choose for ``detectors``: every Shower field
    of the hypothesis free except the ``fix``-ed ones (taken from ``geometry_from``); a
    WFCTA-only fit fits energy and Xmax and needs the geometry fixed; the Xmax prior is on
    except for WFCTA alone (with WFCTA in a joint fit it applies only to the events without
    images: ``joint.likelihood.joint_model``)."""
    from joint.reconstruct import KM2A_FREE, ReconstructionConfig

    detectors = tuple(detectors)
    fix = tuple(fix)
    if free is None:
        free = ("log10_energy", "xmax") if detectors == ("wfcta",) else KM2A_FREE[hypothesis]
    if detectors == ("wfcta",) and not {"core_x", "core_y", "zenith", "azimuth"} <= set(fix):
        raise ValueError("a WFCTA-only fit needs the geometry fixed: fix=('core_x', 'core_y', "
                         "'zenith', 'azimuth') with geometry_from 'truth', 'km2a' or 'wcda'")
    prior = (detectors != ("wfcta",)) if xmax_prior is None else bool(xmax_prior)
    return ReconstructionConfig(hypothesis=hypothesis, free=tuple(f for f in free if f not in fix),
                                n_iter=n_iter, truth_fields=fix, geometry_from=geometry_from,
                                xmax_prior=prior, detectors=detectors)


def reconstruct(inputs, output, detectors="auto", hypothesis="hadron", batch_size=256,
                progress=True, frame_rotation_deg=0.0, calib_db=None, calib_missing="raise",
                **config):
    """Fit event files (own schema or G4KM2A) and return the result as a QTable with units.

    detectors : "auto" (every built detector with hits in the first file, jointly) or names
    calib_db : calibration database (path or ``calib.db.CalibrationDB``): every event is fitted
        with the entry valid at its time (column ``calib_<det>``; ``table.meta["calibration"]``
        names the entries); ``calib_missing`` "raise" or "nominal" for events outside them
    config : ``fix``, ``geometry_from``, ``xmax_prior``, ``free``, ``n_iter`` (:func:`config_for`)
    """
    from joint.reconstruct import detectors_in_file, reconstruct_files

    inputs = [inputs] if isinstance(inputs, (str, Path)) else list(inputs)
    dets = detectors_in_file(inputs[0]) if detectors == "auto" else tuple(detectors)
    cfg = config_for(dets, hypothesis, **config)
    reconstruct_files(inputs, output, cfg, batch_size=batch_size, progress=progress,
                      detectors=dets, frame_rotation_deg=frame_rotation_deg, calib_db=calib_db,
                      calib_missing=calib_missing)
    return read_reco(output, frame_rotation_deg)


def read_reco(path, frame_rotation_deg=0.0):
    """A ``reco`` tree (``lhaaso-joint reconstruct`` output) as a QTable with units."""
    from joint.io.errors import open_tree
    from joint.sky import events_table

    import json

    fin, tree = open_tree(path, "reco")
    with fin:
        cols = tree.arrays(library="np")
        calibration = json.loads(str(fin["calibration"])) if "calibration" in fin else None
    cols = {k: np.asarray(v) for k, v in cols.items()
            if k not in ("ra", "dec", "ra_dec_err", "glon", "glat")}  # recomputed with units
    table = events_table(cols, frame_rotation_deg=frame_rotation_deg)
    if calibration is not None:
        table.meta["calibration"] = calibration
    return table

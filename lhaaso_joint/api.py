"""The Python API in a few calls: simulate event files, reconstruct them jointly, get a table.

    from lhaaso_joint import simulate, reconstruct
    simulate("events.root", 64, detectors=("km2a", "wfcta"), primary="mixed",
             log10_energy_range=(5.8, 6.2), cores_on="wfcta")
    table = reconstruct("events.root", "reco.root")    # every detector in the file, jointly
    table["energy", "reco_xmax", "ra", "dec", "gof_km2a", "gof_wfcta"]

``reconstruct`` writes the ``reco`` tree first (finished work is on disk; a killed run resumes
from its last finished chunk, ``joint.workdir``),
then returns it as an astropy ``QTable`` with units (``joint.sky.events_table``). The command
line (``lhaaso-joint simulate | reconstruct``) is built on the same functions.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from joint.config import config_for

__all__ = ["simulate", "reconstruct", "reconstruct_files", "reconstruct_batch",
           "reconstruct_records", "read_reco", "config_for"]


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


def reconstruct(inputs, output, detectors="auto", hypothesis="hadron", batch_size="auto",
                progress=True, frame_rotation_deg=0.0, calib_db=None, calib_missing="raise",
                max_memory_gb=None, overwrite=False, cluster=None, **config):
    """Fit event files (own schema or G4KM2A) and return the result as a QTable with units.

    detectors : "auto" (every built detector with hits in the first file, jointly) or names
    calib_db : calibration database (path or ``calib.db.CalibrationDB``): every event is fitted
        with the entry valid at its time (column ``calib_<det>``; ``table.meta["calibration"]``
        names the entries); ``calib_missing`` "raise" or "nominal" for events outside them
    batch_size, max_memory_gb : events fitted at once ("auto": the largest that fits the memory
        budget, ``joint.config.auto_batch_size``)
    overwrite : replace an output written with another configuration (default: RunError)
    cluster : None (this process) or a ``--cluster`` specification (``lhaaso_joint.farm``:
        ``local:N``, ``tcp://HOST:PORT``, ``htcondor:N``, ``slurm:N``)
    config : ``fix``, ``geometry_from``, ``xmax_prior``, ``free``, ``n_iter``
        (``joint.config.config_for``)
    """
    from joint.runner import detectors_in_file

    inputs = [inputs] if isinstance(inputs, (str, Path)) else list(inputs)
    dets = detectors_in_file(inputs[0]) if detectors == "auto" else tuple(detectors)
    cfg = config_for(dets, hypothesis, **config)
    reconstruct_files(inputs, output, cfg, batch_size=batch_size, progress=progress,
                      detectors=dets, frame_rotation_deg=frame_rotation_deg, calib_db=calib_db,
                      calib_missing=calib_missing, max_memory_gb=max_memory_gb,
                      overwrite=overwrite, cluster=cluster)
    return read_reco(output, frame_rotation_deg)


def reconstruct_batch(batch, geometry, response, cfg=None, observables=True) -> dict:
    """``joint.pipeline.reconstruct_batch`` with the per-event observables of
    ``analysis.observables`` (``observables=False``: fit columns only)."""
    from analysis.observables import observables as analysis_observables
    from joint.config import ReconstructionConfig
    from joint.pipeline import reconstruct_batch as _batch

    return _batch(batch, geometry, response, cfg or ReconstructionConfig(),
                  analysis_observables if observables else None)


def reconstruct_records(batch, geometry, response, cfg=None, batch_size=256,
                        observables=True) -> dict:
    """``joint.pipeline.reconstruct_records`` (any number of events, padded fixed-size chunks)
    with the per-event observables of ``analysis.observables``."""
    from analysis.observables import observables as analysis_observables
    from joint.config import ReconstructionConfig
    from joint.pipeline import reconstruct_records as _records

    return _records(batch, geometry, response, cfg or ReconstructionConfig(), batch_size,
                    analysis_observables if observables else None)


def reconstruct_files(inputs, output, cfg, *, calib_db=None, calib_missing="raise",
                      observables=True, cluster=None, **kwargs) -> dict:
    """``joint.runner.reconstruct_files`` with the layers above ``joint`` wired in: the per-event
    observables of ``analysis.observables`` (``observables=False``: fit columns only) and, with
    ``calib_db`` (a path or ``calib.db.CalibrationDB``), the calibration valid at each event's
    time (``calib.provider.CalibrationProvider``; ``calib_missing`` "raise" or "nominal").
    ``cluster``: None (this process) or a ``--cluster`` specification (``lhaaso_joint.farm``).
    ``kwargs``: batch_size, max_memory_gb, chunk_events, overwrite, layout_config, progress,
    log, detectors, frame_rotation_deg (``joint.runner.reconstruct_files``)."""
    from analysis.observables import observables as analysis_observables
    from joint import runner

    setups = None
    if calib_db is not None:
        from calib.provider import CalibrationProvider

        if cluster is not None and isinstance(calib_db, (str, Path)):
            calib_db = os.path.abspath(calib_db)  # workers elsewhere open it too
        setups = CalibrationProvider(calib_db, calib_missing)
    opened = []
    if cluster is not None:
        from lhaaso_joint.farm import check_cluster_spec

        check_cluster_spec(cluster)

    def executor():  # started by the runner after the inputs are validated
        from lhaaso_joint.farm import DaskExecutor

        from joint.config import DEFAULT_MAX_MEMORY_GB

        opened.append(DaskExecutor.from_spec(
            cluster, kwargs.get("max_memory_gb") or DEFAULT_MAX_MEMORY_GB,
            kwargs.get("log") or print))
        return opened[-1]

    try:
        return runner.reconstruct_files(inputs, output, cfg,
                                        observables=analysis_observables if observables else None,
                                        setups=setups, executor=None if cluster is None
                                        else executor, **kwargs)
    finally:
        for ex in opened:
            ex.close()


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

"""gammapy datasets from a DL3 data store of ``lhaaso-joint dl3`` (docs/dl3.md): the few lines
every analysis of the export repeats — one map geometry around the observations' reference
direction, MapDatasetMaker + the offset mask (the response is valid within the exported field
only), one stacked dataset per event type (3-D fits) or one per observation (light curves).
"""
from __future__ import annotations

import numpy as np

__all__ = ["map_geometry", "make_datasets", "datasets_by_type"]


def map_geometry(center_radec, width_deg=8.0, binsz_deg=0.1, energy_edges_tev=None,
                 true_energy_edges_tev=None):
    """(geom, true-energy axis): a WCS cube in ICRS around ``center_radec`` [deg]; reco energy
    bins default 10 TeV–1 PeV, 5 per decade; true energy 3 TeV–3 PeV, 8 per decade."""
    import astropy.units as u
    from astropy.coordinates import SkyCoord
    from gammapy.maps import MapAxis, WcsGeom

    e = (MapAxis.from_energy_bounds(10, 1000, 10, unit="TeV", name="energy")
         if energy_edges_tev is None else
         MapAxis.from_edges(energy_edges_tev, unit="TeV", name="energy", interp="log"))
    et = (MapAxis.from_energy_bounds(3, 3000, 24, unit="TeV", name="energy_true")
          if true_energy_edges_tev is None else
          MapAxis.from_edges(true_energy_edges_tev, unit="TeV", name="energy_true", interp="log"))
    geom = WcsGeom.create(skydir=SkyCoord(center_radec[0] * u.deg, center_radec[1] * u.deg),
                          width=width_deg, binsz=binsz_deg, frame="icrs", axes=[e])
    return geom, et


def make_datasets(observations, geom, energy_true_axis, offset_max_deg=5.0, stack_by="type",
                  progress=None):
    """gammapy ``Datasets`` from ``observations`` (``DataStore.get_observations()``):

    stack_by="type": one MapDataset per event type (the observations of the type stacked),
    named after the type (e.g. ``KM2A_T1``); stack_by="observation": one per observation,
    named ``obs<OBS_ID>`` (for ``LightCurveEstimator``). The safe mask keeps the pixels within
    ``offset_max_deg`` of the reference direction (where events were exported)."""
    import astropy.units as u
    from gammapy.datasets import Datasets, MapDataset
    from gammapy.makers import MapDatasetMaker, SafeMaskMaker

    empty = MapDataset.create(geom, energy_axis_true=energy_true_axis, name="empty")
    maker = MapDatasetMaker(selection=["counts", "exposure", "background", "psf", "edisp"])
    safe = SafeMaskMaker(methods=["offset-max"], offset_max=offset_max_deg * u.deg)
    out = {}
    for i, obs in enumerate(observations):
        name = (str(obs.events.table.meta.get("EVTTYPE", "all")) if stack_by == "type"
                else f"obs{obs.obs_id}")
        d = maker.run(empty.copy(name=name), obs)
        d = safe.run(d, obs)
        if name in out:
            out[name].stack(d)
        else:
            out[name] = d
        if progress is not None:
            progress(i + 1)
    return Datasets(list(out.values()))


def datasets_by_type(store_dir, center_radec, **kw):
    """Open a data store and return (DataStore, stacked per-type Datasets)."""
    from gammapy.data import DataStore

    store = DataStore.from_dir(store_dir)
    geom_kw = {k: kw.pop(k) for k in ("width_deg", "binsz_deg", "energy_edges_tev",
                                      "true_energy_edges_tev") if k in kw}
    geom, et = map_geometry(center_radec, **geom_kw)
    return store, make_datasets(store.get_observations(), geom, et, **kw)

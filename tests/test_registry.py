"""The detector registry is the only place that knows the detectors: registering a toy detector
is enough for the pipeline to seed it, select its channels, fit it jointly with another one and
report its goodness of fit — no other file is edited (issue 14).

The toy: scintillator-like counters on a grid, Poisson counts with a Gaussian lateral profile
and plane-front times with 2 ns jitter. Two of them ("toy_a", "toy_b": different grids) are
fitted alone and jointly; the joint fit must agree with the truth within its errors and be more
precise than either alone.
"""
from __future__ import annotations

import subprocess
import sys
import types
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from detectors import registry
from detectors.block import ChannelBlock
from detectors.shower import FIELDS, Shower, shower_plane_coordinates

SIGMA_T_NS = 2.0


class ToyGeometry(NamedTuple):
    pos: object   # (n, 3) [m]
    live: object  # (n,) bool

    @classmethod
    def from_layout(cls, layout):
        return cls(np.asarray(layout, float), np.ones(len(layout), bool))


class ToyResponse(NamedTuple):
    n0: float = 200.0        # particles at the core for log10E = 5
    width_m: float = 60.0    # Gaussian lateral width
    noise: float = 0.05      # mean noise counts per channel

    @classmethod
    def nominal(cls, geometry):
        return cls()


class ToyPhysics(NamedTuple):
    is_gamma: float = 1.0


class ToyObserved(NamedTuple):
    counters: ChannelBlock


class ToyData(NamedTuple):
    geometry: ToyGeometry
    response: ToyResponse
    observed: ToyObserved


def _predict(shower, geometry, response, physics=None):
    r, delay = shower_plane_coordinates(shower, jnp.asarray(geometry.pos))
    mu = (response.n0 * 10.0 ** (shower.log10_energy - 5.0)
          * jnp.exp(-0.5 * (r / response.width_m) ** 2) + response.noise)
    return mu, shower.t0 + delay


def _nll(observed, pred, geometry, response, physics=None):
    mu, t = pred
    b = observed.counters
    use = b.valid & geometry.live
    n = b.signal
    counts = jnp.where(use, mu - n * jnp.log(mu), 0.0)
    times = jnp.where(use & b.hit, 0.5 * ((b.time - t) / SIGMA_T_NS) ** 2, 0.0)
    return jnp.sum(counts) + jnp.sum(times)


def _weights(pred, geometry, response, physics=None):
    mu, _ = pred
    live = jnp.asarray(geometry.live, mu.dtype)
    return live / mu, live * (1.0 - jnp.exp(-mu)) / SIGMA_T_NS ** 2


def _gof_counts(observed, pred, geometry, response):
    return [(observed.counters.signal, pred[0], observed.counters.valid & geometry.live)]


toy_module = types.SimpleNamespace(
    Geometry=ToyGeometry, Response=ToyResponse, Observed=ToyObserved, DEFAULT_PHYSICS=ToyPhysics(),
    predict=_predict, nll=_nll, information_weights=_weights, gof_counts=_gof_counts)


def _grid(spacing, offset):
    g = np.arange(-300.0, 300.0 + 1e-9, spacing) + offset
    x, y = np.meshgrid(g, g)
    return np.stack([x.ravel(), y.ravel(), np.zeros(x.size)], axis=1)


def _seed(block_name):
    def seed(blocks, geometry, response):
        b = blocks[block_name]
        w = jnp.where(b.valid, b.signal, 0.0)
        pos = jnp.asarray(geometry.pos)
        core = jnp.sum(w[:, None] * pos[:, :2], 0) / jnp.sum(w)
        total = jnp.sum(w)
        # Σμ ≈ n0 10^(E-5) 2π w² / spacing²: invert with the nominal response
        z = jnp.zeros((), w.dtype)
        area = 2 * jnp.pi * response.width_m ** 2 / (pos[1, 0] - pos[0, 0]) ** 2
        log10e = 5.0 + jnp.log10(jnp.maximum(total, 1.0) / (response.n0 * area))
        t0 = jnp.sum(jnp.where(b.hit, b.time * w, 0.0)) / jnp.sum(jnp.where(b.hit, w, 0.0))
        return Shower(core_x=core[0], core_y=core[1], zenith=z + 0.1, azimuth=z + 0.5,
                      log10_energy=log10e, xmax=z + 450.0, log_muon_scale=z, t0=t0)
    return seed


def _spec(name, spacing, offset):
    layout = _grid(spacing, offset)
    return registry.DetectorSpec(
        name=name, module=toy_module,
        blocks=(registry.BlockSpec(name, "id", {"id": np.int32, "time": np.float64,
                                                 "pe": np.float32},
                                   lambda lay: len(lay), lambda lay, h: np.asarray(h["id"])),),
        layout=lambda config="full": layout,
        physics=lambda is_gamma, settings: ToyPhysics(is_gamma),
        data=ToyData,
        select=lambda blocks, core, g, r, s: ToyData(g, r, ToyObserved(blocks[name])),
        seed=_seed(name), ground=True)


@pytest.fixture
def toys():
    specs = [registry.register(_spec("toy_a", 30.0, 0.0)),
             registry.register(_spec("toy_b", 40.0, 13.0))]
    yield specs
    for s in specs:
        registry.unregister(s.name)


def _simulate(spec, truth: Shower, rng):
    lay, geo, resp = spec.setup()
    blocks = []
    for i in range(len(truth.core_x)):
        one = Shower(*[np.float64(np.asarray(v)[i]) for v in truth])
        mu, t = (np.asarray(x) for x in _predict(one, geo, resp))
        n = rng.poisson(mu).astype(float)
        hit = n > 0
        blocks.append(ChannelBlock(signal=n, time=np.where(hit, t + rng.normal(0, SIGMA_T_NS, t.size), 0.0),
                                   hit=hit, valid=np.ones(n.size, bool),
                                   n_pulses=hit.astype(np.int32)))
    stacked = ChannelBlock(*[np.stack([getattr(b, f) for b in blocks]) for f in ChannelBlock._fields])
    return geo, resp, stacked


def test_a_registered_toy_detector_is_fitted_jointly(toys):
    from joint.config import ReconstructionConfig
    from joint.event import make_event
    from joint.pipeline import reconstruct_batch

    rng = np.random.default_rng(3)
    n_ev = 16
    truth = Shower(core_x=rng.uniform(-120, 120, n_ev), core_y=rng.uniform(-120, 120, n_ev),
                   zenith=np.radians(rng.uniform(5, 35, n_ev)), azimuth=rng.uniform(-np.pi, np.pi, n_ev),
                   log10_energy=rng.uniform(4.8, 5.2, n_ev), xmax=np.full(n_ev, 450.0),
                   log_muon_scale=np.zeros(n_ev), t0=rng.uniform(-20, 20, n_ev))
    geos, resps, blocks = {}, {}, {}
    for spec in toys:
        geos[spec.name], resps[spec.name], blocks[spec.name] = _simulate(spec, truth, rng)
    batch = make_event(blocks, run=np.zeros(n_ev, np.int32), event_id=np.arange(n_ev),
                       time_mjd=np.full(n_ev, -1.0))
    free = ("core_x", "core_y", "zenith", "azimuth", "log10_energy", "t0")
    cfg = ReconstructionConfig(detectors=("toy_b", "toy_a"), hypothesis="gamma", free=free,
                               xmax_prior=False, dtype="float64")
    assert cfg.detectors == ("toy_a", "toy_b")  # registry order
    out = reconstruct_batch(batch, geos, resps, cfg)
    assert set(out) >= {"nll_toy_a", "nll_toy_b", "gof_toy_a", "gof_toy_b", "reco_core_x"}
    ok = out["status"] == 0
    assert ok.sum() >= n_ev - 1, out["status"]
    for f in ("core_x", "core_y", "log10_energy", "t0"):
        pull = (out[f"reco_{f}"] - getattr(truth, f))[ok] / out[f"reco_{f}_err"][ok]
        assert np.all(np.abs(pull) < 5.0), (f, pull)
        assert 0.4 < np.std(pull) < 1.8, (f, np.std(pull))
    # the model describes the toys: goodness of fit ~ N(0, 1)
    assert np.abs(np.median(out["gof_toy_a"][ok])) < 2.0
    # jointly more precise than either alone (information adds)
    alone = {d: reconstruct_batch(make_event({d: blocks[d]}, run=batch.run, event_id=batch.event_id,
                                             time_mjd=batch.time_mjd),
                                  {d: geos[d]}, {d: resps[d]},
                                  ReconstructionConfig(detectors=(d,), hypothesis="gamma", free=free,
                                                       xmax_prior=False, dtype="float64"))
             for d in ("toy_a", "toy_b")}
    for f in ("core_x", "log10_energy"):
        joint_err = np.median(out[f"reco_{f}_err"][ok])
        for d, o in alone.items():
            assert joint_err < np.median(o[f"reco_{f}_err"][o["status"] == 0]), (f, d)


def test_registry_rejects_duplicates_and_unknown_names(toys):
    with pytest.raises(ValueError, match="already registered"):
        registry.register(_spec("toy_a", 30.0, 0.0))
    with pytest.raises(ValueError, match="unknown detector 'nope'"):
        registry.get("nope")
    with pytest.raises(ValueError, match="cannot remove the built detector"):
        registry.unregister("km2a")
    from joint.config import ReconstructionConfig

    with pytest.raises(ValueError, match="subset of"):
        ReconstructionConfig(detectors=("km2a", "nope"))


def test_built_detectors_are_in_the_registry():
    assert registry.names()[:3] == ("km2a", "wcda", "wfcta")
    assert registry.block_names()[:4] == ("km2a_ed", "km2a_md", "wcda", "wfcta")
    from joint.io.schema import groups, presence

    assert set(groups()) >= {"km2a_ed", "km2a_md", "wcda", "wfcta"}
    assert presence()["present_km2a"] == ("km2a_ed", "km2a_md")


# --------------------------------------------------------------------------------------------
# layers point one way: detectors <- joint <- analysis, calib <- lhaaso_joint (CLI, API)
# --------------------------------------------------------------------------------------------
LAYERS = {
    # package imported alone: packages that must NOT be imported as a consequence
    "detectors.registry": ("joint", "analysis", "calib", "lhaaso_joint"),
    "detectors.km2a": ("joint", "analysis", "calib", "lhaaso_joint"),
    "joint.runner": ("analysis", "calib", "lhaaso_joint"),
    "joint.pipeline": ("analysis", "calib", "lhaaso_joint", "uproot", "astropy"),
    "joint.fit": ("analysis", "calib", "lhaaso_joint", "uproot", "astropy"),
    "analysis.observables": ("calib", "lhaaso_joint"),
    "calib.provider": ("analysis", "lhaaso_joint"),
    "calib.learn": ("analysis", "lhaaso_joint"),
    "calib.periods": ("analysis", "lhaaso_joint"),
}


@pytest.mark.parametrize("module", sorted(LAYERS))
def test_each_layer_imports_alone(module):
    code = (f"import sys, {module}\n"
            f"bad = sorted({{m.split('.')[0] for m in sys.modules}} & set({LAYERS[module]!r}))\n"
            "print(','.join(bad))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.strip() == "", f"{module} imports {res.stdout.strip()}"


def test_no_function_level_import_crosses_a_layer():
    """Imports inside functions do not hide a dependency on a higher layer."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    above = {"detectors": {"joint", "analysis", "calib", "lhaaso_joint"},
             "joint": {"analysis", "calib", "lhaaso_joint"},
             "analysis": {"calib", "lhaaso_joint"}, "calib": {"analysis", "lhaaso_joint"}}
    bad = []
    for pkg, forbidden in above.items():
        for path in (root / pkg).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and node.module:
                    top = node.module.split(".")[0]
                elif isinstance(node, ast.Import):
                    top = node.names[0].name.split(".")[0]
                else:
                    continue
                if top in forbidden:
                    bad.append(f"{path.relative_to(root)}:{node.lineno} imports {top}")
    assert not bad, "\n".join(bad)


def test_no_module_imports_another_modules_private_names():
    """``from x import _name`` across modules: a private name is the module's own business."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    bad = []
    for pkg in ("detectors", "joint", "analysis", "calib", "lhaaso_joint"):
        for path in (root / pkg).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and node.module:
                    bad += [f"{path.relative_to(root)}:{node.lineno} {node.module}.{a.name}"
                            for a in node.names
                            if a.name.startswith("_") and not a.name.startswith("__")]
    assert not bad, "\n".join(bad)


def test_calibrations_cover_the_built_detectors():
    """calib's per-detector table is keyed by the registry's names and agrees with it."""
    from calib.db import CHANNEL_KINDS
    from calib.response import CALIBRATIONS, detector_of, init_params
    from detectors import registry

    assert tuple(CALIBRATIONS) == registry.BUILT
    for d, cal in CALIBRATIONS.items():
        spec = registry.get(d)
        assert set(cal.field_blocks.values()) <= set(spec.block_names)
        assert set(cal.params._fields) == set(cal.field_blocks)
        assert set(cal.learned_fields) <= set(spec.module.Response._fields)
        assert CHANNEL_KINDS[d] == tuple(spec.channel_kinds)
        _, _, nominal = spec.setup("full")
        assert detector_of(init_params(nominal)) == d

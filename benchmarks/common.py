"""Shared helpers of the benchmark scripts: simulate, reconstruct, resolution figures, CRB."""
from __future__ import annotations

import platform
import sys
import time
from pathlib import Path

import numpy as np

from analysis.performance import angle_deg, resolution_figures  # noqa: F401  (used by the scripts)

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def machine() -> str:
    import jax

    dev = jax.devices()[0]
    return f"{platform.node()} {platform.processor() or platform.machine()}, {dev.platform}:{dev.device_kind}, jax {jax.__version__}"


def on_array(core_x, core_y, layout, radius=20.0, n_min=3):
    """Quality cut: at least n_min EDs within ``radius`` of the (reconstructed) core."""
    from scipy.spatial import cKDTree

    tree = cKDTree(layout.ed_pos[:, :2])
    n = np.array([len(x) for x in tree.query_ball_point(np.c_[core_x, core_y], radius)])
    return n >= n_min


def detector_setup(detectors):
    """({name: layout}, {name: Geometry}, {name: Response}) at nominal response, full KM2A."""
    from joint.config import detector_setup as setup

    return setup(detectors)


def simulate_and_reconstruct(primary, log10_energy, n_events, seed, hypothesis, age_sigma=0.05,
                             batch_size=256, cfg=None, zenith_max=40.0, core_radius=400.0,
                             detectors=("km2a",), cores_on="array", fit_detectors=None,
                             log10_energy_range=None, **sim_kwargs):
    """Simulate ``n_events`` triggered events of ``detectors`` at a fixed energy (or in
    ``log10_energy_range``) and reconstruct them with ``fit_detectors`` (default: the same).

    Returns (records, output columns, timing dict)."""
    from joint.io.schema import to_event_batch
    from joint.config import ReconstructionConfig
    from lhaaso_joint.api import reconstruct_records
    from joint.simulation import simulate_records

    lays, geos, resps = detector_setup(detectors)
    t0 = time.perf_counter()
    rng = log10_energy_range or (log10_energy, log10_energy)
    rec, thrown = simulate_records(n_events, primary=primary, log10_energy_range=rng,
                                   zenith_max_deg=zenith_max, core_radius_m=core_radius, seed=seed,
                                   km2a_layout=lays.get("km2a"), wcda_layout=lays.get("wcda"),
                                   wfcta_layout=lays.get("wfcta"),
                                   age_sigma=age_sigma, detectors=detectors, cores_on=cores_on,
                                   **sim_kwargs)
    t_sim = time.perf_counter() - t0
    cfg = cfg or ReconstructionConfig(hypothesis=hypothesis,
                                      detectors=tuple(fit_detectors or detectors))
    t0 = time.perf_counter()
    batch = to_event_batch(rec, km2a=lays.get("km2a"), wcda=lays.get("wcda"),
                           wfcta=lays.get("wfcta"), as_jax=False)
    out = reconstruct_records(batch, geos, resps, cfg, batch_size=batch_size)
    t_reco = time.perf_counter() - t0
    return rec, out, {"simulate_s": t_sim, "reconstruct_s": t_reco, "thrown": thrown}


_CLASSES: dict = {}


def _nuisance_config_class():
    """One subclass per process (equal configurations must compare equal: compilation caches)."""
    if "nuis" not in _CLASSES:
        import dataclasses

        from joint.config import ReconstructionConfig

        @dataclasses.dataclass(frozen=True)
        class WFCTANuisanceConfig(ReconstructionConfig):
            wfcta_nuisance_sigmas: tuple | None = None
            wfcta_model_rel_sigma: float = 0.0

        _CLASSES["nuis"] = WFCTANuisanceConfig
    return _CLASSES["nuis"]


def nuisance_config(base, sigmas=None, model_rel_sigma=0.0):
    """``base`` (a ReconstructionConfig) with WFCTA's nuisance priors ``sigmas`` ((σ_width,
    σ_lateral); None: ``detectors.wfcta.NUISANCE_SIGMAS``; (0, 0): off) and pixel model
    uncertainty κ: the registry reads ``wfcta_nuisance_sigmas`` / ``wfcta_model_rel_sigma``
    from the settings (joint.config's ReconstructionConfig does not carry them yet, so a
    subclass here adds them; its repr keys the compiled programs)."""
    import dataclasses

    from joint.config import ReconstructionConfig

    WFCTANuisanceConfig = _nuisance_config_class()
    fields = {f.name: getattr(base, f.name) for f in dataclasses.fields(ReconstructionConfig)}
    return WFCTANuisanceConfig(**fields, wfcta_nuisance_sigmas=None if sigmas is None else tuple(sigmas),
                               wfcta_model_rel_sigma=float(model_rel_sigma))


def reconstruct(rec, cfg, batch_size=256):
    """Reconstruct simulated records ``rec`` with ``cfg``: (output columns, seconds)."""
    from joint.io.schema import to_event_batch
    from lhaaso_joint.api import reconstruct_records

    lays, geos, resps = detector_setup(cfg.detectors)
    t0 = time.perf_counter()
    batch = to_event_batch(rec, km2a=lays.get("km2a"), wcda=lays.get("wcda"),
                           wfcta=lays.get("wfcta"), as_jax=False)
    out = reconstruct_records(batch, geos, resps, cfg, batch_size=batch_size)
    return out, time.perf_counter() - t0


def crb_covariances(rec, hypothesis, cfg=None):
    """Cramér–Rao covariance (B, 8, 8) of every event at its TRUE shower, on the same active
    channels (around the true core), detectors and free parameters as the fit (``cfg``)."""
    import jax
    import jax.numpy as jnp

    from detectors import km2a, wcda
    from detectors.primaries import shower_from_truth
    from joint import fit as fitmod
    from joint.io.schema import to_event_batch
    from detectors.registry import select_km2a, select_wcda
    from joint.likelihood import xmax_prior_residual
    from joint.config import ReconstructionConfig, GAMMA_LOG_MUON_SCALE

    cfg = cfg or ReconstructionConfig(hypothesis=hypothesis)
    lays, geos, resps = detector_setup(cfg.detectors)
    batch = to_event_batch(rec, km2a=lays.get("km2a"), wcda=lays.get("wcda"),
                           wfcta=lays.get("wfcta"), as_jax=False)
    truth = shower_from_truth(rec, dtype=jnp.float64)
    truth = truth._replace(t0=jnp.zeros_like(truth.t0))
    if hypothesis == "gamma":
        truth = truth._replace(log_muon_scale=jnp.full_like(truth.t0, GAMMA_LOG_MUON_SCALE))
    fc = cfg.fit_config
    prior = cfg.prior
    blocks = {}
    if "km2a" in cfg.detectors:
        blocks["km2a_ed"], blocks["km2a_md"] = batch.km2a_ed, batch.km2a_md
    if "wcda" in cfg.detectors:
        blocks["wcda"] = batch.wcda
    if "wfcta" in cfg.detectors:
        blocks["wfcta"] = batch.wfcta

    def one(shower, blk):
        core = jnp.stack([shower.core_x, shower.core_y])
        parts = []
        if "km2a" in cfg.detectors:
            d = select_km2a(blk["km2a_ed"], blk["km2a_md"], core, geos["km2a"], resps["km2a"],
                            cfg.n_ed, cfg.n_md)
            parts.append((km2a, d, cfg.physics_of("km2a")))
        if "wcda" in cfg.detectors:
            d = select_wcda(blk["wcda"], core, geos["wcda"], resps["wcda"], cfg.n_wcda)
            parts.append((wcda, d, cfg.physics_of("wcda")))
        if "wfcta" in cfg.detectors:
            from detectors import wfcta
            from detectors.registry import select_wfcta

            d = select_wfcta(blk["wfcta"], geos["wfcta"], resps["wfcta"])
            parts.append((wfcta, d, cfg.physics_of("wfcta")))

        def stats(s):
            out = []
            for mod, d, phys in parts:
                out += mod.fisher_stats(s, d.geometry, d.response, phys)
            if prior is not None:
                r = xmax_prior_residual(s, prior)
                out = out + [(r, jnp.ones_like(r), jnp.ones_like(r))]
            return out
        return fitmod.cramer_rao(stats, shower, fc)

    f = jax.jit(jax.vmap(one))
    out = []
    for s in range(0, len(rec["event_id"]), 128):
        sl = slice(s, s + 128)
        sub = lambda t: jax.tree_util.tree_map(lambda a: jnp.asarray(a)[sl], t)
        out.append(np.asarray(f(sub(truth), sub(blocks))))
    return np.concatenate(out)


def crb_figures(cov, rec, rng_seed=0, n_draw=200):
    """68% angular containment [deg], 68% core error [m] and σ(log10 E) predicted by the CRB:
    Gaussian draws from each event's bound, pooled like the real errors."""
    rng = np.random.default_rng(rng_seed)
    from detectors.shower import FIELDS

    iz, ia, ix, iy, ie = (FIELDS.index(f) for f in ("zenith", "azimuth", "core_x", "core_y", "log10_energy"))
    ang, core, de = [], [], []
    for k in range(cov.shape[0]):
        c = cov[k]
        if not np.all(np.isfinite(c[np.ix_([iz, ia, ix, iy, ie], [iz, ia, ix, iy, ie])])):
            continue
        sub = c[np.ix_([iz, ia, ix, iy, ie], [iz, ia, ix, iy, ie])]
        d = rng.multivariate_normal(np.zeros(5), sub + 1e-18 * np.eye(5), size=n_draw, method="eigh")
        z, a = rec["true_zenith"][k], rec["true_azimuth"][k]
        ang.append(angle_deg(z + d[:, 0], a + d[:, 1], np.full(n_draw, z), np.full(n_draw, a)))
        core.append(np.hypot(d[:, 2], d[:, 3]))
        de.append(d[:, 4])
    ang, core, de = (np.concatenate(x) for x in (ang, core, de))
    return {"ang68": float(np.percentile(ang, 68)), "core68": float(np.percentile(core, 68)),
            "sigma_log10E": float(np.std(de)),
            "E_res68_pct": float(100 * np.percentile(np.abs(10 ** de - 1), 68))}



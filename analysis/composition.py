"""Light/heavy mass separation with Xmax and the muon content (issue 6, item 4).

Pure numpy figures of merit on reconstructed events:

* :func:`purity_efficiency`, :func:`efficiency_at_purity`, :func:`threshold_at_purity`: a
  selection ``score >= threshold`` keeps light-like events (higher score = lighter); purity
  ``N_light / (N_light + N_heavy)`` of the selection and efficiency
  ``N_light,selected / N_light,all``, optionally with event weights (a flux mix);
* :class:`ElongationCut`: the energy-dependent Xmax cut, Xmax centred on a linear function of
  log10 E (the mean elongation of the training sample);
* :func:`nmu_ne_variable`: log10(Nmu / Ne^0.86) of the KM2A observables;
* :class:`FisherDiscriminant`: a linear Fisher discriminant in (Xmax, log10(Nmu/Ne^0.86)),
  each variable centred on a linear function of log10 E, trained on an independent sample;
* :func:`robust_stats`, :func:`binned_stats`, :func:`energy_resolution`: resolution and bias
  (median, 68% half-width, std, counts).

The driver that produces the events (:func:`simulate_sample`, :func:`reconstruct_sample`,
:func:`run_sample`: per-mass KM2A+WFCTA simulation, reconstructed three ways) and
:func:`summarise` (every table of ``benchmarks/light_heavy.py`` and of the example notebook
``examples/xmax_light_heavy.ipynb``) import the JAX pipeline lazily; the rest needs numpy only.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

__all__ = ["LIGHT_MASSES", "MASS_NAMES", "MASSES", "METHODS", "ENERGY_EDGES", "is_light",
           "purity_efficiency", "efficiency_at_purity", "threshold_at_purity", "ElongationCut",
           "nmu_ne_variable", "FisherDiscriminant", "robust_stats", "binned_stats",
           "energy_resolution", "flux_weights", "split_halves", "method_configs",
           "simulate_sample", "reconstruct_sample", "run_sample", "quality_mask", "summarise",
           "TABLE_METHODS", "TABLE_EDGES", "TABLE_PURITY", "binomial_fraction",
           "selection_counts", "composition_table", "dist_xmax_cross"]

#: mass numbers counted as light (H, He)
LIGHT_MASSES = (1, 4)
#: the four mass groups of the study and their names
MASSES = (1, 4, 14, 56)
MASS_NAMES = {1: "H", 4: "He", 14: "CNO", 56: "Fe"}
#: reconstruction methods: WFCTA with the geometry of a KM2A fit, KM2A alone, KM2A+WFCTA jointly
METHODS = ("wfcta", "km2a", "joint")
#: true log10(E/GeV) bins of the resolution tables (5.9–6.1: "1 PeV")
ENERGY_EDGES = (5.5, 5.7, 5.9, 6.1, 6.3, 6.5)
#: spectral index of the simulation (flat in log E, for even statistics per energy bin); events
#: are weighted to the flux's E^-2.7 (:func:`flux_weights`) for purities and efficiencies
SIM_SPECTRAL_INDEX = -1.0
FLUX_SPECTRAL_INDEX = -2.7
#: exponent of Ne in the muon-richness variable log10(Nmu / Ne^b)
NMU_NE_EXPONENT = 0.86
#: the methods of the composition table: the Dist baseline (WFCTA image centroid, geometry of the
#: KM2A fit), WFCTA alone (KM2A geometry), KM2A alone (its Xmax and Nμ/Ne), joint (Xmax), joint
#: with its Nμ/Ne (Fisher discriminant)
TABLE_METHODS = ("dist", "wfcta", "km2a", "joint", "joint_nmu")
TABLE_TITLES = {"dist": "Dist (KM2A geometry)", "wfcta": "WFCTA alone (KM2A geometry)",
                "km2a": "KM2A alone (Xmax+Nmu/Ne)", "joint": "joint (Xmax)",
                "joint_nmu": "joint + Nmu/Ne"}
#: true log10(E/GeV) bins of the composition table (0.3–3 PeV)
TABLE_EDGES = (5.5, 5.75, 6.0, 6.25, 6.5)
#: purity the light selection of each method is tuned to on the training half [M]
TABLE_PURITY = 0.90


def is_light(mass_number, light=LIGHT_MASSES):
    """Boolean array: the mass number is one of ``light``."""
    return np.isin(np.rint(np.asarray(mass_number, float)).astype(int), light)


# ------------------------------------------------------------------------------------------------
# purity and efficiency
# ------------------------------------------------------------------------------------------------
def _prepare(score, is_light_, weights):
    score = np.asarray(score, float)
    light = np.asarray(is_light_, bool)
    w = np.ones_like(score) if weights is None else np.asarray(weights, float)
    if not (score.shape == light.shape == w.shape):
        raise ValueError(f"score, is_light and weights differ in shape: {score.shape}, "
                         f"{light.shape}, {w.shape}")
    return score, light, w


def purity_efficiency(score, is_light, thresholds, weights=None):
    """Purity and efficiency of the selections ``score >= t`` for every ``t`` in ``thresholds``.

    purity = N_light,sel / (N_light,sel + N_heavy,sel) (NaN when nothing is selected);
    efficiency = N_light,sel / N_light,all, where "all" counts every light event given, a NaN
    score included (it is never selected). ``weights``: per-event weights (a flux mix).
    Returns (purity, efficiency, n_selected) arrays shaped like ``thresholds``
    (n_selected: sum of weights selected)."""
    score, light, w = _prepare(score, is_light, weights)
    t = np.asarray(thresholds, float)
    sel = np.isfinite(score)[None, :] & (score[None, :] >= t.reshape(-1, 1))
    wl = np.where(light, w, 0.0)
    n_light = (sel * wl).sum(1)
    n_sel = (sel * w).sum(1)
    total_light = wl.sum()
    with np.errstate(invalid="ignore", divide="ignore"):
        purity = np.where(n_sel > 0, n_light / np.where(n_sel > 0, n_sel, 1.0), np.nan)
        eff = n_light / total_light if total_light > 0 else np.full_like(n_light, np.nan)
    shape = t.shape
    return purity.reshape(shape), np.asarray(eff).reshape(shape), n_sel.reshape(shape)


def _curve(score, light, w):
    """Purity and efficiency after each distinct threshold, from the highest score down:
    (thresholds, purity, efficiency), ties grouped."""
    ok = np.isfinite(score)
    total_light = np.where(light, w, 0.0).sum()
    s, l, ww = score[ok], light[ok], w[ok]
    order = np.argsort(-s, kind="stable")
    s, l, ww = s[order], l[order], ww[order]
    cl = np.cumsum(np.where(l, ww, 0.0))
    ca = np.cumsum(ww)
    last = np.r_[s[1:] != s[:-1], True] if s.size else np.zeros(0, bool)  # end of a tie group
    with np.errstate(invalid="ignore", divide="ignore"):
        purity = cl[last] / ca[last]
        eff = cl[last] / total_light if total_light > 0 else np.full(last.sum(), np.nan)
    return s[last], purity, eff


def efficiency_at_purity(score, is_light, purity, weights=None):
    """The largest efficiency of a selection ``score >= t`` whose purity is at least ``purity``,
    interpolated linearly (in efficiency and purity) between the last threshold that reaches the
    purity and the next lower one. NaN when no threshold reaches it (or there is no light
    event). ``purity`` may be a scalar or an array (the result has its shape)."""
    score, light, w = _prepare(score, is_light, weights)
    thr, pur, eff = _curve(score, light, w)
    p = np.atleast_1d(np.asarray(purity, float))
    out = np.full(p.shape, np.nan)
    for i, target in enumerate(p):
        good = np.nonzero(pur >= target)[0]
        if good.size == 0 or not np.isfinite(eff).all():
            continue
        k = good[-1]
        if k + 1 >= pur.size:
            out[i] = eff[k]
            continue
        p0, p1, e0, e1 = pur[k], pur[k + 1], eff[k], eff[k + 1]
        f = (p0 - target) / (p0 - p1) if p0 > p1 else 0.0
        out[i] = e0 + f * (e1 - e0)
    return out.reshape(np.shape(purity)) if np.ndim(purity) else float(out[0])


def threshold_at_purity(score, is_light, purity, weights=None):
    """The lowest threshold (largest selection) whose purity is at least ``purity`` on these
    events (no interpolation): the cut to apply to an independent sample. NaN if unreachable."""
    score, light, w = _prepare(score, is_light, weights)
    thr, pur, _ = _curve(score, light, w)
    good = np.nonzero(pur >= purity)[0]
    return float(thr[good[-1]]) if good.size else float("nan")


# ------------------------------------------------------------------------------------------------
# discriminating variables
# ------------------------------------------------------------------------------------------------
def _polyfit(x, y, w, deg):
    ok = np.isfinite(x) & np.isfinite(y) & np.isfinite(w) & (w > 0)
    if ok.sum() <= deg:
        raise ValueError(f"need more than {deg} finite points to fit, got {ok.sum()}")
    # np.polyfit's weights multiply the residuals: sqrt of the event weights
    return np.polyfit(x[ok], y[ok], deg, w=np.sqrt(w[ok]))


@dataclass
class ElongationCut:
    """Energy-dependent Xmax cut: score = Xmax − (a + b·log10 E), with (a, b) the (weighted)
    least-squares line of Xmax against log10 E of a training sample (its mean elongation).
    A selection ``score >= t`` is the cut Xmax >= a + t + b·log10 E."""

    coeffs: np.ndarray = field(default_factory=lambda: np.zeros(2))

    @classmethod
    def fit(cls, log10_energy, xmax, weights=None, deg=1):
        x, y = np.asarray(log10_energy, float), np.asarray(xmax, float)
        w = np.ones_like(x) if weights is None else np.asarray(weights, float)
        return cls(_polyfit(x, y, w, deg))

    def centre(self, log10_energy):
        return np.polyval(self.coeffs, np.asarray(log10_energy, float))

    def score(self, log10_energy, xmax):
        return np.asarray(xmax, float) - self.centre(log10_energy)


def nmu_ne_variable(nmu, ne, exponent=NMU_NE_EXPONENT, nmu_floor=0.5):
    """log10(Nmu / Ne^exponent). Nmu below ``nmu_floor`` (no muon counted; negative values from
    noise subtraction) is set to the floor, half a muon by default, so that muon-poor events stay
    ranked as muon-poor; Ne <= 0 or a non-finite input gives NaN."""
    nmu = np.asarray(nmu, float)
    ne = np.asarray(ne, float)
    ok = np.isfinite(nmu) & np.isfinite(ne) & (ne > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        v = np.log10(np.maximum(nmu, nmu_floor)) - exponent * np.log10(np.where(ne > 0, ne, 1.0))
    return np.where(ok, v, np.nan)


@dataclass
class FisherDiscriminant:
    """Linear Fisher discriminant with energy-dependent centring.

    Each variable x_k is centred on a line in log10 E fitted on the training sample (all masses,
    weighted): r_k = x_k − (a_k + b_k·log10 E); then w = S_W⁻¹ (m_light − m_heavy) with S_W the
    (weighted) within-class covariance of r, and score = r · w. Light events score higher;
    w is normalised so that the light–heavy separation of the mean scores is 1 on the training
    sample (score in units of that separation)."""

    centring: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    w: np.ndarray = field(default_factory=lambda: np.zeros(0))
    offset: float = 0.0

    @classmethod
    def fit(cls, variables, log10_energy, is_light, weights=None, deg=1):
        """``variables``: (n, k) array (or a sequence of k arrays of length n)."""
        x = cls._as_matrix(variables)
        lg = np.asarray(log10_energy, float)
        light = np.asarray(is_light, bool)
        wt = np.ones(len(lg)) if weights is None else np.asarray(weights, float)
        ok = np.all(np.isfinite(x), 1) & np.isfinite(lg) & np.isfinite(wt) & (wt > 0)
        if not (ok & light).any() or not (ok & ~light).any():
            raise ValueError("the training sample needs finite light and heavy events")
        cen = np.stack([_polyfit(lg[ok], x[ok, k], wt[ok], deg) for k in range(x.shape[1])])
        r = x[ok] - np.stack([np.polyval(c, lg[ok]) for c in cen], 1)
        li, wi = light[ok], wt[ok]

        def moments(m):
            ww = wi[m] / wi[m].sum()
            mu = ww @ r[m]
            d = r[m] - mu
            return mu, (d * ww[:, None]).T @ d

        m_l, s_l = moments(li)
        m_h, s_h = moments(~li)
        sw = 0.5 * (s_l + s_h)
        sw = sw + 1e-12 * np.trace(sw) * np.eye(len(sw))
        w = np.linalg.solve(sw, m_l - m_h)
        sep = float(w @ (m_l - m_h))
        w = w / sep if sep > 0 else w
        offset = float(0.5 * w @ (m_l + m_h))
        return cls(cen, w, offset)

    @staticmethod
    def _as_matrix(variables):
        x = np.asarray(variables, float)
        if x.ndim == 1:
            x = x[:, None]
        elif not isinstance(variables, np.ndarray):  # a sequence of k columns
            x = x.T
        return x

    def residuals(self, variables, log10_energy):
        x = self._as_matrix(variables)
        lg = np.asarray(log10_energy, float)
        return x - np.stack([np.polyval(c, lg) for c in self.centring], 1)

    def score(self, variables, log10_energy):
        """r · w − offset (0 halfway between the class means of the training sample)."""
        return self.residuals(variables, log10_energy) @ self.w - self.offset


# ------------------------------------------------------------------------------------------------
# resolution and bias
# ------------------------------------------------------------------------------------------------
def robust_stats(residual):
    """Figures of a residual sample (non-finite values dropped): n, median (bias), mean,
    std, half68 = half the 16–84% interval, abs68 = 68% quantile of |residual|."""
    r = np.asarray(residual, float)
    r = r[np.isfinite(r)]
    if r.size == 0:
        return {"n": 0, "median": np.nan, "mean": np.nan, "std": np.nan, "half68": np.nan,
                "abs68": np.nan}
    q16, q50, q84 = np.percentile(r, [16, 50, 84])
    return {"n": int(r.size), "median": float(q50), "mean": float(r.mean()),
            "std": float(r.std(ddof=1)) if r.size > 1 else np.nan,
            "half68": float(0.5 * (q84 - q16)), "abs68": float(np.percentile(np.abs(r), 68))}


def binned_stats(x, residual, edges):
    """:func:`robust_stats` of ``residual`` in bins of ``x`` (``edges``: n+1 values; a value
    on the last edge counts in the last bin). Returns a list of dicts with ``lo``, ``hi``."""
    x = np.asarray(x, float)
    residual = np.asarray(residual, float)
    edges = np.asarray(edges, float)
    out = []
    for i in range(len(edges) - 1):
        lo, hi = edges[i], edges[i + 1]
        m = (x >= lo) & ((x < hi) if i < len(edges) - 2 else (x <= hi))
        out.append({"lo": float(lo), "hi": float(hi), **robust_stats(residual[m])})
    return out


def energy_resolution(reco_log10_energy, true_log10_energy):
    """Energy figures: sigma_log10E (std of log10 E_rec/E_true), res68_pct (68% quantile of
    |E_rec/E_true − 1|, %), bias_pct (median E_rec/E_true − 1, %), mean_bias_pct, n."""
    d = np.asarray(reco_log10_energy, float) - np.asarray(true_log10_energy, float)
    d = d[np.isfinite(d)]
    if d.size == 0:
        return {"n": 0, "sigma_log10E": np.nan, "res68_pct": np.nan, "bias_pct": np.nan,
                "mean_bias_pct": np.nan}
    ratio = 10.0 ** d
    return {"n": int(d.size), "sigma_log10E": float(d.std(ddof=1)) if d.size > 1 else np.nan,
            "res68_pct": float(100 * np.percentile(np.abs(ratio - 1), 68)),
            "bias_pct": float(100 * (np.median(ratio) - 1)),
            "mean_bias_pct": float(100 * (ratio.mean() - 1))}


# ------------------------------------------------------------------------------------------------
# sample: weights, halves
# ------------------------------------------------------------------------------------------------
def flux_weights(mass_number, true_log10_energy, composition=None,
                 sim_index=SIM_SPECTRAL_INDEX, flux_index=FLUX_SPECTRAL_INDEX):
    """Per-event weights that turn per-mass samples simulated with E^sim_index into the flux mix
    ``composition`` ({A: fraction}, default ``detectors.primaries.DEFAULT_COMPOSITION``) with
    E^flux_index: w ∝ E^(flux − sim), normalised so that each mass sums to its fraction. Apply
    to the whole simulated (triggered) sample, before any cut, so that cuts act on the weights."""
    if composition is None:
        from detectors.primaries import DEFAULT_COMPOSITION as composition
    a = np.rint(np.asarray(mass_number, float)).astype(int)
    lg = np.asarray(true_log10_energy, float)
    w = 10.0 ** ((flux_index - sim_index) * (lg - np.nanmin(lg)))
    out = np.zeros_like(w)
    total = sum(composition.values())
    for m, f in composition.items():
        sel = a == int(m)
        if sel.any():
            out[sel] = w[sel] * (f / total) / w[sel].sum()
    return out


def split_halves(mass_number, seed=0):
    """Random half of the events per mass (stratified): boolean training mask (the rest is the
    independent test half)."""
    a = np.rint(np.asarray(mass_number, float)).astype(int)
    rng = np.random.default_rng(seed)
    train = np.zeros(a.size, bool)
    for m in np.unique(a):
        idx = np.nonzero(a == m)[0]
        pick = rng.permutation(idx)[: (idx.size + 1) // 2]
        train[pick] = True
    return train


# ------------------------------------------------------------------------------------------------
# driver: simulate once, reconstruct three ways (JAX imported lazily)
# ------------------------------------------------------------------------------------------------
GEOMETRY_FIELDS = ("core_x", "core_y", "zenith", "azimuth")


def method_configs():
    """{method: ReconstructionConfig} of the three reconstructions (all hadron hypothesis):
    wfcta: WFCTA alone, log10 E and Xmax free, geometry fixed at a first KM2A fit, no Xmax prior;
    km2a: KM2A alone (default free fields, Xmax prior); joint: KM2A+WFCTA, every field free,
    seeded by the KM2A fit, the Xmax prior only for events without WFCTA images."""
    from joint.config import config_for

    # joint.config.config_for: the configurations of the CLI/README, so the compilations are
    # shared with them (and the KM2A fit with the first fits of "wfcta" and "joint")
    return {
        "wfcta": config_for(("wfcta",), "hadron", fix=GEOMETRY_FIELDS, geometry_from="km2a"),
        "km2a": config_for(("km2a",), "hadron"),
        "joint": config_for(("km2a", "wfcta"), "hadron"),
    }


def _concat_records(parts):
    import awkward as ak

    keys = [k for k in parts[0] if all(k in p for p in parts)]
    out = {}
    for k in keys:
        vals = [p[k] for p in parts]
        out[k] = (np.concatenate(vals) if isinstance(vals[0], np.ndarray)
                  else ak.concatenate(vals))
    out["event_id"] = np.arange(len(out["run"]), dtype=np.int64)
    return out


def simulate_sample(n_per_mass, seed, masses=MASSES, log10_energy_range=(5.5, 6.5),
                    spectral_index=SIM_SPECTRAL_INDEX, chunk=64, layouts=None, progress=None):
    """KM2A+WFCTA events of each mass (``n_per_mass`` triggered events each, seed ``seed + i``),
    directions within 5° of a telescope's axis and cores within 300 m of the telescopes
    (``cores_on="wfcta"``), E^spectral_index in ``log10_energy_range``. Returns (records of
    all masses, run = index of the mass, {A: thrown})."""
    from joint.simulation import simulate_records

    if layouts is None:
        from joint.config import detector_setup

        layouts = detector_setup(("km2a", "wfcta"))[0]
    parts, thrown = [], {}
    for i, a in enumerate(masses):
        rec, n_thrown = simulate_records(
            n_per_mass, primary=int(a), detectors=("km2a", "wfcta"), cores_on="wfcta",
            core_radius_m=300.0, log10_energy_range=tuple(log10_energy_range), seed=seed + i,
            run=i, km2a_layout=layouts["km2a"], wfcta_layout=layouts["wfcta"], chunk=chunk,
            spectral_index=spectral_index)
        parts.append(rec)
        thrown[int(a)] = int(n_thrown)
        if progress:
            progress(f"simulated {MASS_NAMES.get(int(a), a)}: {n_per_mass} events "
                     f"({n_thrown} thrown)")
    return _concat_records(parts), thrown


def reconstruct_sample(records, batch_size=None, methods=METHODS, setup=None, progress=None):
    """Reconstruct the same records with each method (:func:`method_configs`). Every batch is
    padded to ``batch_size`` (default: the memory-bounded ``joint.config.auto_batch_size`` of
    KM2A+WFCTA, 8 with the 3 GB default budget: the WFCTA fits with the profiled nuisances
    cost ~95 MB per event; the straggler pass uses the same size, so one compilation per method
    serves every batch).
    Returns ({method: output columns}, {method: seconds})."""
    from analysis.observables import observables
    from joint.config import auto_batch_size, detector_setup
    from joint.io.schema import to_event_batch
    from joint.pipeline import reconstruct_records

    batch_size = batch_size or auto_batch_size(("km2a", "wfcta"))
    lays, geos, resps = setup or detector_setup(("km2a", "wfcta"))
    cfgs = method_configs()
    n = len(records["event_id"])
    batch = to_event_batch(records, {"km2a": lays["km2a"], "wfcta": lays["wfcta"]}, as_jax=False)
    outs, seconds = {}, {}
    for m in methods:
        t0 = time.perf_counter()
        n_batches = -(-n // batch_size)
        done = [0]

        def report(k, m=m):
            done[0] += 1
            b = done[0]
            if progress and n_batches > 1 and (b < 3 or b % 10 == 0 or b == n_batches):
                progress(f"{m}: batch {b}/{n_batches} ({time.perf_counter() - t0:.1f} s)")

        outs[m] = reconstruct_records(batch, geos, resps, cfgs[m], batch_size, observables,
                                      progress=report)
        if m == "wfcta":
            # leakage of the cleaned images, for the Dist method's quality cuts
            from analysis.dist_xmax import image_leakage

            outs[m]["wfcta_leakage"] = image_leakage(batch.wfcta, geos["wfcta"], resps["wfcta"])
        seconds[m] = time.perf_counter() - t0
        if progress:
            progress(f"reconstructed {m}: {n} events in {seconds[m]:.0f} s")
    return outs, seconds


def run_sample(n_per_mass, seed, batch_size=None, progress=None, **sim_kwargs):
    """:func:`simulate_sample` then :func:`reconstruct_sample`: (records, outs, info) with info
    holding the thrown counts and the timings."""
    from joint.config import detector_setup

    setup = detector_setup(("km2a", "wfcta"))
    t0 = time.perf_counter()
    rec, thrown = simulate_sample(n_per_mass, seed, layouts=setup[0], progress=progress,
                                  **sim_kwargs)
    t_sim = time.perf_counter() - t0
    outs, seconds = reconstruct_sample(rec, batch_size=batch_size, setup=setup,
                                       progress=progress)
    return rec, outs, {"thrown": thrown, "simulate_s": t_sim, "reconstruct_s": seconds,
                       "n_per_mass": int(n_per_mass), "seed": int(seed)}


# ------------------------------------------------------------------------------------------------
# summary: every table of the study
# ------------------------------------------------------------------------------------------------
def quality_mask(records, out, method, statuses=(0,)):
    """Events analysed for a method: KM2A and WFCTA both triggered (the hybrid sample, the same
    for all methods), the fit status in ``statuses`` (default: converged, 0), with a cleaned
    WFCTA image when WFCTA is fitted (wfcta_size > 0)."""
    n = len(records["event_id"])
    hybrid = np.ones(n, bool)
    for d in ("present_km2a", "present_wfcta"):
        if d in records:
            hybrid &= np.asarray(records[d]) > 0
    ok = hybrid & np.isin(np.asarray(out["status"]), statuses) & np.isfinite(out["reco_xmax"])
    if method != "km2a" and "wfcta_size" in out:
        ok &= np.asarray(out["wfcta_size"]) > 0
    return ok


def _separation(x, lg, nmn, light, w, train, test, purities):
    res = {}
    ok_x = np.isfinite(x) & np.isfinite(lg)
    cut = ElongationCut.fit(lg[train & ok_x], x[train & ok_x], w[train & ok_x])
    s_x = cut.score(lg, x)
    ok_2 = ok_x & np.isfinite(nmn)
    fis = FisherDiscriminant.fit(np.c_[x, nmn][train & ok_2], lg[train & ok_2], light[train & ok_2],
                                 w[train & ok_2])
    s_2 = np.where(ok_2, fis.score(np.c_[x, nmn], lg), np.nan)
    for name, s, extra in (("xmax", s_x, {"elongation": cut.coeffs.tolist()}),
                           ("xmax_nmu", s_2, {"fisher_w": fis.w.tolist(),
                                              "centring": fis.centring.tolist()})):
        e = efficiency_at_purity(s[test], light[test], purities, w[test])
        row = {"eff_at_purity": {f"{p:.2f}": float(v) for p, v in zip(purities, e)}, **extra}
        # the cut chosen on the training half, applied to the test half
        applied = {}
        for p in purities:
            t = threshold_at_purity(s[train], light[train], p, w[train])
            pu, ef, _ = purity_efficiency(s[test], light[test], [t], w[test])
            applied[f"{p:.2f}"] = {"threshold": t, "purity": float(pu[0]), "efficiency": float(ef[0])}
        row["train_cut_on_test"] = applied
        # unweighted light/heavy counts of the test half
        row["n_test_light"] = int((test & light).sum())
        row["n_test_heavy"] = int((test & ~light).sum())
        res[name] = row
    return res, s_x, s_2


def summarise(records, outs, purities=(0.90, 0.95), edges=ENERGY_EDGES, split_seed=0,
              composition=None, table_edges=TABLE_EDGES, table_purity=None, dist_geometry=None):
    """Every figure of the study from simulated records and the three reconstructions.

    Returns a dict: ``status`` (census per method), ``n_quality``; ``xmax`` (per method, per
    mass and ``all``: :func:`binned_stats` of Xmax_rec − Xmax_true in true log10 E bins, plus the
    whole range); ``energy`` (per method: H+He in the 1 PeV bin and each mass over the whole
    range: :func:`energy_resolution`); ``xmax_loose`` (per method: Xmax figures with the fits
    stopped at the iteration limit included, and of those alone); ``xmax_common`` (every
    method on the events all methods analysed: Xmax over the whole range and at 1 PeV, H+He
    energy at 1 PeV); ``separation`` (per method: efficiencies at each purity of
    the Xmax cut and of the Fisher discriminant, test half, flux-weighted, relative to the
    analysed light events and — ``eff_at_purity_hybrid`` — to all hybrid light events);
    ``mean_xmax`` (per
    method and mass: mean reconstructed Xmax); ``table`` (the composition table of the five
    :data:`TABLE_METHODS`, Dist included: :func:`composition_table` in ``table_edges``, cuts
    tuned to ``table_purity`` (default :data:`TABLE_PURITY`) on the training half, flux
    weights); and ``events`` (per-event columns for plots)."""
    a = np.rint(np.asarray(records["true_mass_number"], float)).astype(int)
    light = is_light(a)
    lg_true = np.asarray(records["true_log10_energy"], float)
    x_true = np.asarray(records["true_xmax"], float)
    w = flux_weights(a, lg_true, composition)
    train = split_halves(a, split_seed)
    km = outs.get("km2a")
    nmn_km2a = nmu_ne_variable(km["nmu"], km["ne"]) if km is not None else np.full(a.size, np.nan)
    i1 = int(np.argmin(np.abs(np.asarray(edges[:-1]) + np.diff(edges) / 2 - 6.0)))
    pev = (edges[i1], edges[i1 + 1])
    summary = {"masses": [int(m) for m in MASSES if (a == m).any()], "edges": list(edges),
               "pev_bin": list(pev), "purities": list(purities), "status": {}, "n_quality": {},
               "xmax": {}, "xmax_loose": {}, "energy": {}, "separation": {}, "mean_xmax": {},
               "n_events": int(a.size), "n_hybrid": None, "events": {
                   "mass": a.tolist(), "true_log10_energy": lg_true.tolist(),
                   "true_xmax": x_true.tolist(), "weight": w.tolist(), "train": train.tolist()}}
    hybrid = np.ones(a.size, bool)
    for d in ("present_km2a", "present_wfcta"):
        if d in records:
            hybrid &= np.asarray(records[d]) > 0
    in_pev = (lg_true >= pev[0]) & (lg_true <= pev[1])
    masks, sep_scores = {}, {}
    for m, out in outs.items():
        st = np.asarray(out["status"])
        summary["status"][m] = {str(k): int((st == k).sum()) for k in range(4)}
        ok = quality_mask(records, out, m)
        masks[m] = ok
        summary["n_quality"][m] = {MASS_NAMES.get(int(mm), str(mm)): int((ok & (a == mm)).sum())
                                   for mm in summary["masses"]}
        dx = np.asarray(out["reco_xmax"], float) - x_true
        lg = np.asarray(out["reco_log10_energy"], float)
        per = {}
        for mm in summary["masses"]:
            sel = ok & (a == mm)
            per[MASS_NAMES[mm]] = {"bins": binned_stats(lg_true[sel], dx[sel], edges),
                                   "all": robust_stats(dx[sel])}
        per["all"] = {"bins": binned_stats(lg_true[ok], dx[ok], edges), "all": robust_stats(dx[ok])}
        summary["xmax"][m] = per
        # the same with the fits that stopped at the iteration limit (status 1) included
        loose = quality_mask(records, out, m, statuses=(0, 1))
        summary["xmax_loose"][m] = {"all": robust_stats(dx[loose]),
                                    "pev": robust_stats(dx[loose & in_pev]),
                                    "pev_max_iter_only": robust_stats(dx[loose & ~ok & in_pev]),
                                    "max_iter_only": robust_stats(dx[loose & ~ok])}
        en = {"light_pev": energy_resolution(lg[ok & light & in_pev], lg_true[ok & light & in_pev]),
              "light_all": energy_resolution(lg[ok & light], lg_true[ok & light])}
        for mm in summary["masses"]:
            sel = ok & (a == mm)
            en[MASS_NAMES[mm]] = energy_resolution(lg[sel], lg_true[sel])
            en[MASS_NAMES[mm] + "_pev"] = energy_resolution(lg[sel & in_pev], lg_true[sel & in_pev])
        summary["energy"][m] = en
        summary["mean_xmax"][m] = {MASS_NAMES[mm]: float(np.mean(out["reco_xmax"][ok & (a == mm)]))
                                   if (ok & (a == mm)).any() else np.nan
                                   for mm in summary["masses"]}
        # separation: Nmu/Ne from this method's own KM2A term when it has one (km2a, joint), else
        # from the KM2A-alone fit (WFCTA alone; its geometry comes from an internal KM2A fit
        # without the Xmax prior, whose Nmu/Ne reconstruct_batch does not return)
        nmn = nmu_ne_variable(out["nmu"], out["ne"]) if "nmu" in out else nmn_km2a
        ok_sep = ok & np.isfinite(nmn)
        try:
            sep, s_x, s_2 = _separation(np.asarray(out["reco_xmax"], float), lg, nmn, light, w,
                                        train & ok_sep, ~train & ok_sep, purities)
        except ValueError as err:  # too few events in the training half
            sep, s_x, s_2 = {"error": str(err)}, np.full(a.size, np.nan), np.full(a.size, np.nan)
        # efficiencies relative to every hybrid light event of the test half (fits that failed
        # or were cut count as not selected): scaled by the analysed fraction of light events
        wl_all = w[~train & hybrid & light].sum()
        frac = float(w[~train & ok_sep & light].sum() / wl_all) if wl_all > 0 else np.nan
        for row in sep.values():
            if isinstance(row, dict) and "eff_at_purity" in row:
                row["analysed_light_fraction"] = frac
                row["eff_at_purity_hybrid"] = {p: e * frac for p, e in row["eff_at_purity"].items()}
        summary["separation"][m] = sep
        sep_scores[m] = (np.where(ok_sep, s_x, np.nan), np.where(ok_sep, s_2, np.nan))
        summary["events"][m] = {"quality": ok.tolist(), "reco_xmax": _round(out["reco_xmax"]),
                                "reco_log10_energy": _round(lg, 4), "nmu_ne": _round(nmn, 4),
                                "score_xmax": _round(s_x, 3), "score_xmax_nmu": _round(s_2, 4),
                                "status": st.tolist()}
    summary["n_hybrid"] = int(hybrid.sum())
    summary["table"] = _table(records, outs, masks, sep_scores, hybrid, train, w, table_edges,
                              table_purity, dist_geometry)
    # every method on the same events: those all of them analysed
    common = np.logical_and.reduce(list(masks.values())) if masks else np.zeros(a.size, bool)
    summary["xmax_common"] = {"n": int(common.sum()), "methods": {}}
    for m, out in outs.items():
        dx = np.asarray(out["reco_xmax"], float) - x_true
        lg = np.asarray(out["reco_log10_energy"], float)
        summary["xmax_common"]["methods"][m] = {
            "all": robust_stats(dx[common]), "pev": robust_stats(dx[common & in_pev]),
            "energy_light_pev": energy_resolution(lg[common & light & in_pev],
                                                  lg_true[common & light & in_pev])}
    return summary


def _round(x, nd=1):
    x = np.asarray(x, float)
    return [None if not np.isfinite(v) else round(float(v), nd) for v in x]


# ------------------------------------------------------------------------------------------------
# the composition table (issue 16): five methods on the same events, per energy bin and mass
# ------------------------------------------------------------------------------------------------
def binomial_fraction(k_weight, n_weight, n_weight2=None):
    """Fraction p = k/n and its binomial error sqrt(p(1−p)/n_eff); with event weights, ``k`` and
    ``n`` are sums of weights and n_eff = n²/Σw² (``n_weight2`` = Σw² of the n events; None:
    unit weights, n_eff = n). NaN when n = 0."""
    k, n = float(k_weight), float(n_weight)
    if n <= 0:
        return float("nan"), float("nan")
    p = k / n
    n_eff = n if n_weight2 is None else n * n / float(n_weight2)
    return p, float(np.sqrt(max(p * (1.0 - p), 0.0) / n_eff))


def selection_counts(selected, light, population, weights=None):
    """Purity and efficiency of a light selection on a ``population`` of events (bool masks):
    N_light,all = light events of the population (a failed fit is in it, not selected);
    purity = N_light,sel / (N_light,sel + N_heavy,sel), efficiency = N_light,sel / N_light,all,
    with binomial errors (:func:`binomial_fraction`; weights: sums of weights, effective
    counts). Returns a dict with the unweighted counts too."""
    sel = np.asarray(selected, bool) & np.asarray(population, bool)
    light = np.asarray(light, bool)
    pop = np.asarray(population, bool)
    w = np.ones(sel.shape) if weights is None else np.asarray(weights, float)
    wl_sel, w_sel = w[sel & light].sum(), w[sel].sum()
    wl_all = w[pop & light].sum()
    q2 = None if weights is None else (w[sel] ** 2).sum()
    e2 = None if weights is None else (w[pop & light] ** 2).sum()
    pur, pur_err = binomial_fraction(wl_sel, w_sel, q2)
    eff, eff_err = binomial_fraction(wl_sel, wl_all, e2)
    return {"n_light_all": int((pop & light).sum()), "n_light_sel": int((sel & light).sum()),
            "n_heavy_sel": int((sel & ~light).sum()), "purity": pur, "purity_err": pur_err,
            "efficiency": eff, "efficiency_err": eff_err}


def composition_table(xmax, analysed, scores, true_xmax, true_log10_energy, mass_number,
                      population, train, weights=None, purity=TABLE_PURITY, edges=TABLE_EDGES,
                      masses=MASSES):
    """The composition table of every method (all numpy; dicts keyed by method):

    xmax : reconstructed Xmax (n,); analysed : (n,) bool, the events whose Xmax the method
        reports (quality cuts passed); scores : light-likeness (higher = lighter; NaN = no
        score, never selected).
    population : (n,) bool, every triggered hybrid event (the same for all methods);
    train : (n,) bool, the training half: the cut of each method is the lowest score threshold
        reaching ``purity`` on the analysed training events (:func:`threshold_at_purity`,
        ``weights``); purity and efficiency are measured on the test half (``population &
        ~train``), per true-energy bin and over the whole range, N_light,all counting every light
        event of the population (failed fits and cut events included).
    Xmax per mass and bin (:func:`binned_stats` of reco − true; std, 68% half-width, median
    bias) on each method's analysed events of the whole population (the trained cuts do not
    touch Xmax; the Dist calibration must be out of sample, :func:`dist_xmax_cross`)."""
    a = np.rint(np.asarray(mass_number, float)).astype(int)
    light = is_light(a)
    lg = np.asarray(true_log10_energy, float)
    xt = np.asarray(true_xmax, float)
    pop = np.asarray(population, bool)
    train = np.asarray(train, bool)
    w = np.ones(a.size) if weights is None else np.asarray(weights, float)
    edges = np.asarray(edges, float)
    nb = len(edges) - 1
    in_bin = [(lg >= edges[i]) & ((lg < edges[i + 1]) if i < nb - 1 else (lg <= edges[i + 1]))
              for i in range(nb)]
    table = {"edges": edges.tolist(), "purity_target": float(purity), "methods": {}}
    for m in xmax:
        x = np.asarray(xmax[m], float)
        ok = np.asarray(analysed[m], bool) & pop & np.isfinite(x)
        s = np.where(ok, np.asarray(scores[m], float), np.nan)
        res = {"xmax": {}, "analysed_fraction": float(ok[pop].mean()) if pop.any() else np.nan}
        dx = x - xt
        for mm in masses:
            sel = ok & (a == mm)
            res["xmax"][MASS_NAMES[mm]] = {"bins": binned_stats(lg[sel], dx[sel], edges),
                                           "all": robust_stats(dx[sel])}
        tr = train & np.isfinite(s)
        thr = (threshold_at_purity(s[tr], light[tr], purity, w[tr])
               if (tr & light).any() else float("nan"))
        chosen = np.isfinite(s) & (s >= thr) if np.isfinite(thr) else np.zeros(a.size, bool)
        test = pop & ~train
        res["threshold"] = thr
        res["selection"] = {"bins": [selection_counts(chosen, light, test & b, w) for b in in_bin],
                            "all": selection_counts(chosen, light, test, w)}
        table["methods"][m] = res
    return table


def dist_xmax_cross(records, out, train, geometry=None, progress=None):
    """The Dist estimate (``analysis.dist_xmax.DistCalibration``) of every event from the WFCTA
    image parameters of ``out`` (the "wfcta" method: Hillas parameters and geometry of the KM2A
    fit; ``wfcta_leakage`` when present) — calibrated on the true Xmax of the hybrid events of
    one half and applied to the other (``cross``: each event out of sample), and calibrated on
    the training half only (``train_cal``: for the selection, trained on that half). Returns a
    dict of (n,) arrays, NaN where no image passes the cuts (or a calibration failed: ``error``).
    """
    from analysis import dist_xmax as D

    n = len(records["event_id"])
    res = {"cross": np.full(n, np.nan), "train_cal": np.full(n, np.nan),
           "n_images": np.zeros(n, int)}
    need = ("hillas_size", "hillas_x", "hillas_y", "hillas_length", "reco_core_x")
    if out is None or not all(k in out for k in need):
        res["error"] = "no WFCTA image parameters"
        return res
    if geometry is None:
        from joint.config import detector_setup

        geometry = detector_setup(("wfcta",))[1]["wfcta"]
    cols = {k: np.asarray(v) for k, v in out.items() if k.startswith(("hillas_", "reco_"))}
    f, ls, keep = D.dist_xmax_event_features(cols, geometry, "reco",
                                             leakage=out.get("wfcta_leakage"))
    hybrid = np.ones(n, bool)
    for d in ("present_km2a", "present_wfcta"):
        if d in records:
            hybrid &= np.asarray(records[d]) > 0
    keep &= hybrid[:, None]
    xt = np.asarray(records["true_xmax"], float)
    train = np.asarray(train, bool)
    sub = lambda m: ({k: v[m] for k, v in f.items()}, ls[m], keep[m])
    try:
        for half in (train, ~train):
            cal = D.DistCalibration.fit(*sub(half), xt[half])
            x, _, nimg = cal.predict(*sub(~half))
            res["cross"][~half] = x
            res["n_images"][~half] = nimg
            if half is train:
                res["train_cal"] = cal.predict(f, ls, keep)[0]
                res["calibration_images"] = cal.n_images
    except (ValueError, np.linalg.LinAlgError) as err:
        res["error"] = str(err)
        res["cross"][:] = np.nan
        res["train_cal"][:] = np.nan
    return res


def _table(records, outs, masks, sep_scores, hybrid, train, w, edges, purity, dist_geometry):
    """:func:`composition_table` of the :data:`TABLE_METHODS` available in ``outs``."""
    a = np.rint(np.asarray(records["true_mass_number"], float)).astype(int)
    lg_true = np.asarray(records["true_log10_energy"], float)
    x_true = np.asarray(records["true_xmax"], float)
    xmax, analysed, scores = {}, {}, {}
    dist = dist_xmax_cross(records, outs.get("wfcta"), train, dist_geometry)
    if "wfcta" in outs:
        # Dist: out-of-sample Xmax; the selection: the calibration of the training half, Xmax
        # centred on its elongation in the energy of the KM2A fit (Dist measures no energy)
        e_src = outs["km2a"] if "km2a" in outs else outs["wfcta"]
        lg = np.asarray(e_src["reco_log10_energy"], float)
        xmax["dist"] = dist["cross"]
        analysed["dist"] = hybrid & np.isfinite(dist["cross"])
        xd = dist["train_cal"]
        fit_on = train & hybrid & np.isfinite(xd) & np.isfinite(lg)
        try:
            cut = ElongationCut.fit(lg[fit_on], xd[fit_on], w[fit_on])
            scores["dist"] = np.where(hybrid, cut.score(lg, xd), np.nan)
        except ValueError:
            scores["dist"] = np.full(a.size, np.nan)
    for m, v in (("wfcta", 0), ("km2a", 1), ("joint", 0), ("joint_nmu", 1)):
        src = "joint" if m == "joint_nmu" else m
        if src in outs:
            xmax[m] = np.asarray(outs[src]["reco_xmax"], float)
            analysed[m] = masks[src]
            scores[m] = sep_scores[src][v]
    tab = composition_table(xmax, analysed, scores, x_true, lg_true, a, hybrid, train, w,
                            TABLE_PURITY if purity is None else purity, edges)
    # every method's Xmax on the events all of them analysed
    common = np.logical_and.reduce([analysed[m] for m in xmax]) if xmax else hybrid & False
    tab["common"] = {"n": int(common.sum()), "methods": {m: {
        MASS_NAMES[mm]: robust_stats((xmax[m] - x_true)[common & (a == mm)])
        for mm in MASSES if (a == mm).any()} for m in xmax}}
    tab["dist_info"] = {k: v for k, v in dist.items() if not isinstance(v, np.ndarray)}
    return tab

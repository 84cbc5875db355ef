"""``make demo``: what the framework can do so far, on small embedded samples, in seconds.

1. Truth generator: a mixed-composition sample at 0.3-3 PeV; sampled Xmax moments per mass
   next to the generalised-Gumbel parameterisation (EPOS-LHC).
2. The project's event file: write the sample, read it back, check it is identical.
3. LHAASO's own G4KM2A sample (``../shared/data/lhaaso/km2a/KM2AMCTest.root`` or
   ``$LHAASO_SHARED_DATA``): read, put on the real KM2A layout, and compare the charge-weighted
   centroid of the 10 largest ED signals with the true core.
4. Plots in the output folder: Xmax distributions per mass, the LHAASO layout with one event.
5. KM2A end to end: simulate a short run of photons and protons (30-300 TeV), write it, read it
   back, reconstruct it with the batched fitter, print a resolution table and plot the errors.
6. WCDA end to end: photons and protons of 1-10 TeV on the ponds, WCDA-only fits (photon
   hypothesis for both, as a gamma-ray analysis does), resolution table, compactness and PINCness
   of both; then photons of 100 TeV on the ponds fitted by KM2A alone and by KM2A+WCDA jointly.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

MASSES = {"H": 1, "He": 4, "CNO": 14, "Fe": 56}


def shared_data_dir() -> Path | None:
    env = os.environ.get("LHAASO_SHARED_DATA")
    cands = [Path(env)] if env else []
    here = Path(__file__).resolve().parents[1]
    cands += [here.parent / "shared" / "data", here / "shared" / "data", Path("/work/shared/data")]
    for c in cands:
        if (c / "lhaaso").is_dir():
            return c
    return None


def centroid_cores(batch, layout, n_top=10):
    """Charge-weighted centroid of the ``n_top`` largest ED signals per event, (B, 2) [m]."""
    sig = np.where(np.asarray(batch.km2a_ed.hit), np.asarray(batch.km2a_ed.signal), 0.0)
    top = np.argsort(-sig, axis=1)[:, :n_top]
    w = np.take_along_axis(sig, top, axis=1)
    xy = layout.ed_pos[:, :2][top]
    return (w[..., None] * xy).sum(1) / w.sum(1)[:, None]


def run_demo(out: Path, n_events: int = 2000, seed: int = 7) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from detectors.layout import km2a_layout, wcda_layout, wfcta_layout
    from detectors.primaries import sample_primaries, xmax_moments
    from joint.io import read_file
    from joint.io.schema import read_events, to_event_batch, write_events

    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)

    # 1. truth generator ---------------------------------------------------------------------
    truth = sample_primaries(rng, n_events, primary="mixed", log10_energy_range=(5.5, 6.5))
    print(f"[1] truth generator: {n_events} mixed primaries, 0.3-3 PeV, EPOS-LHC Xmax")
    print(f"    {'mass':>4s} {'N':>5s} {'<Xmax> sample':>14s} {'model':>7s} {'rms sample':>11s} {'model':>7s}  [g/cm2]")
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, a in MASSES.items():
        sel = truth["true_mass_number"] == a
        x = truth["true_xmax"][sel]
        lg_ev = truth["true_log10_energy"][sel] + 9.0
        m, s = (np.asarray(v) for v in xmax_moments(lg_ev, float(a)))
        # model moments of the sampled energy mix: mean of means, total variance
        m_mix = m.mean()
        s_mix = np.sqrt((s ** 2).mean() + m.var())
        print(f"    {name:>4s} {sel.sum():5d} {x.mean():14.1f} {m_mix:7.1f} {x.std():11.1f} {s_mix:7.1f}")
        ax.hist(x, bins=40, range=(300, 1000), histtype="step", label=name)
    ax.set_xlabel("Xmax [g/cm²]")
    ax.set_ylabel("showers")
    ax.legend()
    ax.set_title("truth generator, 0.3–3 PeV, EPOS-LHC")
    fig.tight_layout()
    fig.savefig(out / "xmax_by_mass.png", dpi=100)
    plt.close(fig)

    # 2. own event file round trip -------------------------------------------------------------
    n = n_events
    records = {"run": np.ones(n, np.int32), "event_id": np.arange(n, dtype=np.int64),
               "time_mjd": np.full(n, 60000.0), **truth}
    path = out / "truth_sample.root"
    write_events(path, records)
    back = read_events(path)
    same = all(np.array_equal(np.asarray(back[k]), np.asarray(records[k])) for k in records)
    print(f"[2] wrote and read back {path}: {'identical' if same else 'DIFFERENT'}")
    if not same:
        return 1

    # 3. G4KM2A sample --------------------------------------------------------------------------
    km2a = km2a_layout("full")
    data = shared_data_dir()
    if data is None:
        print("[3] skipped: ../shared/data not found (set LHAASO_SHARED_DATA)")
        return 0
    g4 = data / "lhaaso" / "km2a" / "KM2AMCTest.root"
    rec = read_file(g4, km2a=km2a)
    batch = to_event_batch(rec, km2a=km2a, source=g4, as_jax=False)
    cen = centroid_cores(batch, km2a)
    true_xy = np.stack([rec["true_core_x"], rec["true_core_y"]], axis=1)
    err = np.hypot(*(cen - true_xy).T)
    total = np.where(batch.km2a_ed.hit, batch.km2a_ed.signal, 0).sum(1)
    order = np.argsort(-total)
    print(f"[3] {g4.name}: {len(err)} G4KM2A gamma events; centroid of the 10 largest ED signals vs true core")
    print(f"    {'E [TeV]':>8s} {'ED PE':>9s} {'ED hits':>7s} {'core error [m]':>15s}")
    for i in order[:12]:
        print(f"    {10 ** rec['true_log10_energy'][i] / 1e3:8.1f} {total[i]:9.0f} "
              f"{int(batch.km2a_ed.hit[i].sum()):7d} {err[i]:15.1f}")
    print(f"    median error, 12 largest: {np.median(err[order[:12]]):.1f} m; all: {np.median(err):.1f} m")

    # 4. layout plot with the largest event ------------------------------------------------------
    wcda, wfcta = wcda_layout(), wfcta_layout()
    i = order[0]
    fig, ax = plt.subplots(figsize=(7, 7))
    ax.scatter(km2a.ed_pos[:, 0], km2a.ed_pos[:, 1], s=0.5, c="0.7", label="ED")
    ax.scatter(km2a.md_pos[:, 0], km2a.md_pos[:, 1], s=3, c="tab:blue", marker="s", label="MD")
    ax.scatter(wcda.cell_pos[:, 0], wcda.cell_pos[:, 1], s=0.5, c="tab:cyan", label="WCDA cells")
    ax.scatter(wfcta.tel_pos[:, 0], wfcta.tel_pos[:, 1], s=30, c="tab:purple", marker="^", label="WFCTA")
    hit = batch.km2a_ed.hit[i]
    ax.scatter(km2a.ed_pos[hit, 0], km2a.ed_pos[hit, 1], s=4 + 4 * np.log1p(batch.km2a_ed.signal[i][hit]),
               c="tab:red", label=f"ED hits, event {rec['event_id'][i]}")
    ax.plot(*true_xy[i], "k*", ms=12, label="true core")
    ax.set_aspect("equal")
    ax.set_xlabel("x [m]")
    ax.set_ylabel("y [m]")
    ax.legend(loc="upper right", fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "layout_event.png", dpi=100)
    plt.close(fig)
    print(f"[4] plots: {out / 'xmax_by_mass.png'}, {out / 'layout_event.png'}")
    return km2a_run(out, seed=seed) or wcda_run(out, seed=seed)


def _errors(r):
    """(angular error [deg], core error [m], E_reco/E_true) of a reco tree's columns."""
    from detectors.shower import direction

    c = (np.asarray(direction(r["reco_zenith"], r["reco_azimuth"]))
         * np.asarray(direction(r["true_zenith"], r["true_azimuth"]))).sum(-1)
    ang = np.degrees(np.arccos(np.clip(c, -1, 1)))
    core = np.hypot(r["reco_core_x"] - r["true_core_x"], r["reco_core_y"] - r["true_core_y"])
    return ang, core, 10 ** (r["reco_log10_energy"] - r["true_log10_energy"])


def _row(label, r, summary):
    ok = r["status"] == 0
    ang, core, ratio = _errors(r)
    print(f"    {label:16s} {len(ok):4d} {100 * ok.mean():4.0f}% {np.percentile(ang[ok], 68):11.3f} "
          f"{np.percentile(core[ok], 68):10.2f} {100 * np.percentile(np.abs(ratio[ok] - 1), 68):7.1f}% "
          f"{100 * (np.median(ratio[ok]) - 1):+6.1f}% {summary['events_per_s']:6.1f}")
    return ok, ang, ratio


def _simulate_and_fit(out, name, cfg, n_events, seed, fit_detectors="auto", **sim):
    import uproot

    from joint.io.schema import write_events
    from lhaaso_joint.api import reconstruct_files
    from joint.simulation import simulate_records

    path = out / f"{name}.root"
    if not path.exists():
        rec, _ = simulate_records(n_events, seed=seed, **sim)
        write_events(path, rec)
    # one output per fit (two fits of the same events must not share a file); the demo's own
    # outputs are redone on every run (overwrite)
    tag = "" if fit_detectors == "auto" else "_" + "+".join(fit_detectors)
    reco = out / f"{name}{tag}_reco.root"
    summary = reconstruct_files([path], reco, cfg, batch_size=256, progress=False,
                                detectors=fit_detectors, overwrite=True)
    with uproot.open(reco) as f:
        return f["reco"].arrays(library="np"), summary


def wcda_run(out: Path, n_events: int = 150, seed: int = 7) -> int:
    """Step 6: WCDA alone (photons and protons, 1-10 TeV) and KM2A+WCDA (photons, 100 TeV)."""
    import matplotlib.pyplot as plt

    from joint.config import ReconstructionConfig

    print(f"[6] WCDA: simulate {n_events} photons and {n_events} protons, log10(E/GeV) 3-4, "
          "zenith < 40 deg, cores on the ponds; WCDA-only fits, photon hypothesis")
    print(f"    {'sample':16s} {'n':>4s} {'conv':>5s} {'ang68 [deg]':>11s} {'core68 [m]':>10s} "
          f"{'E res68':>8s} {'E bias':>7s} {'ev/s':>6s}   compactness  PINCness (medians)")
    gamma_cfg = ReconstructionConfig(hypothesis="gamma")
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for prim in ("gamma", "proton"):
        r, summary = _simulate_and_fit(out, f"wcda_{prim}", gamma_cfg, n_events, seed,
                                       primary=prim, detectors=("wcda",),
                                       log10_energy_range=(3.0, 4.0), cores_on="wcda")
        ok, ang, _ = _row(f"WCDA {prim}", r, summary)
        print(f"    {'':16s} {'':>53s} {np.median(r['compactness'][ok]):9.1f} "
              f"{np.median(r['pincness'][ok]):9.2f}")
        axes[0].hist(np.log10(np.maximum(r["compactness"][ok], 1e-2)), bins=40, range=(-1, 3),
                     histtype="step", label=prim)
        if prim == "gamma":
            axes[1].hist(ang[ok], bins=40, range=(0, 1.0), histtype="step", label="WCDA, 1-10 TeV")
    axes[0].set_xlabel("log10 compactness (N_hit / CxPE_45)")
    axes[0].legend()
    print("    KM2A+WCDA: 60 photons at 100 TeV on the ponds, fitted by KM2A alone and jointly")
    sim = dict(primary="gamma", detectors=("km2a", "wcda"), log10_energy_range=(5.0, 5.0),
               cores_on="wcda")
    for fit in (("km2a",), ("km2a", "wcda")):
        r, summary = _simulate_and_fit(out, "km2a_wcda_gamma", gamma_cfg, 60, seed,
                                       fit_detectors=fit, **sim)
        ok, ang, _ = _row("+".join(fit), r, summary)
        axes[1].hist(ang[ok], bins=40, range=(0, 1.0), histtype="step",
                     label=f"{'+'.join(fit)}, 100 TeV on ponds")
    axes[1].set_xlabel("angular error [deg]")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "wcda_demo.png", dpi=100)
    plt.close(fig)
    print(f"    plot: {out / 'wcda_demo.png'}")
    return 0


def km2a_run(out: Path, n_events: int = 200, seed: int = 7) -> int:
    """Step 5: simulate -> file -> reconstruct -> resolution table and plot."""
    import time

    import matplotlib.pyplot as plt
    import uproot

    from detectors.shower import direction
    from joint.io.schema import write_events
    from joint.config import ReconstructionConfig
    from lhaaso_joint.api import reconstruct_files
    from joint.simulation import simulate_records

    print(f"[5] KM2A: simulate {n_events} photons and {n_events} protons, log10(E/GeV) 4.5-5.5, "
          "zenith < 40 deg, cores within 400 m")
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    print(f"    {'primary':8s} {'n':>4s} {'conv':>5s} {'ang68 [deg]':>11s} {'core68 [m]':>10s} "
          f"{'E res68':>8s} {'E bias':>7s} {'ev/s':>6s}")
    for prim, hyp in (("gamma", "gamma"), ("proton", "hadron")):
        rec, thrown = simulate_records(n_events, primary=prim, log10_energy_range=(4.5, 5.5), seed=seed)
        path = out / f"km2a_{prim}.root"
        write_events(path, rec)
        t0 = time.perf_counter()
        summary = reconstruct_files([path], out / f"km2a_{prim}_reco.root",
                                    ReconstructionConfig(hypothesis=hyp), batch_size=256,
                                    progress=False, overwrite=True)
        with uproot.open(out / f"km2a_{prim}_reco.root") as f:
            r = f["reco"].arrays(library="np")
        ok = r["status"] == 0
        c = (np.asarray(direction(r["reco_zenith"], r["reco_azimuth"]))
             * np.asarray(direction(r["true_zenith"], r["true_azimuth"]))).sum(-1)
        ang = np.degrees(np.arccos(np.clip(c, -1, 1)))
        core = np.hypot(r["reco_core_x"] - r["true_core_x"], r["reco_core_y"] - r["true_core_y"])
        ratio = 10 ** (r["reco_log10_energy"] - r["true_log10_energy"])
        print(f"    {prim:8s} {len(ok):4d} {100 * ok.mean():4.0f}% {np.percentile(ang[ok], 68):11.3f} "
              f"{np.percentile(core[ok], 68):10.2f} {100 * np.percentile(np.abs(ratio[ok] - 1), 68):7.1f}% "
              f"{100 * (np.median(ratio[ok]) - 1):+6.1f}% {summary['events_per_s']:6.1f}")
        axes[0].hist(ang[ok], bins=40, range=(0, 1.0), histtype="step", label=prim)
        axes[1].hist(np.log10(ratio[ok]), bins=40, range=(-0.4, 0.4), histtype="step", label=prim)
    print("    (ev/s here includes compilation on first use and file I/O; see BENCHMARKS.md for throughput)")
    axes[0].set_xlabel("angular error [deg]")
    axes[1].set_xlabel("log10(E_reco / E_true)")
    for a in axes:
        a.legend()
    fig.tight_layout()
    fig.savefig(out / "km2a_resolution.png", dpi=100)
    plt.close(fig)
    print(f"    plot: {out / 'km2a_resolution.png'}")
    return 0

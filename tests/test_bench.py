"""Tiny run of the throughput benchmark (joint.bench) on 16 photons of 100 TeV in KM2A: the
batched production fit converges and reconstructs them as KM2A does at that energy, and it
reaches the minimum that iminuit, fitting the same likelihood one event at a time, finds.
(Rates are measured, not asserted: 16 events on a shared CPU say nothing about throughput.)"""
import math

import numpy as np
import pytest

pytest.importorskip("iminuit", reason="iminuit is needed for the batched-vs-iminuit benchmark")


#: heavy end-to-end checks: make test-slow
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def bench():
    from joint.bench import run_bench

    return run_bench(n_events=16, n_iminuit=4, batch_size=16, seed=5, out=None)


def test_batched_fit_converges_and_reconstructs_photons(bench):
    b = bench["batched"]
    assert b["n_events"] == 16 and bench["iminuit"]["n_events"] == 4
    # measured 16/16 (status 0 after the straggler passes)
    assert b["converged_fraction"] >= 0.85, b["status_counts"]
    assert sum(b["status_counts"]) == 16
    q = b["quality"]
    assert q["n"] == round(16 * b["converged_fraction"])
    # KM2A at 100 TeV: ~0.3 deg, ~1-2 m, sigma(log10 E) ~0.05 (measured 0.29, 1.3, 0.052)
    assert q["angle68_deg"] < 0.6 and q["core68_m"] < 5.0, q
    assert q["dlog10e_std"] < 0.12 and abs(q["dlog10e_mean"]) < 0.08, q
    for key in ("batched", "iminuit"):  # bookkeeping: the rates were measured
        assert math.isfinite(bench[key]["events_per_s"]) and bench[key]["events_per_s"] > 0


def test_batched_fit_finds_the_minimum_of_the_looped_fit(bench):
    """Events converged in both: iminuit (looped, float64 MIGRAD on the same float32 cost)
    never finds a point lower than the batched minimum by more than 0.01 in nll, and lands on
    the same minimum (|Δnll| < 0.01) in all but at most one event (measured: 3 of 4 within
    1e-4; in the fourth iminuit stopped 15.8 units higher)."""
    a = bench["agreement"]
    both = np.asarray(a["both_converged"])
    assert both.sum() >= 3, both
    dnll = np.asarray(a["nll_batched"])[both] - np.asarray(a["nll_iminuit"])[both]
    assert np.all(np.isfinite(dnll))
    assert np.all(dnll < 0.01), dnll
    assert np.sum(np.abs(dnll) < 0.01) >= both.sum() - 1, dnll
    assert a["n_both"] == both.sum()


def test_table_has_ratio_line():
    from joint.bench import format_table

    r = {"quality": {"angle68_deg": 0.1, "core68_m": 1.0, "dlog10e_std": 0.05}, "converged_fraction": 1.0,
         "n_events": 4, "events_per_s": 10.0, "first_call_s": 1.0, "fit_s": 0.4, "median_nfcn": 100,
         "median_ngrad": 10, "hesse_valid_fraction": 1.0}
    res = {"batched": dict(r, events_per_s=200.0), "batched_subset": dict(r, events_per_s=None),
           "iminuit": r, "n_events": 4, "batch_size": 4, "prepare_s": 0.1, "prepare_first_call_s": 1.0,
           "agreement": {"n_both": 4, "median_abs_dnll": 1e-4, "max_dnll": 1e-4}, "ratio": 20.0}
    assert "ratio: 20" in format_table(res).splitlines()[-1]

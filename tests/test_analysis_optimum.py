"""Optimum latent per curve on crafted curves whose minimum is known (see analysis_data)."""

import math

import numpy as np
import pandas as pd
import pytest
from analysis_data import OPTIMUM, bowl, curve_rows, make_row, offset, write_store
from scipy import stats

from analysis.optimum import find_optima, latent_stats, welch_interval
from analysis.results import load, usable
from trainables.errors import StoreError

CURVE = {"dataset": "cifar10", "filters": 64, "model": "dae"}


def optima(rows, sampler="mvg"):
    table = find_optima(latent_stats(usable(pd.DataFrame(rows))))
    return table[table["sampler"] == sampler].reset_index(drop=True)


def test_measured_and_smooth_minimum_of_a_bowl_in_log_latent():
    best = optima(curve_rows([CURVE], latents=(16, 32, 64, 128, 256, 512))).iloc[0]
    assert best["latent"] == 128  # 96 lies between 64 and 128 and is nearer 128 in log2
    assert best["fit_latent"] == pytest.approx(OPTIMUM)
    assert best["fit_score"] == pytest.approx(offset(CURVE))
    assert best["fit_note"] == "quadratic over 32-512"


@pytest.mark.parametrize(
    "latents, scores, note",
    [
        ((32, 64, 128), (2.0, 1.0, 2.0), "only 3 latent sizes"),
        (
            (16, 32, 64, 128, 256),
            (5.0, 4.0, 3.0, 2.0, 1.0),
            "edge of the measured latents (256): not bracketed",
        ),
        ((16, 32, 64, 128, 256), (10.0, 20.0, 5.0, 20.0, 10.0), "not convex"),
        (
            (16, 32, 64, 128, 256),
            (0.0, -0.01, 30.0, 60.0, 61.0),
            "outside the fitted latents 16-256",
        ),
    ],
)
def test_smooth_minimum_is_nan_and_says_why(latents, scores, note):
    best = optima(
        [
            make_row({**CURVE, "latent": latent}, mvg=s)
            for latent, s in zip(latents, scores, strict=True)
        ]
    ).iloc[0]
    assert math.isnan(best["fit_latent"]) and note in best["fit_note"]


def test_replicates_give_mean_std_and_a_t_interval():
    rows = [
        make_row({**CURVE, "latent": 64, "seed": seed}, mvg=50.0 + delta)
        for seed, delta in enumerate((-1, 0, 1))
    ]
    stats = latent_stats(usable(pd.DataFrame(rows))).query("score == 'mvg'").iloc[0]
    assert (stats["mean"], stats["std"], stats["n"]) == (50.0, 1.0, 3)
    # t(0.975, 2 dof) * std / sqrt(n)
    assert stats["ci_high"] - 50.0 == pytest.approx(4.302653 / math.sqrt(3))


@pytest.mark.parametrize("spread, expected", [(0.1, True), (20.0, False)])
def test_optimum_against_its_neighbours_by_welch_t_test(spread, expected):
    rows = [
        make_row({**CURVE, "latent": latent, "seed": seed}, mvg=depth + spread * delta)
        for latent, depth in ((32, 60.0), (64, 50.0), (128, 55.0), (256, 58.0))
        for seed, delta in enumerate((-1, 0, 1))
    ]
    best = optima(rows).iloc[0]
    assert best["latent"] == 64 and best["n"] == 3
    assert best["distinguishable"] == expected
    assert (best["p_below"] < 0.05) == expected and (best["p_above"] < 0.05) == expected


def test_single_runs_cannot_be_told_from_their_neighbours():
    best = optima(curve_rows([CURVE])).iloc[0]
    assert (
        best["distinguishable"] is None and math.isnan(best["std"]) and math.isnan(best["ci_low"])
    )


def test_curves_pool_seeds_and_searches_but_split_on_config_and_skip_failures():
    rows = [
        *curve_rows([CURVE], seeds=(0, 1)),
        {**make_row({**CURVE, "latent": 96, "seed": 2}), "search": "optuna", "grid": "optuna-run"},
        *curve_rows([{**CURVE, "epochs": 10}]),
        make_row({**CURVE, "latent": 96, "seed": 3}, status="diverged"),
    ]
    rows.append({**rows[0], "started_at": "2024-02-01T00:00:00+00:00"})  # the same trial run twice
    table = optima(rows)
    assert len(table) == 2 and set(table["epochs"]) == {100, 10}
    paper = table[table["epochs"] == 100].iloc[0]
    assert (paper["latent"], paper["n"], paper["n_latents"]) == (96, 3, 5)


def test_load_reads_part_files_whose_columns_are_null_in_some(tmp_path):
    rows = [make_row({**CURVE, "latent": 96, "seed": 9}, status="failed"), *curve_rows([CURVE])]
    store = write_store(rows, tmp_path / "results.parquet")
    (store / ".tmp-part.parquet").write_bytes(b"half written")
    write_store([make_row({**CURVE, "latent": 32, "seed": 9}, mvg=0.0)], store / "_superseded")
    loaded = load(store)
    assert len(loaded) == 6 and loaded["fd_mvg"].isna().sum() == 1
    assert usable(loaded)["fd_mvg"].dtype == float


def test_load_says_what_is_wrong_with_a_store(tmp_path):
    with pytest.raises(StoreError, match="no results store"):
        load(tmp_path / "absent.parquet")
    (tmp_path / "empty.parquet").mkdir()
    with pytest.raises(StoreError, match="no Parquet part files"):
        load(tmp_path / "empty.parquet")
    pd.DataFrame([{"trial_id": "x", "status": "ok"}]).to_parquet(tmp_path / "old.parquet")
    with pytest.raises(StoreError, match="lacks the columns dataset"):
        load(tmp_path / "old.parquet")


def replicate_rows(latent: int, scores) -> list[dict]:
    return [
        make_row({**CURVE, "latent": latent, "seed": seed}, mvg=score)
        for seed, score in enumerate(scores)
    ]


def test_neighbours_are_tested_by_welch_as_scipy_computes_it_from_the_replicates():
    """Unequal spreads and counts on each side, where Welch's p and Student's differ: each p is
    scipy's Welch test of the minimum's replicates against that neighbour's own."""
    below = [61.0, 55.0, 49.0, 64.0, 52.0, 58.0]  # wide, 6 replicates
    best = [50.0, 50.4, 49.8]  # narrow, 3
    above = [53.0, 51.5]  # 2, the fewest a t-test takes
    rows = [
        *replicate_rows(32, below),
        *replicate_rows(64, best),
        *replicate_rows(128, above),
        *replicate_rows(256, [70.0, 71.0]),
    ]
    table = optima(rows).iloc[0]
    assert table["latent"] == 64
    for side, neighbour in (("p_below", below), ("p_above", above)):
        welch = stats.ttest_ind(best, neighbour, equal_var=False).pvalue
        student = stats.ttest_ind(best, neighbour, equal_var=True).pvalue
        assert table[side] == pytest.approx(welch, rel=1e-9), side
        assert abs(welch - student) > 0.01 * welch, side  # the two tests disagree here
    assert abs(table["p_below"] - table["p_above"]) > 0.01  # the neighbours are told apart
    assert table["distinguishable"] == (table["p_below"] < 0.05 and table["p_above"] < 0.05)


def test_the_fit_window_is_centred_on_the_measured_minimum():
    """A lopsided curve: the five sizes around the minimum (32..512) lie on a parabola in log2 with
    its vertex at 96; the sizes beyond lie far off it (a steep wall on one side, a shelf on the
    other). Only the centred window recovers 96; one shifted either way takes in a point off the
    parabola and moves the vertex."""
    latents = (8, 16, 32, 64, 128, 256, 512, 1024, 2048)
    parabola = {latent: bowl(latent, CURVE) for latent in latents}
    scores = {**parabola, 8: parabola[8] + 50.0, 16: parabola[16] + 30.0, 1024: parabola[32]}
    scores[2048] = parabola[16]
    rows = [make_row({**CURVE, "latent": latent}, mvg=scores[latent]) for latent in latents]
    best = optima(rows).iloc[0]
    assert best["latent"] == 128 and best["fit_note"] == "quadratic over 32-512"
    assert best["fit_latent"] == pytest.approx(OPTIMUM, rel=1e-9)
    assert best["fit_score"] == pytest.approx(offset(CURVE), rel=1e-9)


def test_a_trial_stored_twice_counts_once_with_its_latest_row(tmp_path):
    """The store may hold two rows of one trial_id (a rerun's row beside the first, e.g. copied in
    from another machine): the analysis keeps only the later one, at the curve's minimum too."""
    rows = [*replicate_rows(64, [30.0, 32.0]), *curve_rows([CURVE], latents=(16, 32, 128, 256))]
    rerun = {**rows[0], "fd_mvg": 31.5, "started_at": "2024-02-01T00:00:00+00:00"}
    loaded = load(write_store([rows[0], rerun, *rows[1:]], tmp_path / "results.parquet"))
    assert (loaded["trial_id"] == rows[0]["trial_id"]).sum() == 2
    best = optima(loaded).iloc[0]
    assert (best["latent"], best["n"]) == (64, 2)
    assert best["mean"] == pytest.approx((31.5 + 32.0) / 2)  # the bowl is at 40 and above


def test_welch_interval_is_scipys_confidence_interval_of_the_difference():
    """Unequal spreads and counts: scipy's Welch test gives the 95% interval of mean(a) - mean(b)
    (the Welch-Satterthwaite degrees of freedom) from the raw replicates."""
    a = [50.0, 50.4, 49.8]
    b = [61.0, 55.0, 49.0, 64.0, 52.0, 58.0]

    def side(values):
        return {"mean": np.mean(values), "std": np.std(values, ddof=1), "n": len(values)}

    low, high = welch_interval(side(a), side(b))
    expected = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert (low, high) == pytest.approx((expected.low, expected.high), rel=1e-9)
    one = {"mean": 50.0, "std": np.nan, "n": 1}  # a single replicate has no spread to use
    assert np.isnan(welch_interval(side(a), one)).all()
    flat = {"mean": 3.0, "std": 0.0, "n": 3}
    assert welch_interval(flat, {**flat, "mean": 1.0}) == (2.0, 2.0)  # no spread: the point


def test_a_fit_whose_vertex_lies_beyond_the_measured_minimum_is_kept():
    """The minimum at the second largest of six sizes: the window is the last five, and the vertex
    of the parabola (at 2^8.3, about 315) lies between the last two fitted sizes, inside the
    window."""
    latents = (16, 32, 64, 128, 256, 512)
    vertex = 8.3
    rows = [
        make_row({**CURVE, "latent": latent}, mvg=(np.log2(latent) - vertex) ** 2 + 10.0)
        for latent in latents
    ]
    best = optima(rows).iloc[0]
    assert best["latent"] == 256 and best["fit_note"] == "quadratic over 32-512"
    assert best["fit_latent"] == pytest.approx(2**vertex, rel=1e-9)
    assert best["fit_score"] == pytest.approx(10.0, rel=1e-9)

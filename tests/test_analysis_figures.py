"""Figures: drawn from crafted rows with the paper's encodings, log latent axes and the right metric
name; one figure per protocol, precision in the labels, unconverged GMMs ringed."""

import numpy as np
import pandas as pd
import pytest
from analysis_data import (
    DIGITS_CURVES,
    INTERP_ABOVE,
    TABLE_1_CURVES,
    curve_rows,
    gap_rows,
    make_row,
    offset,
    ok_rows,
)
from report_data import with_history

from analysis import figures, training
from analysis.results import usable

DAE_128 = {"dataset": "cifar10", "filters": 128, "model": "dae"}


@pytest.fixture(scope="module")
def full():
    return ok_rows(TABLE_1_CURVES)


@pytest.fixture(scope="module")
def digits():
    return ok_rows(DIGITS_CURVES, latents=(4, 8, 16, 32), seeds=(0, 1))


def lines(ax):
    """Every labelled line of an axis, an error bar's by its data line."""
    bars = {bar.get_label(): bar.lines[0] for bar in ax.containers}
    return {**{line.get_label(): line for line in ax.get_lines()}, **bars}


def single(drawn):
    """The one figure a builder drew, under the plain file name."""
    assert [suffix for suffix, _, _ in drawn] == [""]
    return drawn[0][2]


def test_figure_1_encodes_model_by_line_style_and_width_by_colour(full, tmp_path):
    fig = single(figures.figure_1(full, "cifar10"))
    mvg, gmm = fig.axes
    assert mvg.get_xscale() == gmm.get_xscale() == "log"
    assert mvg.get_ylabel() == "FID (MVG)" and gmm.get_ylabel() == "FID (GMM)"
    drawn = lines(mvg)
    assert drawn["DAE 32"].get_linestyle() == ":" and drawn["VAE 32"].get_linestyle() == "-"
    assert [drawn[f"DAE {f}"].get_color() for f in (32, 64, 128, 256)] == [
        "black",
        "red",
        "green",
        "blue",
    ]
    assert list(drawn["DAE 128"].get_xdata()) == [32, 64, 96, 128, 256]
    assert "RAE (paper)" in drawn  # the paper's crosses for the other autoencoders
    fig.savefig(tmp_path / "figure_1.png")
    assert (tmp_path / "figure_1.png").stat().st_size > 10_000


def test_depth_frozen_and_norm_figures_follow_the_captions(full):
    depth = lines(single(figures.figure_2_5(full)).axes[0])
    assert depth["VAE 128 (baseline)"].get_color() == "black"
    assert (
        depth["DAE 64 depth 2"].get_linestyle() == "--"
        and depth["DAE 128 depth 3-3-2-1"].get_linestyle() == ":"
    )
    frozen = lines(single(figures.figure_3(full)).axes[0])
    assert (
        frozen["depth 2 frozen GMM"].get_color() == "orange"
        and frozen["depth 2 frozen GMM"].get_linestyle() == ":"
    )
    norm = lines(single(figures.figure_4(full)).axes[0])
    assert (
        norm["DAE (BN) N(0,I)"].get_color() == "green" and norm["VAE MVG"].get_color() == "orange"
    )
    assert norm["DAE (LN) GMM"].get_linestyle() == "--"


def test_digits_are_labelled_in_their_own_feature_space(digits):
    fig = single(figures.figure_1(digits, "digits"))
    assert fig.axes[0].get_ylabel() == "FD (digits-cnn) (MVG)" and fig.axes[0].get_xscale() == "log"
    assert "FID" not in fig.axes[0].get_ylabel() and not any(
        "paper" in label for label in lines(fig.axes[0])
    )
    assert fig.axes[0].collections  # replicates: a 95% band around each line
    scatter = single(figures.scatter(digits, "digits"))
    assert {c.get_label() for c in scatter.axes[0].collections} == {
        "DAE units 0 vs 1",
        "DAE units 2 vs 3",
        "VAE units 0 vs 1",
    }
    assert scatter.axes[0].get_title() == "16 filters, 16 latents"


def test_gaussianity_against_width_and_depth(full):
    width = single(figures.gaussianity(full, "filters"))
    assert [ax.get_ylabel() for ax in width.axes] == [
        "code_abs_skew",
        "code_excess_kurtosis",
        "heldout_ll_gap_per_dim",
    ]
    assert width.axes[0].get_xscale() == "log"
    depth = single(figures.gaussianity(full, "depth"))
    assert [t.get_text() for t in depth.axes[0].get_xticklabels()] == ["1", "2", "3-3-2-1", "3"]


@pytest.mark.parametrize(
    "build, needs",
    [
        (lambda ok: figures.figure_1(ok, "cifar10"), "ok cifar10 rows at depth 1"),
        (figures.figure_2_5, "depth 2, 3 or 3-3-2-1"),
        (figures.figure_3, "freeze_latent=True"),
        (figures.figure_4, "latent_norm bn, sn or ln"),
        (figures.figure_noise, "noise_std 0.1, 0.5 or 1"),
        (lambda ok: figures.scatter(ok, "celeba"), "128 filters and 64 latents"),
        (lambda ok: figures.gaussianity(ok, "depth"), "2 or more depth"),
    ],
)
def test_a_figure_without_its_rows_says_what_it_needs(digits, build, needs):
    with pytest.raises(figures.Needs, match=needs):
        build(digits)


def test_a_short_protocol_curve_gets_a_figure_of_its_own():
    """A paper-protocol curve and an epochs=2 curve of the same model and width."""
    short = [
        make_row({"dataset": "cifar10", "filters": 128, "latent": latent, "epochs": 2}, mvg=900.0)
        for latent in (32, 64, 128)
    ]
    rows = usable(pd.DataFrame([*curve_rows([DAE_128], latents=(32, 64, 128)), *short]))
    drawn = figures.figure_1(rows, "cifar10")
    assert [(suffix, setting) for suffix, setting, _ in drawn] == [
        ("", "paper protocol; precision fp32"),
        ("__epochs-2", "epochs=2; precision fp32"),
    ]
    for suffix, _, fig in drawn:
        drawn_lines = {k: v for k, v in lines(fig.axes[0]).items() if "(paper)" not in k}
        assert list(drawn_lines) == ["DAE 128"]  # one curve each, so one label each
        scores = drawn_lines["DAE 128"].get_ydata()
        assert (max(scores) < 100) == (suffix == "")  # the short run never stretches the main one
        assert "epochs=2" in fig.get_suptitle() or suffix == ""


def test_gaussianity_never_presents_two_protocols_as_two_widths():
    """Paper-protocol DAEs at 32 and 64 filters, and a 1-epoch DAE at 128 filters."""
    rows = usable(
        pd.DataFrame(
            [
                *curve_rows([{**DAE_128, "filters": f} for f in (32, 64)], latents=(64, 128)),
                *curve_rows([{**DAE_128, "epochs": 1}], latents=(64, 128)),
            ]
        )
    )
    (suffix, setting, fig) = figures.gaussianity(rows, "filters")[0]
    assert len(figures.gaussianity(rows, "filters")) == 1  # the 1-epoch curve has no second width
    ((label, line),) = [item for item in lines(fig.axes[0]).items() if "DAE" in item[0]]
    assert label == "cifar10 DAE depth 1" and setting.startswith("paper protocol")
    assert list(line.get_xdata()) == [32, 64]
    with pytest.raises(figures.Needs):  # neither protocol alone has two widths
        figures.gaussianity(
            usable(pd.DataFrame([r for r in rows.to_dict("records") if r["filters"] != 32])),
            "filters",
        )


def test_curves_that_differ_in_precision_say_so_in_their_labels():
    bf16 = [
        {**row, "trial_id": row["trial_id"] + "-bf16"}  # distinct trials however ids are hashed
        for row in curve_rows([{**DAE_128, "precision": "bf16"}], latents=(64, 128))
    ]
    rows = usable(pd.DataFrame([*curve_rows([DAE_128], latents=(64, 128)), *bf16]))
    ((_, setting, fig),) = figures.figure_1(rows, "cifar10")
    drawn = lines(fig.axes[0])
    assert {"DAE 128 fp32", "DAE 128 bf16"} <= set(drawn) and "precision in the labels" in setting
    assert drawn["DAE 128 fp32"].get_marker() != drawn["DAE 128 bf16"].get_marker()


def test_a_gmm_score_that_did_not_converge_is_ringed():
    rows = [
        make_row({**DAE_128, "latent": latent}, gmm_converged=latent != 64)
        for latent in (32, 64, 128)
    ]
    fig = single(figures.figure_1(usable(pd.DataFrame(rows)), "cifar10"))
    mvg, gmm = fig.axes
    assert figures.UNCONVERGED not in lines(mvg)
    assert list(lines(gmm)[figures.UNCONVERGED].get_xdata()) == [64]


def test_the_gap_against_width():
    fig = single(figures.gap_width(usable(pd.DataFrame(gap_rows(10.0))), "cifar10"))
    drawn = lines(fig.axes[0])
    assert list(drawn["DAE"].get_xdata()) == [32, 64, 128, 256]
    assert list(drawn["DAE"].get_ydata()) == pytest.approx([10.0, 8.0, 6.0, 4.0])
    assert list(drawn["DAE (paper)"].get_ydata()) == pytest.approx([9.05, 8.02, 8.71, 10.62])
    assert list(drawn[figures.UNCONVERGED].get_xdata()) == [64]
    assert fig.axes[0].get_xscale() == "log" and "128 latents" in fig.axes[0].get_title()


def test_interp_beyond_its_endpoints_against_width(full):
    fig = single(figures.interp_width(full, "celeba"))
    assert [ax.get_title() for ax in fig.axes] == [
        "Interp - Endpoints at 64 latents: near 0 for a smooth latent space",
        "Interp at 64 latents",
        "Endpoints at 64 latents",
    ]
    excess, interp, ends = (lines(ax)["DAE"] for ax in fig.axes)
    assert list(excess.get_xdata()) == [32, 64, 128]
    assert list(excess.get_ydata()) == pytest.approx(interp.get_ydata() - ends.get_ydata())
    # Interp = MVG + INTERP_ABOVE and Endpoints = MVG / 2 in the crafted rows
    assert list(excess.get_ydata()) == pytest.approx(ends.get_ydata() + INTERP_ABOVE)
    assert lines(fig.axes[0])["VAE"].get_linestyle() == "-"


def test_noise_against_reconstruction(full):
    fig = single(figures.noise_recon(full, "cifar10"))
    test_r, bce = (lines(ax)["latent 96"] for ax in fig.axes)
    assert list(test_r.get_xdata()) == [0.0, 0.1, 0.5, 1.0]
    expected = [offset({**DAE_128, "noise_std": noise}) for noise in (0.0, 0.1, 0.5, 1.0)]
    assert list(test_r.get_ydata()) == pytest.approx([e / 2 for e in expected])
    assert list(bce.get_ydata()) == pytest.approx([e + 64 / 96 for e in expected])
    with pytest.raises(figures.Needs, match="differ only in noise_std"):
        figures.noise_recon(full, "celeba")


def test_no_figure_draws_two_curves_with_one_label(full):
    """Every figure of a store mixing protocols, precisions and VAE readings."""
    extra = [
        *curve_rows([{**DAE_128, "epochs": 2}], latents=(64, 128)),
        *(
            {**row, "trial_id": row["trial_id"] + "-bf16"}
            for row in curve_rows([{**DAE_128, "precision": "bf16"}], latents=(64, 128))
        ),
        *curve_rows([{**DAE_128, "model": "vae", "bce_reduction": "mean"}], latents=(128,)),
    ]
    rows = pd.concat([full, usable(pd.DataFrame(extra))], ignore_index=True)
    rows = rows.assign(loss_history=[[3.0, 2.0]] * len(rows), diverged_epoch=None)
    names = []
    for stem, _, _, build in [*figures.figure_list(rows), *training.figure_list(rows)]:
        try:
            drawn = build()
        except figures.Needs:
            continue
        for suffix, _, fig in drawn:
            names.append(stem + suffix)
            for ax in fig.axes:
                labels = [
                    artist.get_label()
                    for artist in [*ax.get_lines(), *ax.collections, *ax.containers]
                    if not artist.get_label().startswith("_")
                ]
                assert len(labels) == len(set(labels)), (stem + suffix, labels)
    assert len(names) == len(set(names))
    assert {"figure_1_cifar10__epochs-2", "figure_1_cifar10__bce_reduction-mean"} <= set(names)
    assert {"training_cifar10__epochs-2", "training_cifar10__bce_reduction-mean"} <= set(names)


def test_each_setting_is_named_by_where_it_differs_from_the_main_one():
    """Without a default-protocol curve the main figure is the epochs=2 one (most rows); a setting
    at the default epochs then says so."""
    settings = [
        ({"epochs": 2}, (32, 64, 128)),
        ({"lr": 0.01}, (64,)),
        ({"epochs": 2, "lr": 0.01}, (64,)),
    ]
    rows = usable(
        pd.DataFrame(
            [
                row
                for changed, latents in settings
                for row in curve_rows([{**DAE_128, **changed}], latents=latents)
            ]
        )
    )
    drawn = figures.figure_1(rows, "cifar10")
    assert [(suffix, setting) for suffix, setting, _ in drawn] == [
        ("", "epochs=2; precision fp32"),
        ("__epochs-default__lr-0.01", "lr=0.01; precision fp32"),
        ("__lr-0.01", "epochs=2, lr=0.01; precision fp32"),
    ]


def trained_digits(diverged_epoch: int | None = 3) -> pd.DataFrame:
    """Every row of a digits store as the report reads it: ok rows of 4 curves at 2 latents with
    loss histories, a failed row, and a diverged DAE f8 trial (seed 1) unless None."""
    rows = [with_history(row) for row in curve_rows(DIGITS_CURVES, latents=(4, 8))]
    failed = make_row({"dataset": "digits", "filters": 8, "latent": 8, "seed": 2}, "failed")
    rows.append({**failed, "loss_history": None, "diverged_epoch": None})
    if diverged_epoch is not None:
        diverged = make_row({"dataset": "digits", "filters": 8, "latent": 8, "seed": 1}, "diverged")
        rows.append(with_history(diverged, diverged_epoch=diverged_epoch))
    return pd.DataFrame(rows)


def test_training_curves_one_panel_per_curve_one_line_per_trial():
    fig = single(training.training_curves(trained_digits(diverged_epoch=None), "digits"))
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert sorted(ax.get_title() for ax in panels) == [
        "DAE 16 filters, depth 1",
        "DAE 8 filters, depth 1",
        "VAE 16 filters, depth 1",
        "VAE 8 filters, depth 1",
    ]
    dae_8 = next(ax for ax in panels if ax.get_title() == "DAE 8 filters, depth 1")
    latent_4 = lines(dae_8)["latent 4"]
    assert list(latent_4.get_xdata()) == list(range(1, 11))  # epochs, from 1
    expected = with_history(make_row({"dataset": "digits", "filters": 8, "latent": 4}))
    assert list(latent_4.get_ydata()) == expected["loss_history"]
    assert dae_8.get_yscale() == "linear"  # 5x the floor at most: no decade to span


def test_a_diverged_trial_is_marked_at_the_epoch_its_loss_was_not_finite():
    """Diverged in epoch 4 (diverged_epoch 3, from 0): its line ends at epoch 3, the X is above
    epoch 4; the failed row, without a history, is not drawn."""
    fig = single(training.training_curves(trained_digits(diverged_epoch=3), "digits"))
    dae_8 = next(ax for ax in fig.axes if ax.get_title() == "DAE 8 filters, depth 1")
    (mark,) = [line for line in dae_8.get_lines() if line.get_label() == "diverged"]
    assert list(mark.get_xdata()) == [4] and mark.get_color() == "red"
    ends = [line.get_xdata()[np.isfinite(line.get_ydata())][-1] for line in dae_8.get_lines()[:-1]]
    assert sorted(ends) == [3, 10, 10]  # the diverged trial, then latents 4 and 8
    others = [ax for ax in fig.axes if ax is not dae_8]
    assert not any(line.get_label() == "diverged" for ax in others for line in ax.get_lines())


def test_losses_that_span_decades_get_a_log_axis():
    rows = trained_digits(diverged_epoch=None)
    rows["loss_history"] = [[1000.0, 10.0, 1.0]] * len(rows)
    fig = single(training.training_curves(rows, "digits"))
    assert {ax.get_yscale() for ax in fig.axes if ax.get_visible()} == {"log"}


def test_training_curves_need_a_loss_history():
    rows = trained_digits().assign(loss_history=None)
    with pytest.raises(figures.Needs, match="ok or diverged digits rows with a loss_history"):
        training.training_curves(rows, "digits")

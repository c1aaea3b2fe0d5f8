"""Figures: drawn from crafted rows with the paper's encodings, log latent axes and the right metric
name."""

import pytest
from analysis_data import DIGITS_CURVES, TABLE_1_CURVES, ok_rows

from analysis import figures


@pytest.fixture(scope="module")
def full():
    return ok_rows(TABLE_1_CURVES)


@pytest.fixture(scope="module")
def digits():
    return ok_rows(DIGITS_CURVES, latents=(4, 8, 16, 32), seeds=(0, 1))


def lines(ax):
    return {line.get_label(): line for line in ax.get_lines()}


def test_figure_1_encodes_model_by_line_style_and_width_by_colour(full, tmp_path):
    fig = figures.figure_1(full, "cifar10")
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
    depth = lines(figures.figure_2_5(full).axes[0])
    assert depth["VAE 128 (baseline)"].get_color() == "black"
    assert (
        depth["DAE 64 depth 2"].get_linestyle() == "--"
        and depth["DAE 128 depth 3-3-2-1"].get_linestyle() == ":"
    )
    frozen = lines(figures.figure_3(full).axes[0])
    assert (
        frozen["depth 2 frozen GMM"].get_color() == "orange"
        and frozen["depth 2 frozen GMM"].get_linestyle() == ":"
    )
    norm = lines(figures.figure_4(full).axes[0])
    assert (
        norm["DAE (BN) N(0,I)"].get_color() == "green" and norm["VAE MVG"].get_color() == "orange"
    )
    assert norm["DAE (LN) GMM"].get_linestyle() == "--"


def test_digits_are_labelled_in_their_own_feature_space(digits):
    fig = figures.figure_1(digits, "digits")
    assert fig.axes[0].get_ylabel() == "FD (digits-cnn) (MVG)" and fig.axes[0].get_xscale() == "log"
    assert "FID" not in fig.axes[0].get_ylabel() and not any(
        "paper" in label for label in lines(fig.axes[0])
    )
    assert fig.axes[0].collections  # replicates: a 95% band around each line
    scatter = figures.scatter(digits, "digits")
    assert {c.get_label() for c in scatter.axes[0].collections} == {
        "DAE units 0 vs 1",
        "DAE units 2 vs 3",
        "VAE units 0 vs 1",
    }
    assert "16 filters" in scatter.get_suptitle()


def test_gaussianity_against_width_and_depth(full):
    width = figures.gaussianity(full, "filters")
    assert [ax.get_ylabel() for ax in width.axes] == [
        "code_abs_skew",
        "code_excess_kurtosis",
        "heldout_ll_gap_per_dim",
    ]
    assert width.axes[0].get_xscale() == "log"
    depth = figures.gaussianity(full, "depth")
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

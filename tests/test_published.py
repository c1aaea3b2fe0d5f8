"""trainables/published.py: the paper's Tables 2 and 3 as data, cells checked against the printed
paper, missing ones as NaN."""

import math

import pytest
from analysis_data import only

from trainables import published


def cell(table, column, **where):
    return only(table, **where)[column]


@pytest.mark.parametrize(
    "dataset, filters, model, column, value",
    [
        ("cifar10", 32, "DAE", "fd_train_recon", 50.56),
        ("cifar10", 64, "DAE", "fd_normal", 372.30),
        ("cifar10", 128, "DAE (BN)", "fd_normal", 94.14),
        ("cifar10", 128, "EAE", "fd_normal", 85.26),
        ("cifar10", 256, "VAE", "fd_gmm", 108.6),
        ("celeba", 32, "VAE", "fd_mvg", 64.71),
        ("celeba", 128, "DAE", "fd_gmm", 39.10),
        ("celeba", 128, "GMM-DAE", "fd_test_recon", 39.48),
        ("celeba", 128, "WAE", "fd_normal", 53.67),
    ],
)
def test_table_2_cells(dataset, filters, model, column, value):
    assert cell(published.table_2(), column, dataset=dataset, filters=filters, model=model) == value


@pytest.mark.parametrize(
    "dataset, filters, model, column",
    [
        ("cifar10", 128, "WAE", "fd_mvg"),
        ("cifar10", 128, "RAE", "fd_normal"),
        ("cifar10", 128, "GMM-DAE", "fd_gmm"),
        ("celeba", 128, "DAE (BN)", "fd_test_recon"),
        ("celeba", 256, "DAE", "fd_mvg"),
    ],
)
def test_table_2_missing_cells_are_nan(dataset, filters, model, column):
    assert math.isnan(
        cell(published.table_2(), column, dataset=dataset, filters=filters, model=model)
    )


def test_table_2_has_every_row_at_the_comparison_latents():
    table = published.table_2()
    assert len(table) == 2 * 13
    assert set(table["model"]) == {"DAE", "DAE (BN)", "VAE", "WAE", "RAE", "EAE", "GMM-DAE"}
    assert dict(zip(table["dataset"], table["latent"], strict=True)) == {
        "cifar10": 128,
        "celeba": 64,
    }
    assert set(table["metric"]) == {"FID"}


@pytest.mark.parametrize(
    "dataset, latent, filters, model, column, value",
    [
        ("cifar10", 160, 32, "DAE", "fd_mvg", 98.90),
        ("cifar10", 144, 128, "DAE", "fd_test_recon", 40.31),
        ("cifar10", 768, 256, "VAE", "fd_gmm", 78.91),
        ("celeba", 80, 64, "DAE", "fd_normal", 409.5),
        ("celeba", 96, 128, "DAE", "fd_normal", 406.47),
        ("celeba", 768, 128, "VAE", "fd_mvg", 47.70),
    ],
)
def test_table_3_cells(dataset, latent, filters, model, column, value):
    assert (
        cell(
            published.table_3(),
            column,
            dataset=dataset,
            latent=latent,
            filters=filters,
            model=model,
        )
        == value
    )


def test_table_3_rows_and_the_stated_best_scores():
    table = published.table_3()
    assert (table["dataset"] == "cifar10").sum() == 15 and (table["dataset"] == "celeba").sum() == 9
    assert "fd_train_recon" not in table.columns  # Table 3 prints no Train R
    assert published.BEST_SCORES == {"fd_mvg": 77.10, "fd_gmm": 67.32}
    assert (published.BEST["depth"], published.BEST["latent"]) == ("3-3-2-1", 96)


def test_the_stated_parameter_ranges():
    assert published.PARAMETER_RANGES == {
        "cifar10": {"encoder": (1e6, 5e7), "decoder": (3e6, 3e7)},
        "celeba": {"encoder": (5e6, 3e7), "decoder": (1e7, 8e7)},
    }

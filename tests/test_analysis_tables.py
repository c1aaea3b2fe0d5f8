"""Tables 2 and 3 on crafted stores: ours beside the paper's, missing rows kept, feature spaces
and precisions never mixed, unconverged GMMs marked, every departing curve field named."""

import math

import pandas as pd
import pytest
from analysis_data import (
    DIGITS_CURVES,
    OPTIMUM,
    TABLE_1_CURVES,
    bowl,
    curve_rows,
    make_row,
    offset,
    ok_rows,
    only,
)

from analysis.results import usable
from analysis.tables import (
    comparability_notes,
    make_gaussianity_table,
    make_status_table,
    make_table_2,
    make_table_3,
    write_table,
)

DAE_128 = {"dataset": "cifar10", "filters": 128, "model": "dae"}


@pytest.fixture(scope="module")
def full():
    return ok_rows(TABLE_1_CURVES)


@pytest.fixture(scope="module")
def digits():
    return ok_rows(DIGITS_CURVES, latents=(4, 8, 16, 32))


def test_table_2_sets_ours_beside_the_paper_with_the_difference(full):
    table = make_table_2(full)
    dae = only(table, dataset="cifar10", filters=128, model="DAE")
    assert (dae["latent"], dae["n"], dae["protocol"]) == (128, 1, "paper")
    assert dae["mvg_ours"] == pytest.approx(bowl(128, DAE_128))
    assert dae["mvg_paper"] == 82.49 and dae["mvg_diff"] == pytest.approx(dae["mvg_ours"] - 82.49)
    celeba = only(table, dataset="celeba", filters=64, model="VAE")
    assert celeba["latent"] == 64 and celeba["gmm_paper"] == 57.01
    assert only(table, dataset="cifar10", filters=128, model="DAE (BN)")["normal_paper"] == 94.14


def test_table_2_keeps_paper_rows_we_did_not_train(full):
    table = make_table_2(full)
    wae = only(table, dataset="cifar10", model="WAE")
    assert math.isnan(wae["test_recon_ours"]) and wae["test_recon_paper"] == 57.94
    assert not (
        (table["dataset"] == "celeba") & (table["filters"] == 256)
    ).any()  # empty on both sides


def test_table_3_puts_each_curve_at_its_optimum_per_sampler(full):
    table = make_table_3(full)
    mvg = only(table, dataset="cifar10", filters=128, model="DAE", best_for="mvg")
    assert (mvg["latent_ours"], mvg["latent_paper"]) == (OPTIMUM, 144)
    assert mvg["fit_latent"] == pytest.approx(OPTIMUM)
    assert mvg["mvg_ours"] == pytest.approx(offset(DAE_128)) and mvg["mvg_paper"] == 81.62
    assert mvg["test_recon_diff"] == pytest.approx(offset(DAE_128) / 2 - 40.31)
    gmm = only(table, dataset="celeba", filters=64, model="DAE", best_for="gmm")
    assert gmm["latent_paper"] == 384 and gmm["gmm_paper"] == 45.80
    assert (
        only(table, dataset="cifar10", filters=32, model="VAE", best_for="normal")["latent_paper"]
        == 384
    )
    assert pd.isna(
        only(table, dataset="cifar10", filters=32, model="DAE", best_for="normal")["latent_paper"]
    )


def test_digits_scores_never_stand_beside_published_fids(digits):
    """Table 2 compares at the paper's latents, which digits has none of: it holds only the
    paper's rows. Table 3 holds every digits curve's optima, and no published value beside them."""
    table_2 = make_table_2(digits)
    assert set(table_2["dataset"]) == {"cifar10", "celeba"} and len(table_2) > 0
    assert table_2.filter(like="_ours").isna().all().all()
    for table in (table_2, make_table_3(digits)):
        ours = table.filter(like="_ours").notna().any(axis=1)
        assert table.loc[ours, table.columns.str.endswith("_paper")].isna().all().all()
        assert "no FID rows" in " ".join(comparability_notes(table))
    table_3 = make_table_3(digits)
    assert set(table_3.loc[table_3["dataset"] == "digits", "metric"]) == {"FD (digits-cnn)"}
    assert (table_3["dataset"] == "digits").sum() == len(DIGITS_CURVES) * 3
    ours = table_3.filter(like="_ours").notna().any(axis=1)
    assert ours.sum() == len(DIGITS_CURVES) * 3  # the check above ran on every digits row
    assert "FD (digits-cnn) are in another feature space" in " ".join(comparability_notes(table_3))


def test_a_cifar10_score_in_another_feature_space_is_not_joined():
    rows = pd.DataFrame(curve_rows([DAE_128])).assign(fid=False, feature_extractor="other-cnn")
    table = make_table_2(usable(rows))
    assert math.isnan(
        only(table, dataset="cifar10", filters=128, model="DAE", metric="FD (other-cnn)")[
            "mvg_paper"
        ]
    )
    assert math.isnan(
        only(table, dataset="cifar10", filters=128, model="DAE", metric="FID")["mvg_ours"]
    )


def test_tables_are_written_as_markdown_and_csv(full, tmp_path):
    table = make_table_3(full)
    md, csv = write_table(table, tmp_path / "table_3", "Table 3", comparability_notes(table))
    text = md.read_text()
    assert text.startswith("# Table 3") and "| dataset | filters | model |" in text
    assert "96 / 144" in text and "/ 81.62 (" in text and "| – |" not in text.split("\n")[-2]
    assert list(pd.read_csv(csv).columns) == list(table.columns)


def test_gaussianity_per_curve(full):
    table = make_gaussianity_table(full)
    dae = only(
        table,
        dataset="cifar10",
        filters=128,
        model="dae",
        depth="1",
        latent_norm="none",
        noise_std=0.0,
        freeze_latent=False,
    )
    assert dae["code_abs_skew_mean"] == pytest.approx(4 / 128) and (dae["n"], dae["latents"]) == (
        5,
        "32-256",
    )


def test_precision_is_a_column_and_curves_of_two_precisions_are_never_pooled():
    bf16 = [
        {**row, "trial_id": row["trial_id"] + "-bf16", "fd_mvg": 1.0}
        for row in curve_rows([{**DAE_128, "precision": "bf16"}], latents=(128,))
    ]
    table = make_table_2(usable(pd.DataFrame([*curve_rows([DAE_128], latents=(128,)), *bf16])))
    fp32 = only(table, dataset="cifar10", filters=128, model="DAE", precision="fp32")
    assert fp32["n"] == 1 and fp32["mvg_ours"] == pytest.approx(bowl(128, DAE_128))
    assert only(table, dataset="cifar10", filters=128, model="DAE", precision="bf16")[
        "mvg_ours"
    ] == pytest.approx(1.0)


def test_a_score_whose_gmm_did_not_converge_is_marked(tmp_path):
    rows = [
        make_row({**DAE_128, "latent": 128, "seed": seed}, gmm_converged=seed != 1)
        for seed in (0, 1)
    ]
    table = make_table_2(usable(pd.DataFrame(rows)))
    assert only(table, dataset="cifar10", filters=128, model="DAE")["gmm_unconverged"] == 1
    md, csv = write_table(table, tmp_path / "table_2", "Table 2", [])
    text = md.read_text()
    (ours,) = [line for line in text.splitlines() if line.startswith("| cifar10 | 128 | DAE |")]
    cells = ours.split(" | ")
    (header,) = [line for line in text.splitlines() if line.startswith("| dataset |")]
    columns = header.split(" | ")
    assert cells[columns.index("gmm")].endswith("†")
    assert not cells[columns.index("mvg")].endswith("†")
    assert "†: the GMM fit of gmm_unconverged" in text
    assert pd.read_csv(csv)["gmm_unconverged"].max() == 1


@pytest.mark.parametrize(
    "config, expected",
    [
        (DAE_128, "paper"),
        ({**DAE_128, "decoder_width": "8f", "epochs": 2}, "decoder_width=8f, epochs=2"),
        ({"dataset": "digits"}, "default"),
        (
            {"dataset": "digits", "filters": 8, "epochs": 10, "batch_size": 32},
            "epochs=10, batch_size=32",
        ),
        (
            {"dataset": "digits", "gmm_max_iter": 100, "bn_momentum": 0.01},
            "bn_momentum=0.01, gmm_max_iter=100",
        ),
    ],
)
def test_protocol_names_every_curve_field_that_departs_from_the_datasets_default(config, expected):
    table = make_status_table(pd.DataFrame([make_row({**config, "latent": 16})]))
    assert table["protocol"].tolist() == [expected]

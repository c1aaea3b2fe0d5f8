"""run_trial end to end on CPU: digits offline, and the real CIFAR-10/CelebA readers on fixtures."""

import io
import math

import numpy as np
import pytest
import torch
from fixtures import TIMING, TINY, TINY_CIFAR10, TINY_DIGITS
from PIL import Image

from trainables import features, trial
from trainables.config import make_config
from trainables.data import Dataset
from trainables.schema import RESULT_COLUMNS, SAMPLE_GRID
from trainables.scored_sets import SCORED_SETS
from trainables.testing import write_celeba_fixture, write_cifar10_fixture
from trainables.trial import GRID_COLUMNS, run_trial

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # the trials here are tiny


def test_digits_default_runs_offline(digits_cache):
    row = run_trial({"dataset": "digits", "epochs": 2, "cache_dir": str(digits_cache)})
    assert row["status"] == "ok", row["traceback"]
    assert set(row) == {*RESULT_COLUMNS, SAMPLE_GRID}
    assert math.isfinite(row["fd_mvg"]) and math.isfinite(row["fd_gmm"])
    # rows: test images, their reconstructions, MVG and GMM samples; 8x8 digits drawn 4x as 32x32
    # tiles, with make_grid's 2 pixels around and between them
    grid = Image.open(io.BytesIO(row[SAMPLE_GRID]))
    assert (grid.format, grid.mode) == ("PNG", "RGB")
    assert grid.size == (GRID_COLUMNS * (32 + 2) + 2, 4 * (32 + 2) + 2)
    assert all(row[f"fd_{name}"] >= 0 for name in SCORED_SETS)
    assert row["fid"] is False and row["feature_extractor"] == "digits-cnn"
    assert row["fid_weights_source"] is None and row["precision"] == "fp32"
    assert (row["n_train"], row["n_test"], row["n_reference"]) == (1347, 450, 450)
    assert len(row["loss_history"]) == 2 and row["train_loss"] == row["loss_history"][-1]
    assert row["encoder_params"] > 0 and row["decoder_params"] > 0
    assert row["torch_version"] == torch.__version__ and row["device"].startswith("cpu")
    assert (
        len(row["code_sample"]) == 1000
        and len(row["code_sample"][0]) == len(row["code_sample_dims"]) == 4
    )
    assert row["wall_s"] >= row["train_s"] + row["eval_s"] * 0.99


def test_same_seed_same_row_whatever_the_cuda_options(digits_cache):
    """On CPU a CUDA graph is never tried and TF32 does not exist: the rows say so, and equal."""
    config = {**TINY_DIGITS, "cache_dir": str(digits_cache)}
    first = run_trial(config)
    second = run_trial({**config, "cuda_graph": False, "score_tf32": True})
    assert (first["train_step"], first["train_step_error"], first["score_tf32"]) == (
        "eager",
        None,
        False,
    )
    assert {k: v for k, v in first.items() if k not in TIMING} == {
        k: v for k, v in second.items() if k not in TIMING
    }
    assert run_trial({**config, "seed": 1})["fd_mvg"] != first["fd_mvg"]


def test_cifar10_fixture_end_to_end_with_fid_network(tmp_path, monkeypatch, random_fid_weights):
    """The real reader, the bf16 defaults' alternative and the FID network's real loading path; the
    VAE's trial differs only in its model, which the digits tests cover without Inception's cost."""
    monkeypatch.setenv("DAE_FID_WEIGHTS", str(random_fid_weights))
    root = write_cifar10_fixture(tmp_path / "data")
    row = run_trial(
        {
            **TINY_CIFAR10,
            "n_samples": 4,
            "data_root": str(root),
            "cache_dir": str(tmp_path / "cache"),
        }
    )
    assert row["status"] == "ok", row["traceback"]
    assert row["fid"] is True and row["feature_extractor"] == "inception-fid"
    assert row["fid_weights_source"] == "pytorch-fid" and row["precision"] == "fp32"
    assert (row["n_train"], row["n_test"], row["n_reference"]) == (40, 10, 4)
    assert all(math.isfinite(row[f"fd_{name}"]) for name in SCORED_SETS)


def test_celeba_fixture_end_to_end(tmp_path, monkeypatch, random_fid_weights):
    monkeypatch.setenv("DAE_FID_WEIGHTS", str(random_fid_weights))
    root = write_celeba_fixture(tmp_path / "data")
    row = run_trial(
        {
            **TINY,
            "dataset": "celeba",
            "n_samples": 4,
            "data_root": str(root),
            "cache_dir": str(tmp_path / "cache"),
            "verify_checksums": False,
        }
    )
    assert row["status"] == "ok", row["traceback"]
    assert (row["n_train"], row["n_test"], row["n_reference"]) == (12, 6, 4)


def differing_columns(first: dict, second: dict) -> set[str]:
    return {k for k in first if k not in TIMING and first[k] != second[k]}


def test_gmm_max_iter_changes_the_gmm_and_nothing_else(digits_cache):
    """The same training, codes, MVG and scores; only the GMM (stopped after one EM iteration,
    unconverged) and what is drawn from it or scored against it differ."""
    config = {**TINY_DIGITS, "cache_dir": str(digits_cache)}
    converged, capped = run_trial(config), run_trial({**config, "gmm_max_iter": 1})
    assert converged["status"] == capped["status"] == "ok"
    assert converged["gmm_converged"] and (capped["gmm_converged"], capped["gmm_n_iter"]) == (
        False,
        1,
    )
    assert differing_columns(converged, capped) == {
        "trial_id",
        "gmm_max_iter",
        "gmm_converged",
        "gmm_n_iter",
        "heldout_ll_gmm",
        "heldout_ll_gap_per_dim",
        "fd_gmm",
        SAMPLE_GRID,  # its last row: GMM samples
    }


def test_bce_reduction_trains_the_vae_differently_but_rows_keep_summed_bce(digits_cache):
    """The reduction weighs the VAE's loss; the row's reconstruction BCE columns stay sums over
    each image's 1,024 pixels, so they keep their scale (a per-pixel mean would be 1024x less)."""
    config = {**TINY_DIGITS, "model": "vae"}
    summed = run_trial({**config, "cache_dir": str(digits_cache)})
    averaged = run_trial({**config, "bce_reduction": "mean", "cache_dir": str(digits_cache)})
    assert summed["status"] == averaged["status"] == "ok"
    config_columns = set(make_config(config).science())
    assert differing_columns(summed, averaged) & config_columns == {"bce_reduction"}
    assert averaged["train_loss"] < summed["train_loss"] / 100  # trained on a per-pixel mean
    for column in ("train_recon_bce", "test_recon_bce"):
        assert 0.1 < averaged[column] / summed[column] < 10, column


def test_divergence_is_a_row(tmp_path):
    row = run_trial({**TINY_DIGITS, "lr": 1e30, "epochs": 4, "cache_dir": str(tmp_path)})
    assert row["status"] == "diverged"
    assert row["diverged_epoch"] is not None and "non-finite" in row["error"]
    assert len(row["loss_history"]) == row["diverged_epoch"] + 1
    assert row["fd_mvg"] is None


def test_missing_dataset_is_a_failed_row_naming_the_path(tmp_path):
    row = run_trial({**TINY_CIFAR10, "data_root": str(tmp_path / "nowhere")})
    assert row["status"] == "failed"
    assert "DatasetMissing" in row["error"] and str(tmp_path / "nowhere") in row["error"]
    assert "Traceback" in row["traceback"] or "DatasetMissing" in row["traceback"]


def test_an_out_of_memory_error_is_a_failed_row_naming_it(tmp_path, monkeypatch):
    def out_of_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr("trainables.models.AutoEncoder.forward", out_of_memory)
    row = run_trial({**TINY_DIGITS, "cache_dir": str(tmp_path)})
    assert row["status"] == "failed" and row["trial_id"] == make_config(TINY_DIGITS).trial_id()
    assert row["error"] == "OutOfMemoryError: CUDA out of memory. Tried to allocate 20.00 GiB"
    assert "in out_of_memory" in row["traceback"] and "OutOfMemoryError" in row["traceback"]


def test_bad_config_raises_before_any_work():
    with pytest.raises(ValueError, match="latnet"):
        run_trial({"dataset": "digits", "latnet": 8})


def largest_difference(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(len(a), len(b)): the largest absolute difference between each row of a and each of b."""
    return (a[:, None] - b[None]).abs().amax(dim=-1)


def test_train_r_and_test_r_reconstruct_the_right_images(
    tmp_path, monkeypatch, untrained_digits_cnn
):
    """Digits-shaped data whose training images are dark (pixels < 64) and test images bright
    (>= 192). The reference set is bright test images, each one of the data's; Test R decodes, image
    by image, the trained model's codes of exactly those; Train R the codes of training images only.
    Each scored set is caught on its way into features.score_sets, and the codes it was decoded
    from on their way into trial._decode; the trained model (in eval mode after the trial) encodes
    every image again for comparison. Scored in an untrained digits-cnn's features (any features
    serve here)."""
    rng = np.random.default_rng(0)
    train = torch.from_numpy(rng.integers(0, 64, (40, 1, 32, 32), dtype=np.uint8))
    test = torch.from_numpy(rng.integers(192, 256, (10, 1, 32, 32), dtype=np.uint8))
    monkeypatch.setattr(trial, "load_for_config", lambda cfg: Dataset("digits", train, test))
    untrained_digits_cnn(tmp_path)
    models, decoded, scored, references = [], {}, {}, []
    build, decode = trial.build_model, trial._decode
    score_sets, reference_stats = features.score_sets, features.reference_stats

    def spy_build(cfg):
        models.append(build(cfg))
        return models[-1]

    def spy_decode(model, codes):
        images = decode(model, codes)
        decoded[id(images)] = codes.clone()
        return images

    def spy_scores(sets, extractor, ref_stats):
        scored.update({name: decoded[id(images)] for name, images in sets.items()})
        scored["tf32"] = extractor.tf32
        return score_sets(sets, extractor, ref_stats)

    def spy_reference(dataset, images, extractor, cache_dir):
        references.append(images.clone())
        return reference_stats(dataset, images, extractor, cache_dir)

    for name, spy in (("build_model", spy_build), ("_decode", spy_decode)):
        monkeypatch.setattr(trial, name, spy)
    monkeypatch.setattr(features, "score_sets", spy_scores)
    monkeypatch.setattr(features, "reference_stats", spy_reference)
    config = {**TINY_DIGITS, "epochs": 1, "n_samples": 6}
    row = run_trial({**config, "cache_dir": str(tmp_path)})
    assert row["status"] == "ok", row["traceback"]
    assert scored["tf32"] is False  # TF32 stays off in scoring unless score_tf32
    assert row["fid"] is False and row["n_reference"] == row["n_scored"] == 6  # not Inception

    (reference,) = references
    assert len(reference) == 6 and reference.min() >= 192  # test images, none twice
    as_rows = test.flatten(1)
    matches = [(as_rows == image.flatten()).all(dim=1).nonzero().flatten() for image in reference]
    assert all(len(m) == 1 for m in matches) and len({int(m) for m in matches}) == 6

    with torch.no_grad():
        codes = models[0].encode(torch.cat([train, test]).float() / 255)
        of_reference = models[0].encode(reference.float() / 255)
    # an image's code recomputed in a batch of another size: equal to float32 round-off of the
    # codes' size (1e-6 of it allowed), while any two images' codes differ by far more (1e-3)
    atol = 1e-6 * codes.abs().max().item()
    gaps = largest_difference(codes, codes) + torch.eye(50) * 1e9
    assert gaps.min() > 1e-3 * codes.abs().max()
    assert largest_difference(scored["test_recon"], of_reference).diagonal().max() < atol
    nearest = largest_difference(scored["train_recon"], codes).min(dim=1)
    assert (nearest.values < atol).all() and (nearest.indices < 40).all()
    assert len(set(nearest.indices.tolist())) == 6
    features.clear_extractors()

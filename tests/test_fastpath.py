"""The fast trial path computes what the plain one does; its runtime options are validated and
recorded.

The trial-level check: on CPU in fp32 the fast loop (uint8 data resident, on-device permutation)
and the plain loop (Dataset -> DataLoader -> copy per batch) feed bitwise-identical batches to the
same step, so training is identical; the torch GMM starts from scikit-learn's own k-means and runs
the same EM in float64, which differs only in summation order (~1e-15 relative). The scores must
therefore agree to TOLERANCE = 1e-9 relative, a million times tighter than any real change
(another seed moves them by percent).
"""

import math

import pytest
import torch

from benchmarks import packing
from trainables.config import make_config
from trainables.digits_cnn import DIGITS_CNN_FILE, DigitsCNN
from trainables.schema import RESULT_COLUMNS
from trainables.trial import run_trial

TOLERANCE = 1e-9
TIMING = {"wall_s", "train_s", "eval_s", "encode_s", "prior_s", "sample_s", "score_s", "started_at"}
HOW_IT_RAN = {"train_loop", "gmm_backend"}  # the two runs differ here on purpose
TINY_DIGITS = {
    "dataset": "digits",
    "filters": 4,
    "latent": 4,
    "epochs": 2,
    "batch_size": 16,
    "n_samples": 200,
}


@pytest.mark.parametrize(
    "overrides, key",
    [
        ({"precision": "fp16"}, "precision"),
        ({"precision": 16}, "precision"),
        ({"compile": "yes"}, "compile"),
        ({"gmm_backend": "cuml"}, "gmm_backend"),
        ({"train_loop": "dataloader"}, "train_loop"),
        ({"cuda_graph": "yes"}, "cuda_graph"),
        ({"score_tf32": 1}, "score_tf32"),
    ],
)
def test_runtime_options_are_validated(overrides, key):
    with pytest.raises(ValueError, match=key):
        make_config(overrides)


def test_runtime_options_leave_the_trial_id_alone():
    base = make_config({"latent": 64})
    assert (base.compile, base.gmm_backend, base.train_loop) == (False, "auto", "fast")
    assert (base.cuda_graph, base.score_tf32) == (True, False)
    for overrides in (
        {"compile": True},
        {"gmm_backend": "torch"},
        {"train_loop": "plain"},
        {"cuda_graph": False},
        {"score_tf32": True},
    ):
        assert make_config({"latent": 64, **overrides}).trial_id() == base.trial_id()


@pytest.mark.usefixtures("one_torch_thread")
def test_fast_trial_matches_the_plain_trial(tmp_path):
    """Both trials score in the features of one seeded, untrained digits-cnn: the comparison needs
    the same features on both sides, not good ones, and training it would triple the test's time."""
    torch.manual_seed(0)
    torch.save(DigitsCNN().state_dict(), tmp_path / DIGITS_CNN_FILE)
    config = {**TINY_DIGITS, "cache_dir": str(tmp_path)}
    fast = run_trial({**config, "gmm_backend": "torch"})  # what auto picks on CUDA
    plain = run_trial({**config, "train_loop": "plain", "gmm_backend": "sklearn"})
    assert fast["status"] == plain["status"] == "ok", fast["traceback"] or plain["traceback"]
    assert (fast["train_loop"], fast["gmm_backend"], plain["train_loop"], plain["gmm_backend"]) == (
        "fast",
        "torch",
        "plain",
        "sklearn",
    )
    assert (
        fast["precision"] == plain["precision"] == "fp32"
        and fast["compiled"] is plain["compiled"] is False
    )
    assert fast["gmm_n_iter"] > 1 and math.isfinite(fast["fd_gmm"])
    for column in set(RESULT_COLUMNS) - TIMING - HOW_IT_RAN:
        if isinstance(plain[column], float):
            assert fast[column] == pytest.approx(plain[column], rel=TOLERANCE, abs=1e-12), column
        else:
            assert fast[column] == plain[column], column


def test_packing_recommends_the_smallest_share_near_the_best_rate():
    measured = {1: (100.0, 1.0), 2: (180.0, 1.0), 4: (196.0, 1.0), 8: (200.0, 1.0)}
    measured = {k: {"images_per_s": rate, "peak_gib": gib} for k, (rate, gib) in measured.items()}
    assert packing.recommend(measured, memory_gib=None) == 4  # 196 is within 5% of 200; 180 is not
    assert packing.recommend(measured, memory_gib=4 * (1.0 + packing.EVAL_RESERVE_GIB)) == 4
    assert (
        packing.recommend(measured, memory_gib=2 * (1.0 + packing.EVAL_RESERVE_GIB)) == 2
    )  # 4 would not fit
    assert packing.recommend(measured, memory_gib=1.0) == 1  # nothing fits: one trial per card


def test_packing_runs_concurrent_trials_on_cpu():
    size = {"images": 48, "epochs": 2}  # the first epoch is not counted
    result = packing.measure(filters=4, processes=2, size=size, device=torch.device("cpu"))
    assert result["images_per_s"] > 0 and result["peak_gib"] == 0.0 and result["ran_as"] == "eager"

"""benchmarks/gpu_check.sh at CPU sizes (every step runs, the GPU tests skip): its logs and its
summary; and the pieces of its new benchmarks that a CPU can check exactly.

The figures themselves come from the card: docs/performance.md#the-gpu-check."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from benchmarks import flops, streams, trial_phases
from benchmarks.train_step import resident_training
from trainables.config import make_config
from trainables.models import build_model, reconstruction_loss

REPO = Path(__file__).resolve().parents[1]
TINY = {"dataset": "cifar10", "filters": 4, "latent": 8, "batch_size": 4, "precision": "fp32"}
# a part takes minutes on two idle cores, and several times that on a busy machine
PART_TIMEOUT_S = 1800
STEPS = {
    "1": ["environment", "gpu-tests", "trials", "table1-cost"],
    "2": ["environment", "agreement", "scoring", "throughput", "compile", "streams"],
}


def test_a_steps_flops_are_those_of_a_whole_batch():
    """step_flops counts two images and scales to the batch: every counted operation is linear in
    the batch, so a direct count of a whole batch of 4 is the same number."""
    cfg = make_config(TINY)
    torch.manual_seed(0)
    model = build_model(cfg)
    x = torch.rand(cfg.batch_size, 3, 32, 32)
    with FlopCounterMode(display=False) as counter:
        logits, _ = model(x)
        reconstruction_loss(logits, x, "sum").mean().backward()
    assert flops.step_flops(cfg, torch.device("cpu")) == counter.get_total_flops() > 0


@pytest.mark.parametrize(
    "name, card",
    [
        ("NVIDIA H100 80GB HBM3", "H100 SXM"),
        ("NVIDIA H100 PCIe", "H100 PCIe"),
        ("NVIDIA H200", "H200 SXM"),
        ("NVIDIA H200 NVL", None),  # another card: no peak rather than a wrong one
        ("NVIDIA A100-SXM4-80GB", None),
    ],
)
def test_the_dense_peak_is_the_named_cards(monkeypatch, name, card):
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device: name)
    cuda = torch.device("cuda", 0)
    assert flops.peak_card(cuda) == card
    peaks = {row[0]: row[2] for row in flops.DENSE_PEAK_TFLOPS}
    expected = peaks[card]["tf32"] if card else None
    assert flops.dense_peak(cuda, "tf32") == expected
    assert flops.dense_peak(cuda, "fp64") is None and flops.peak_card(torch.device("cpu")) is None


def test_trials_together_each_train_every_round(one_torch_thread):
    """The streams harness (one after another on a CPU): each trial trains one batch a round."""
    cpu = torch.device("cpu")
    trainings = [resident_training(make_config({**TINY, "seed": s}), cpu, 2) for s in (0, 1)]
    assert [training.step.seen for training, _ in trainings] == [0, 0]  # after their warm-up
    assert streams.images_per_s(trainings, rounds=3, device=cpu) > 0
    assert [training.step.seen for training, _ in trainings] == [3 * 4, 3 * 4]


def test_a_shortened_paper_trial_is_judged_at_100_epochs(capsys):
    """Trained for 10 epochs (--epochs 10), the target sees the train phase x 10, the rest once."""
    row = {f"{phase}_s": 5.0 for phase in trial_phases.PHASES} | {"train_s": 20.0, "wall_s": 45.0}
    row |= {"dataset": "cifar10", "model": "dae", "filters": 128, "depth": "1", "latent": 128}
    row |= {"epochs": 10, "n_scored": 10_000, "precision": "bf16", "train_step": "graph"}
    row |= {"train_step_error": None, "compiled": False, "train_loop": "fast", "device": "cuda:0"}
    row |= {"gmm_backend": "torch", "gmm_n_iter": 9, "gmm_converged": True, "score_tf32": False}
    row |= {"feature_extractor": "inception-fid"}
    trial_phases.report(row, [], paper=True)
    scaled = 45 + 20 * 9  # s: the 10 epochs' wall, and 90 more epochs at 2 s each
    expected = (
        f"<= 120 s on one H100/H200: {scaled} s at 100 epochs, its train phase scaled from 10"
    )
    assert f"{expected}: NOT met on cuda:0." in capsys.readouterr().out
    trial_phases.report(row | {"epochs": 100}, [], paper=True)
    assert "45 s at 100 epochs: met on cuda:0." in capsys.readouterr().out


def check(part: str, tmp_path: Path) -> tuple[str, Path]:
    """Run one part at CPU sizes into tmp_path; its summary and logs, which must say it went
    well."""
    env = {**os.environ, "OUT": str(tmp_path), "PYTHON": sys.executable, "PYTHONPATH": str(REPO)}
    env |= {"DAE_CACHE_DIR": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        ["bash", "benchmarks/gpu_check.sh", "--cpu", part],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=PART_TIMEOUT_S - 60,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    summary = (tmp_path / f"summary-{part}.log").read_text()
    assert f"## GPU check, part {part} (cpu sizes)" in summary
    for name in STEPS[part]:
        assert re.search(rf"^\| {name} +\| ok +\|", summary, re.M), name
        assert (tmp_path / f"{name}.log").stat().st_size > 0
    assert {p.name for p in tmp_path.iterdir() if p.is_file()} == {
        f"{name}.log" for name in STEPS[part]
    } | {f"summary-{part}.log"}
    environment = (tmp_path / "environment.log").read_text()
    for line in ("date:", "card:", "torch:", "python:", "host:", "commit:"):
        assert line in environment and line in summary
    return summary, tmp_path


@pytest.mark.slow
@pytest.mark.timeout(PART_TIMEOUT_S)
def test_part_1_at_cpu_sizes_logs_every_step_and_sums_them_up(tmp_path):
    summary, logs = check("1", tmp_path)
    assert "GPU-hours per grid on this card" in summary  # table1-cost's table
    assert "One trial at 8 filters, seconds per phase" in summary
    assert "skipped" in (logs / "gpu-tests.log").read_text()  # no CUDA here


@pytest.mark.slow
@pytest.mark.timeout(PART_TIMEOUT_S)
def test_part_2_at_cpu_sizes_logs_every_step_and_sums_them_up(tmp_path):
    summary, logs = check("2", tmp_path)
    for title in ("Graphed vs eager trials", "Scoring sets of 50", "Training throughput"):
        assert title in summary
    compiled = (logs / "compile.log").read_text()
    held = re.search(r"Inductor's cache held (\d+) files", compiled)
    assert held and int(held.group(1)) > 0  # the trainer put Inductor's cache where it said
    assert re.search(r"^ +CompileCost\(\{\"dataset\": \"cifar10\"", summary, re.M)
    assert "Trials together in one process" in summary

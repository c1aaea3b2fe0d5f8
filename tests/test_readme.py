"""Every ```python block of README.md runs as written, beside a small real digits store.

The store holds rows of the digits grid's DAE curve, shrunk to one epoch of 11 steps and 100 scored
samples, made by run_trial and written by the store as a launch of `python study/launch.py` does.
The digits classifier is cached untrained: these tests judge whether the blocks run, not scores,
and they are spared training it.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from study import grids
from study.store import ResultStore
from trainables import digits_cnn
from trainables.trial import run_trial

REPO = Path(__file__).resolve().parents[1]
BLOCKS = re.findall(r"^```python\n(.*?)^```", (REPO / "README.md").read_text(), re.M | re.S)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> tuple[Path, dict]:
    """A folder holding results.parquet, and the environment the blocks run in."""
    root = tmp_path_factory.mktemp("readme")
    (root / "cache").mkdir()
    torch.save(digits_cnn.DigitsCNN().state_dict(), root / "cache" / digits_cnn.DIGITS_CNN_FILE)
    env = {**os.environ, "PYTHONPATH": str(REPO), "DAE_CACHE_DIR": str(root / "cache")}
    small = {"epochs": 1, "batch_size": 128, "n_samples": 100, "gmm_components": 2}
    small["cache_dir"] = env["DAE_CACHE_DIR"]
    trials = [cfg for cfg in grids.expand("digits", overrides=small) if cfg.model == "dae"]
    with ResultStore(root / "results.parquet") as store:
        for cfg in trials[:2]:
            row = run_trial(cfg)
            assert row["status"] == "ok", row["error"]
            store.write({**row, "grid": "digits", "replicate": cfg.seed, "search": "grid"})
    return root, env


def test_the_readme_has_python_blocks():
    assert len(BLOCKS) >= 2


@pytest.mark.slow
@pytest.mark.parametrize("block", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_a_readme_block_runs(workdir, block):
    root, env = workdir
    result = subprocess.run(
        [sys.executable, "-c", block], cwd=root, env=env, capture_output=True, timeout=300
    )
    assert result.returncode == 0, result.stderr.decode()[-2000:]


def test_ci_runs_exactly_the_readmes_test_command():
    """The README's second set-up line is what CI runs: a change to one must reach the other."""
    first_block = re.search(r"^```bash\n(.*?)^```", (REPO / "README.md").read_text(), re.M | re.S)
    readme_test_line = first_block.group(1).splitlines()[1]
    assert (REPO / ".ci" / "run").read_text().splitlines()[-1] == readme_test_line

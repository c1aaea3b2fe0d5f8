import os
from pathlib import Path

import pytest
import torch
from launching import kill_sessions, session_members

from trainables import features
from trainables.digits_cnn import DIGITS_CNN_FILE, DigitsCNN


@pytest.fixture
def sessions():
    """Launchers started in sessions of their own; what they leave running is killed at the end."""
    started: list[int] = []
    yield started
    kill_sessions(started)
    assert not [pid for sid in started for pid in session_members(sid)], (
        "Ray processes outlived the test"
    )


@pytest.fixture
def one_torch_thread():
    """One torch thread for in-process trials: they are tiny, so a second thread gains nothing, and
    on a shared 2-core machine its spin-waits cost seconds per trial."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def untrained_digits_cnn():
    """folder -> folder, now holding a seeded, untrained digits-cnn where every trial looks for the
    trained one: for trials whose test judges the wiring, not the scores (both sides of a
    comparison see the same features), so no test pays for training it; tests/test_features.py
    trains the real one."""

    def cache(folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            torch.save(DigitsCNN().state_dict(), folder / DIGITS_CNN_FILE)
        return folder

    return cache


@pytest.fixture
def digits_cache(tmp_path, untrained_digits_cnn) -> Path:
    """A cache folder holding the untrained digits-cnn."""
    return untrained_digits_cnn(tmp_path / "cache")


@pytest.fixture(scope="session")
def random_fid_weights(tmp_path_factory) -> Path:
    """A weights file in the real FID layout with seeded random values: the real loading path, and
    features that are the same on both sides of any comparison."""
    path = tmp_path_factory.mktemp("weights") / features.FID_WEIGHTS_FILE
    torch.save(features.random_inception_state_dict(), path)
    return path


@pytest.fixture(scope="session")
def random_weights_env(tmp_path_factory, untrained_digits_cnn, random_fid_weights) -> dict:
    """The environment of an offline launch whose trials score: the random FID weights and an
    untrained digits-cnn cached where every trial looks, so no launcher or Ray worker trains one;
    for tests that judge what becomes of rows, not the scores. No data."""
    root = tmp_path_factory.mktemp("random-weights")
    return {
        **os.environ,
        "DAE_DATA_ROOT": str(root / "no-data"),
        "DAE_FID_WEIGHTS": str(random_fid_weights),
        "DAE_CACHE_DIR": str(untrained_digits_cnn(root / "cache")),
    }

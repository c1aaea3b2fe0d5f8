import sys
from pathlib import Path

import pytest
import torch
from launching import kill_sessions, session_members

from trainables.digits_cnn import DIGITS_CNN_FILE, DigitsCNN

# benchmarks/ sits beside tests/ and is not installed: the tests import it from the repository root
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


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
    on a shared 2-core machine its spin-waits cost seconds per trial (measured: a tiny digits trial
    took 97 s to train with 2 threads at a load of 6, 7 s with one)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def digits_cache(tmp_path) -> Path:
    """A cache folder holding a seeded, untrained digits-cnn: for trials whose test judges the
    wiring, not the scores (both sides of a comparison see the same features), so no test pays the
    ~10 s of training it; tests/test_features.py trains the real one."""
    cache = tmp_path / "cache"
    cache.mkdir()
    torch.manual_seed(0)
    torch.save(DigitsCNN().state_dict(), cache / DIGITS_CNN_FILE)
    return cache

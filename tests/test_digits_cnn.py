"""trainables/digits_cnn.py's cache: a file that cannot be the trained network (code instead of
tensors, empty, NaN) is never run or trusted, and is replaced by a network trained again. The
network itself, trained, is tested in test_features.py."""

import torch
from fixtures import MakesADirectory

from trainables import digits_cnn


def trains_untrained(monkeypatch) -> None:
    """load_digits_cnn() builds an untrained network where it would train one: these tests look
    at the file only."""
    monkeypatch.setattr(
        digits_cnn, "train_digits_cnn", lambda *args, **kwargs: digits_cnn.DigitsCNN().eval()
    )


def assert_plain_digits_cnn(path) -> None:
    """The cache file now holds a plain state dict (tensors only) of the digits-cnn."""
    assert set(torch.load(path, weights_only=True)) == set(digits_cnn.DigitsCNN().state_dict())


def test_a_malicious_digits_cnn_cache_is_not_executed_but_replaced(tmp_path, monkeypatch):
    marker, cache = tmp_path / "pwned", tmp_path / "cache"
    cache.mkdir()
    torch.save(MakesADirectory(marker), cache / digits_cnn.DIGITS_CNN_FILE)
    trains_untrained(monkeypatch)
    digits_cnn.load_digits_cnn(cache)
    assert not marker.exists()
    assert_plain_digits_cnn(cache / digits_cnn.DIGITS_CNN_FILE)


def test_an_empty_digits_cnn_cache_is_rebuilt(tmp_path, monkeypatch):
    """A zero-length file, as a full disk or an interrupted copy leaves: retrained, not a failed
    trial."""
    (tmp_path / digits_cnn.DIGITS_CNN_FILE).write_bytes(b"")
    trains_untrained(monkeypatch)
    digits_cnn.load_digits_cnn(tmp_path)
    assert_plain_digits_cnn(tmp_path / digits_cnn.DIGITS_CNN_FILE)


def test_a_digits_cnn_cache_holding_nan_is_retrained(tmp_path, monkeypatch):
    nan = {k: torch.full_like(v, torch.nan) for k, v in digits_cnn.DigitsCNN().state_dict().items()}
    torch.save(nan, tmp_path / digits_cnn.DIGITS_CNN_FILE)  # loads fine, scores NaN
    trains_untrained(monkeypatch)
    model = digits_cnn.load_digits_cnn(tmp_path)
    assert all(tensor.isfinite().all() for tensor in model.state_dict().values())
    cached = torch.load(tmp_path / digits_cnn.DIGITS_CNN_FILE, weights_only=True)
    assert all(tensor.isfinite().all() for tensor in cached.values())

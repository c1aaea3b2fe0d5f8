"""The report's index.html in a real browser (headless Chromium): every picture loads, nothing is
logged as an error, and the page renders to a screenshot; first, that the check sees a broken
page."""

import re

import pytest
from browser import CHROMIUM, render
from PIL import Image
from report_data import fixture_store

from analysis.report import main

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium; .ci/run does)"
)


def test_the_check_sees_a_picture_that_did_not_load_and_a_console_error(tmp_path):
    page = tmp_path / "broken.html"
    page.write_text(
        '<!DOCTYPE html><link rel="icon" href="data:,"><img src="absent.png">'
        "<script>console.error('boom')</script>"
    )
    found = render(page, tmp_path / "broken.png")
    assert found.images == [{"src": "absent.png", "complete": True, "width": 0}]
    assert "boom" in found.errors and any("absent.png" in e for e in found.errors)


def test_the_report_page_loads_whole_in_a_browser(tmp_path):
    """A CIFAR-10 fixture store of six curves: its figures, training curves and sample grids."""
    store = fixture_store(tmp_path / "results.parquet")
    assert main([str(store), "--out", str(tmp_path / "report"), "--dpi", "40"]) == 0
    html = tmp_path / "report" / "index.html"
    found = render(html, tmp_path / "page.png")
    pictures = re.findall(r'<img src="([^"]+)"', html.read_text())
    assert [image["src"] for image in found.images] == pictures
    assert sum(p.startswith("samples/") for p in pictures) == 6  # a grid per curve
    assert "training_cifar10.png" in pictures and "figure_1_cifar10.png" in pictures
    assert all(image["width"] > 0 for image in found.images), found.images
    assert found.errors == []
    with Image.open(tmp_path / "page.png") as shot:
        assert shot.height == found.height > 3000  # the whole page, not one screen of it

"""The README and every page of docs/: their Python blocks run as written, their links resolve,
every page is reachable from the README, the README stays a quick start, and a measured figure is
stated in one place only.

The blocks run beside a small real digits store: rows of the digits grid's DAE curve, shrunk to one
epoch and 100 scored samples, made by run_trial and written by the store as a launch does. The
digits classifier is cached untrained (the `digits_cache` fixture's network): these tests judge
whether the blocks run, not scores.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from study import grids
from study.store import ResultStore
from trainables.trial import run_trial

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
README_MAX_LINES = 200
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.M | re.S)
# A measured figure: a number with a unit of time, speed or cost, e.g. "183 s", "1.24 ms",
# "34-44 GPU-hours", "2,300 images/s", or a share that compares ("6-14%", "16% slower"); not part
# of a word (md5s) or a path (s/2), nor a set level ("95% interval", "until 33% of training").
FIGURE = re.compile(
    r"(?<![\w.])\d[\d,.]*(?:\s?-\s?\d[\d,.]*)?\s?"
    r"(?:(?:ms|s|min|minutes|seconds|h|hours|GPU-hours|images/s|img/s)(?![\w/])"
    r"|%(?=\s(?:less|more|slower|faster|fewer|worse|better|off))|(?<=-\d)%|(?<=-\d\d)%)"
)
SOURCE = [
    path for stage in ("trainables", "study", "analysis") for path in (REPO / stage).glob("*.py")
]


def python_blocks(page: Path) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", page.read_text(), re.M | re.S)


BLOCKS = [
    pytest.param(block, id=f"{page.stem}-{i}")
    for page in PAGES
    for i, block in enumerate(python_blocks(page))
]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, untrained_digits_cnn) -> tuple[Path, dict]:
    """A folder holding results.parquet, and the environment the blocks run in."""
    root = tmp_path_factory.mktemp("docs")
    cache = untrained_digits_cnn(root / "cache")
    env = {**os.environ, "PYTHONPATH": str(REPO), "DAE_CACHE_DIR": str(cache)}
    small = {"epochs": 1, "batch_size": 128, "n_samples": 100, "gmm_components": 2}
    trials = [cfg for cfg in grids.expand("digits", overrides=small) if cfg.model == "dae"]
    with ResultStore(root / "results.parquet") as store:
        for cfg in trials[:2]:
            row = run_trial(cfg.replace(cache_dir=str(cache)))
            assert row["status"] == "ok", row["error"]
            store.write({**row, "grid": "digits", "replicate": cfg.seed, "search": "grid"})
    return root, env


def test_the_readme_and_the_docs_have_python_blocks():
    assert len(python_blocks(REPO / "README.md")) >= 2 and len(BLOCKS) >= 3


@pytest.mark.slow
@pytest.mark.parametrize("block", BLOCKS)
def test_a_python_block_runs(workdir, block):
    root, env = workdir
    result = subprocess.run(
        [sys.executable, "-c", block], cwd=root, env=env, capture_output=True, timeout=300
    )
    assert result.returncode == 0, result.stderr.decode()[-2000:]


def anchors(page: Path) -> set[str]:
    """GitHub's anchors of a page: each heading's slug (lower case, punctuation dropped, spaces as
    hyphens), and every explicit <a id="...">."""
    text = FENCE.sub("", page.read_text())
    headings = re.findall(r"^#+\s+(.*)$", text, re.M)
    slugs = {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}
    return slugs | set(re.findall(r'<a id="([^"]+)">', text))


def links(page: Path) -> list[str]:
    return LINK.findall(FENCE.sub("", page.read_text()))


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_every_link_names_a_file_and_a_section_that_exist(page):
    broken = []
    for target in links(page):
        if re.match(r"[a-z]+://", target):
            continue
        path, _, anchor = target.partition("#")
        where = (page.parent / path).resolve() if path else page
        if not where.exists() or (anchor and anchor not in anchors(where)):
            broken.append(target)
    assert not broken, f"{page.name} links to what does not exist: {broken}"


def test_the_link_check_finds_a_missing_section(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# Title\n\n## A section\n\n[ok](#a-section) [bad](#no-such) [file](x.md)\n")
    found = [t for t in links(page) if t.partition("#")[2] not in anchors(page)]
    assert found == ["#no-such", "x.md"]


def test_every_docs_page_is_reachable_from_the_readme():
    linked = {(REPO / target.partition("#")[0]).resolve() for target in links(REPO / "README.md")}
    assert set(PAGES[1:]) <= linked


def test_the_readme_is_a_quick_start():
    assert len((REPO / "README.md").read_text().splitlines()) <= README_MAX_LINES


def figures(text: str) -> set[str]:
    """The measured figures a text states, spaces normalised ('183 s', '6-14%')."""
    return {re.sub(r"\s+", " ", found) for found in FIGURE.findall(FENCE.sub("", text))}


def test_the_figure_finder_finds_measurements_and_nothing_else():
    text = "took 183 s (train 148) at 2,300 images/s, 6-14%, 16% slower; md5s, s/2, "
    text += "34-44 GPU-hours; a 95% interval; 1e-3 until 33% of training"
    assert figures(text) == {"183 s", "2,300 images/s", "6-14%", "16%", "34-44 GPU-hours"}


def test_a_measured_figure_is_stated_on_one_page_only():
    """Each measurement lives where it is dated and attributed (docs/performance.md for speed
    and cost, docs/readings.md for the readings' evidence); other pages link to it."""
    seen: dict[str, Path] = {}
    repeated = []
    for page in PAGES:
        for figure in figures(page.read_text()):
            if figure in seen and seen[figure] != page:
                repeated.append(f"{figure!r} on {seen[figure].name} and {page.name}")
            seen.setdefault(figure, page)
    assert not repeated, repeated


@pytest.mark.parametrize("path", SOURCE, ids=lambda path: f"{path.parent.name}/{path.name}")
def test_the_code_links_to_measurements_instead_of_stating_them(path):
    comments = "\n".join(
        line for line in path.read_text().splitlines() if not re.search(r"f\"|print\(", line)
    )
    assert not figures(comments), f"{path}: state these in docs/performance.md and link to it"


def test_ci_runs_the_readmes_test_command():
    """The README's second set-up line is what CI runs first: a change to one reaches the other."""
    first_block = re.search(r"^```bash\n(.*?)^```", (REPO / "README.md").read_text(), re.M | re.S)
    readme_test_line = first_block.group(1).splitlines()[1]
    ci = (REPO / ".ci" / "run").read_text().splitlines()
    assert readme_test_line in ci


def test_the_store_page_lists_every_column_of_a_row():
    """docs/store.md's column table, beside trainables/schema.py: a column added to one and not to
    the other fails here."""
    from trainables.schema import CONFIG_COLUMNS, RESULT_COLUMNS

    text = (REPO / "docs" / "store.md").read_text()
    table = text[text.index("## Columns") :].split("\n## ")[0]
    first_cells = re.findall(r"^\| ([^|]+) \|", table, re.M)
    named = {name for cell in first_cells for name in re.findall(r"`(\w+)`", cell)}
    assert named - set(RESULT_COLUMNS) == set()  # no column the row does not have
    assert set(RESULT_COLUMNS) - set(CONFIG_COLUMNS) - named == set()  # and every other one


def test_the_code_names_only_docs_pages_that_exist():
    """A comment or docstring that sends a reader to docs/<page>.md names a page that is there (and
    none sends them to a section of the README, which is a quick start only)."""
    code = [path for path in REPO.glob("*/*.py") if path.parts[-2] != ".venv"]
    named = {
        (path, page) for path in code for page in re.findall(r"docs/([\w-]+\.md)", path.read_text())
    }
    assert {page for _, page in named} and all(
        (REPO / "docs" / page).is_file() for _, page in named
    )
    sections = [
        path for path in code if re.search(r"README[,.]? \(?\"|README, \"", path.read_text())
    ]
    assert not sections, f"these send the reader to a README section: {sections}"

"""Adding a dataset or a prior is one entry in one table: every mapping keyed by datasets or by
scored sets derives from its registry, so the new entry reaches every stage.

Each kind is added as a contributor would add it, as one entry in a copy of the code; the copy is
then imported whole, its module-level tables are searched for every one keyed by the registry's
names, and each must hold the new name too (but the paper's own tables, which describe the paper's
datasets and columns only). The prior also runs: a trial of it, stored, reported.
"""

import importlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
STAGES = ("trainables", "study", "analysis")
NEW_DATASET = """        DatasetSpec(
            name="tiles",
            label="Tiles",
            image_shape=(3, 32, 32),
            train_images=600,
            test_images=100,
            read=lambda root, cache_dir, verify: (
                np.zeros((600, 3, 32, 32), np.uint8),
                np.zeros((100, 3, 32, 32), np.uint8),
            ),
        ),
"""
# A diagonal Gaussian fitted to the codes: a prior the paper does not have, added as its entry.
NEW_PRIOR = """    "diag": Prior("Diagonal", lambda codes, cfg, dev: Diagonal.fit(codes), "-.", {}),
}


@dataclass(frozen=True)
class Diagonal:
    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, codes):
        return cls(codes.mean(axis=0), codes.std(axis=0))

    def sample(self, n, seed):
        noise = np.random.default_rng(seed).standard_normal((n, len(self.mean)))
        return self.mean + self.std * noise

    def record(self):
        return {}
"""
# Imported in the copy: every module-level table keyed by (at least two of) the given names, and
# whether it is one of the paper's own (trainables/published.py's, or a figure of the paper's),
# which describe the paper's datasets and columns only, whatever this code adds.
SURVEY = """
import importlib, json, pkgutil, sys
from trainables import published
names = set(json.loads(sys.argv[1]))
papers = {id(value) for value in vars(published).values()}
found = []
for stage in ("trainables", "study", "analysis"):
    for info in pkgutil.iter_modules(importlib.import_module(stage).__path__):
        module = importlib.import_module(f"{stage}.{info.name}")
        for attribute, value in vars(module).items():
            if isinstance(value, dict):
                keys = value.keys()
            elif isinstance(value, (tuple, list, set, frozenset)):
                keys = value
            else:
                continue
            keys = {key for key in keys if isinstance(key, str)}
            if len(keys & names) >= 2:
                paper = id(value) in papers or module is published or attribute == "SCATTERS"
                found.append([f"{module.__name__}.{attribute}", sorted(keys), paper])
print(json.dumps(found))
"""


def add(tmp_path: Path, module: str, anchor: str, entry: str) -> Path:
    """A copy of the three stages with `entry` inserted after `anchor` in trainables/<module>."""
    root = tmp_path / "grown"
    if not root.exists():
        for stage in STAGES:
            shutil.copytree(
                REPO / stage, root / stage, ignore=shutil.ignore_patterns("__pycache__")
            )
    path = root / "trainables" / module
    text = path.read_text()
    assert text.count(anchor) == 1, f"{module} has changed: update this test's anchor"
    path.write_text(text.replace(anchor, anchor + entry))
    return root


def run(root: Path, code: str, *args: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(root)}
    result = subprocess.run(
        [sys.executable, "-c", code, *args], cwd=root, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def derived(root: Path, names: set[str], new: str) -> dict[str, bool]:
    """For every table of the copy keyed by `names` but the paper's: whether it holds `new`."""
    found = json.loads(run(root, SURVEY, json.dumps(sorted({*names, new}))))
    return {name: new in keys for name, keys, paper in found if not paper}


def test_a_new_dataset_reaches_every_table_keyed_by_datasets(tmp_path):
    root = add(tmp_path, "data.py", "    for entry in (\n", NEW_DATASET)
    tables = derived(root, set(importlib.import_module("trainables.data").DATASETS), "tiles")
    assert "trainables.data.DATASETS" in tables, "the survey has stopped finding tables"
    missing = [name for name, holds in tables.items() if not holds]
    assert not missing, f"keyed by dataset but not derived from DATASETS: {missing}"
    checked = run(
        root,
        "from trainables.config import make_config; from study.resources import "
        "estimated_seconds, gpu_fraction; from analysis.results import dataset_name; "
        "from trainables import curves; cfg = make_config({'dataset': 'tiles'}); "
        "print(cfg.feature_extractor, estimated_seconds(cfg) > 0, gpu_fraction(cfg), "
        "dataset_name('tiles'), curves.label(cfg.science()))",
    )
    assert checked.split() == [
        "inception-fid",
        "True",
        "1.0",
        "Tiles",
        "tiles",
        "dae",
        "f128",
        "d1",
    ]


def test_the_survey_finds_a_table_that_is_not_derived(tmp_path):
    """A mapping written out by hand, as DEPTH1_GPU_SHARE once was, is caught."""
    root = add(tmp_path, "data.py", "    for entry in (\n", NEW_DATASET)
    (root / "study" / "handwritten.py").write_text('SHARE = {"cifar10": 1.0, "celeba": 1.0}\n')
    tables = derived(root, set(importlib.import_module("trainables.data").DATASETS), "tiles")
    assert tables["study.handwritten.SHARE"] is False


@pytest.mark.slow
def test_a_new_prior_is_one_entry_that_reaches_the_row_the_launcher_and_the_report(
    tmp_path, untrained_digits_cnn
):
    root = add(
        tmp_path, "priors.py", '            "gmm_backend": str,\n        },\n    ),\n', NEW_PRIOR
    )
    text = (root / "trainables" / "priors.py").read_text()
    (root / "trainables" / "priors.py").write_text(text.replace(NEW_PRIOR + "}\n", NEW_PRIOR))
    tables = derived(
        root, set(importlib.import_module("trainables.scored_sets").SCORED_SETS), "diag"
    )
    assert "trainables.scored_sets.SCORED_SETS" in tables, "the survey has stopped finding tables"
    missing = [name for name, holds in tables.items() if not holds]
    assert not missing, f"keyed by scored set but not derived from PRIORS: {missing}"
    cache = untrained_digits_cnn(tmp_path / "cache")
    out = tmp_path / "report"
    trial = (
        "import sys; from trainables.trial import run_trial; from study.store import ResultStore\n"
        "from analysis.report import main\n"
        "overrides = {'dataset': 'digits', 'filters': 4, 'latent': 4, 'epochs': 1,\n"
        f"             'n_samples': 100, 'cache_dir': {str(cache)!r}}}\n"
        "with ResultStore(sys.argv[1]) as store:\n"
        "    for latent in (4, 8):\n"
        "        row = run_trial({**overrides, 'latent': latent})\n"
        "        assert row['status'] == 'ok', row['error']\n"
        "        print(round(row['fd_diag'], 3))\n"
        "        store.write({**row, 'grid': 'g', 'replicate': 0, 'search': 'grid'})\n"
        "sys.exit(main([sys.argv[1], '--out', sys.argv[2]]))\n"
    )
    printed = run(root, trial, str(tmp_path / "results.parquet"), str(out))
    assert all(float(line) > 0 for line in printed.splitlines()[:2])
    assert "diag" in (out / "optima.csv").read_text()

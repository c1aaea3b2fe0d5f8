"""A lint of the source: no module of the study can unpickle an untrusted file (torch.load without
weights_only=True, np.load without allow_pickle=False, pickle and its kin), and the scan that says
so finds each unsafe form. What each loader does with a payload is tested beside it
(test_features.py, test_digits_cnn.py, test_data.py, test_fid_helper_weights.py)."""

import ast
import sys
from pathlib import Path

from launching import REPO

# (file, function) where unpickling is accepted: none (CIFAR-10's batches go through an unpickler
# that refuses every global but numpy's array parts)
ACCEPTED_PICKLES: set[tuple[str, str]] = set()


def unsafe_loads(path: Path) -> list[str]:
    """Calls in a source file that could unpickle: torch.load without weights_only=True, np.load
    without allow_pickle=False, any pickle/joblib/dill/cloudpickle load, pandas read_pickle."""
    found = []

    def visit(node: ast.AST, function: str) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            function = node.name
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            owner = node.func.value.id if isinstance(node.func.value, ast.Name) else ""
            call = f"{owner}.{node.func.attr}"
            keywords = {k.arg: getattr(k.value, "value", None) for k in node.keywords}
            unsafe = (
                (call == "torch.load" and keywords.get("weights_only") is not True)
                or (call in ("np.load", "numpy.load") and keywords.get("allow_pickle") is not False)
                or (
                    owner in ("pickle", "joblib", "dill", "cloudpickle")
                    and node.func.attr in ("load", "loads")
                )
                or node.func.attr in ("read_pickle", "Unpickler")
            )
            if unsafe and (str(path.relative_to(REPO)), function) not in ACCEPTED_PICKLES:
                found.append(f"{path.relative_to(REPO)}:{node.lineno} {call} in {function}")
        for child in ast.iter_child_nodes(node):
            visit(child, function)

    visit(ast.parse(path.read_text()), "<module>")
    return found


def test_no_source_file_can_unpickle_an_untrusted_file():
    sources = [
        p for folder in ("trainables", "study", "analysis") for p in (REPO / folder).rglob("*.py")
    ]
    assert len(sources) > 10
    assert [hit for path in sources for hit in unsafe_loads(path)] == []


def test_the_safe_load_scan_finds_what_it_is_for(tmp_path, monkeypatch):
    """The scan above must be able to fail: each unsafe form is found, its safe twin is not."""
    monkeypatch.setattr(sys.modules[__name__], "REPO", tmp_path)
    source = tmp_path / "loader.py"
    source.write_text(
        "def f(p):\n"
        "    torch.load(p)\n"
        "    torch.load(p, weights_only=False)\n"
        "    torch.load(p, weights_only=True)\n"
        "    np.load(p)\n"
        "    np.load(p, allow_pickle=False)\n"
        "    pickle.loads(p)\n"
        "    pd.read_pickle(p)\n"
    )
    assert [hit.split(" ")[0] for hit in unsafe_loads(source)] == [
        "loader.py:2",
        "loader.py:3",
        "loader.py:5",
        "loader.py:7",
        "loader.py:8",
    ]

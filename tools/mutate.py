"""Mutation testing: does some test fail when one line of the science is wrong?

    python tools/mutate.py                       # 5 seeded mutants of every target (~30 min)
    python tools/mutate.py --sample 0            # every mutant (hours on 2 cores)
    python tools/mutate.py --module trainables/models.py --module analysis/optimum.py
    python tools/mutate.py --list                # the mutants, without running anything

Each mutant changes one place of one module: a comparison flipped (< to <=, == to !=, in to not
in), an arithmetic operator swapped (+ and -, * and /), a number moved by one, True and False
swapped, `and` and `or` swapped, a `not` or a minus sign dropped, or one simple statement (a call,
an assignment, a return, a raise) replaced by `pass`. It is made through `ast`, so docstrings,
comments and imports are never mutated. The mutant runs the target's own test files (TARGETS),
`pytest -x`, in a copy of the tree in a temporary folder (the checkout is never touched), with
a timeout of 3x the unmutated run plus 30 s; a mutant is killed when a test fails or times out.

The score is killed / run. Survivors are printed with their line: each is either an equivalent
mutant (no behaviour changed: a batch size, a message) or a missing test.
"""

import argparse
import ast
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# module -> the pytest arguments that test it: its test files, and -k to leave out tests that take
# long and check something else (bf16 and torch.compile on a CPU, the Inception end-to-end trials)
TRAIN_TESTS = ("tests/test_train.py", "-k", "not bf16 and not compiled")
TARGETS = {
    "trainables/models.py": ("tests/test_models.py", *TRAIN_TESTS),
    "trainables/cuda_graph.py": TRAIN_TESTS,
    "trainables/train.py": TRAIN_TESTS,
    "trainables/trial.py": (
        "tests/test_trial.py",
        "-k",
        "right_images or gmm_max_iter or divergence or bad_config or missing_dataset",
    ),
    "trainables/priors.py": ("tests/test_priors.py",),
    "trainables/frechet.py": ("tests/test_frechet.py",),
    "trainables/features.py": ("tests/test_features.py",),
    "trainables/digits_cnn.py": (
        "tests/test_digits_cnn.py",
        "tests/test_features.py",
        "-k",
        "digits",
    ),
    "trainables/data.py": ("tests/test_data.py",),
    "trainables/config.py": ("tests/test_config.py",),
    "trainables/schema.py": ("tests/test_schema.py", "tests/test_store.py"),
    "trainables/files.py": ("tests/test_files.py", "tests/test_store.py", "tests/test_data.py"),
    "trainables/fid_helper_weights.py": ("tests/test_fid_helper_weights.py",),
    "analysis/optimum.py": ("tests/test_analysis_optimum.py",),
    "study/store.py": ("tests/test_store.py",),
}
# mutants per module by default: 75 in all. Measured: 96 mutants of 8 of these modules took 38.5
# minutes on 2 cores shared with other work (load ~5), 24 s a mutant: 75 take about 30 minutes there
SAMPLE = 5
COPY_IGNORE = shutil.ignore_patterns(
    ".git", ".venv", "__pycache__", ".pytest_cache", ".ruff_cache", "*.egg-info", "results.parquet"
)

COMPARISONS = {
    ast.Lt: ast.LtE,
    ast.LtE: ast.Lt,
    ast.Gt: ast.GtE,
    ast.GtE: ast.Gt,
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.Is: ast.IsNot,
    ast.IsNot: ast.Is,
    ast.In: ast.NotIn,
    ast.NotIn: ast.In,
}
ARITHMETIC = {
    ast.Add: ast.Sub,
    ast.Sub: ast.Add,
    ast.Mult: ast.Div,
    ast.Div: ast.Mult,
    ast.FloorDiv: ast.Div,
    ast.Mod: ast.FloorDiv,
    ast.Pow: ast.Mult,
}
DELETABLE = (ast.Expr, ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Return, ast.Raise)
Apply = Callable[[], None]


@dataclass(frozen=True)
class Mutant:
    module: str
    node: int  # position of the mutated node in ast.walk order
    variant: int  # which of that node's mutations
    line: int
    what: str

    def __str__(self) -> str:
        return f"{self.module}:{self.line}: {self.what}"


def _name(op: ast.AST) -> str:
    return ast.unparse(ast.Compare(ast.Name("a"), [op], [ast.Name("b")]))[2:-2]


def _op_name(op: ast.AST) -> str:
    return ast.unparse(ast.BinOp(ast.Name("a"), op, ast.Name("b")))[2:-2]


def _is_docstring(stmt: ast.stmt) -> bool:
    return isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant)


def _node_mutations(node: ast.AST) -> Iterator[tuple[int, str, Apply]]:
    """(line, description, apply in place) for each mutation of this one node."""
    if isinstance(node, ast.Compare):
        for k, op in enumerate(node.ops):
            if type(op) in COMPARISONS:
                new = COMPARISONS[type(op)]()
                change = f"{_name(op)} -> {_name(new)}"
                yield node.lineno, change, lambda k=k, new=new: node.ops.__setitem__(k, new)
    elif isinstance(node, (ast.BinOp, ast.AugAssign)) and type(node.op) in ARITHMETIC:
        new = ARITHMETIC[type(node.op)]()
        change = f"{_op_name(node.op)} -> {_op_name(new)}"
        yield node.lineno, change, lambda: setattr(node, "op", new)
    elif isinstance(node, ast.BoolOp):
        new = ast.Or() if isinstance(node.op, ast.And) else ast.And()
        old = "and" if isinstance(node.op, ast.And) else "or"
        change = f"{old} -> {'or' if old == 'and' else 'and'}"
        yield node.lineno, change, lambda: setattr(node, "op", new)
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.Not, ast.USub)):
        old = "not" if isinstance(node.op, ast.Not) else "-"
        # +x: the operand itself (a bool's truth is kept), so the `not` or the minus is gone
        yield node.lineno, f"drop `{old}`", lambda: setattr(node, "op", ast.UAdd())
    elif isinstance(node, ast.Constant) and type(node.value) is bool:
        change = f"{node.value} -> {not node.value}"
        yield node.lineno, change, lambda: setattr(node, "value", not node.value)
    elif isinstance(node, ast.Constant) and type(node.value) in (int, float):
        new = node.value + 1
        yield node.lineno, f"{node.value!r} -> {new!r}", lambda: setattr(node, "value", new)
    for field in ("body", "orelse", "finalbody"):
        statements = getattr(node, field, None)
        if not isinstance(statements, list):
            continue
        for j, stmt in enumerate(statements):
            if isinstance(stmt, DELETABLE) and not _is_docstring(stmt):
                first = ast.unparse(stmt).splitlines()[0][:60]
                yield (
                    stmt.lineno,
                    f"deleted: {first}",
                    lambda statements=statements, j=j, stmt=stmt: statements.__setitem__(
                        j, ast.copy_location(ast.Pass(), stmt)
                    ),
                )


def _skipped(tree: ast.Module) -> set[int]:
    """ids of nodes never mutated: inside f-strings (messages), and the `if __name__` block."""
    skipped = set()
    for node in ast.walk(tree):
        main = isinstance(node, ast.If) and "__name__" in ast.unparse(node.test)
        if isinstance(node, ast.JoinedStr) or main:
            skipped.update(id(child) for child in ast.walk(node))
    return skipped


def _walk(source: str) -> tuple[ast.Module, list[ast.AST], set[int]]:
    tree = ast.parse(source)
    return tree, list(ast.walk(tree)), _skipped(tree)


def mutants(module: str) -> list[Mutant]:
    source = (REPO / module).read_text()
    _, nodes, skipped = _walk(source)
    found = []
    for index, node in enumerate(nodes):
        if id(node) in skipped:
            continue
        for variant, (line, what, _) in enumerate(_node_mutations(node)):
            found.append(Mutant(module, index, variant, line, what))
    return found


def mutated_source(mutant: Mutant, source: str) -> str:
    tree, nodes, _ = _walk(source)
    _, _, apply = list(_node_mutations(nodes[mutant.node]))[mutant.variant]
    apply()
    return ast.unparse(ast.fix_missing_locations(tree)) + "\n"


def _pytest(tree: Path, module: str, timeout: float) -> tuple[str, float]:
    """-> ("passed" | "failed" | "timeout", seconds) for the module's tests in the copy `tree`."""
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider"]
    command += ["-p", "no:randomly", *TARGETS[module]]
    env = {**os.environ, "PYTHONPATH": str(tree), "PYTHONDONTWRITEBYTECODE": "1"}
    start = time.perf_counter()
    try:
        result = subprocess.run(
            command, cwd=tree, env=env, capture_output=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        return "timeout", time.perf_counter() - start
    outcome = {0: "passed", 1: "failed"}.get(result.returncode)
    if outcome is None:  # 2-5: interrupted, internal or usage error, nothing collected
        outcome = "failed" if result.returncode == 2 else f"error {result.returncode}"
    return outcome, time.perf_counter() - start


class Workers:
    """One copy of the tree per job; a mutant is written into a copy, run, and the file restored."""

    def __init__(self, jobs: int):
        self.root = Path(tempfile.mkdtemp(prefix="mutate-"))
        self.free = []
        for j in range(jobs):
            shutil.copytree(REPO, self.root / str(j), ignore=COPY_IGNORE)
            self.free.append(self.root / str(j))
        self.lock = threading.Lock()

    def run(self, module: str, source: str, timeout: float) -> tuple[str, float]:
        with self.lock:
            tree = self.free.pop()
        path = tree / module
        original = path.read_text()
        try:
            path.write_text(source)
            return _pytest(tree, module, timeout)
        finally:
            path.write_text(original)
            with self.lock:
                self.free.append(tree)

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--module", action="append", choices=sorted(TARGETS), help="repeatable")
    parser.add_argument("--sample", type=int, default=SAMPLE, help="mutants per module; 0: all")
    parser.add_argument("--seed", type=int, default=0, help="which mutants the sample draws")
    parser.add_argument("--jobs", type=int, default=1, help="mutants run at once")
    parser.add_argument("--list", action="store_true", help="print the mutants and stop")
    args = parser.parse_args(argv)
    modules = args.module or list(TARGETS)
    chosen: dict[str, list[Mutant]] = {}
    for module in modules:
        every = mutants(module)
        picked = every
        if 0 < args.sample < len(every):
            picked = sorted(
                random.Random(f"{args.seed}-{module}").sample(every, args.sample),
                key=lambda m: (m.line, m.node, m.variant),
            )
        chosen[module] = picked
        print(f"{module}: {len(every)} mutants, running {len(picked)}", flush=True)
    if args.list:
        for mutant in (m for picked in chosen.values() for m in picked):
            print(mutant)
        return 0

    start = time.perf_counter()
    workers = Workers(args.jobs)
    results: dict[Mutant, str] = {}
    try:
        for module, picked in chosen.items():
            source = (REPO / module).read_text()
            outcome, seconds = workers.run(module, source, timeout=1800)
            if outcome != "passed":
                print(f"{module}: its tests do not pass unmutated ({outcome}); skipped", flush=True)
                continue
            timeout = 3 * seconds + 30

            def one(mutant: Mutant, source=source, timeout=timeout) -> None:
                try:
                    text = mutated_source(mutant, source)
                    compile(text, mutant.module, "exec")
                except (SyntaxError, ValueError) as err:
                    outcome = f"invalid ({err})"
                else:
                    outcome, _ = workers.run(mutant.module, text, timeout)
                results[mutant] = outcome
                print(f"  {outcome:8} {mutant}", flush=True)

            print(f"{module}: unmutated {seconds:.0f} s; timeout {timeout:.0f} s", flush=True)
            with ThreadPoolExecutor(args.jobs) as pool:
                list(pool.map(one, picked))
    finally:
        workers.close()

    run = {m: o for m, o in results.items() if o in ("passed", "failed", "timeout")}
    survivors = [m for m, o in run.items() if o == "passed"]
    killed = len(run) - len(survivors)
    minutes = (time.perf_counter() - start) / 60
    print(f"\nscore: {killed}/{len(run)} killed ({100 * killed / max(len(run), 1):.0f}%)", end="")
    timeouts = sum(o == "timeout" for o in run.values())
    print(f", {timeouts} by timeout; {len(results) - len(run)} not run; {minutes:.1f} min")
    for mutant in survivors:
        line = (REPO / mutant.module).read_text().splitlines()[mutant.line - 1].strip()
        print(f"survived {mutant}\n    {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

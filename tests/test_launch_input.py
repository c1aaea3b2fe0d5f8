"""study/launch.py given bad input: every kind gets one message that names the problem and its fix,
exit status 2, before Ray is imported or the store is opened. The cases run through main() in one
interpreter; one runs as the script itself."""

import os
import re
import subprocess
import sys

import pytest
from fixtures import ALIAS_BOMB
from launching import REPO, run_mains

from trainables.testing import write_cifar10_fixture

# id -> (arguments, what the message must name: the problem, then the fix)
BAD_INPUT = {
    "unknown grid": (["--grid", "tabel1"], "unknown grid 'tabel1'", "known grids: digits, smoke"),
    "unknown --set key": (
        ["--set", "latnet=8"],
        "unknown config key 'latnet'",
        "did you mean 'latent'?",
    ),
    "misspelled key in a grid file": (
        ["--grid-file", "{typo}"],
        "entry 0 {{'laten': 8}}",
        "did you mean 'latent'?",
    ),
    "latent 0": (["--set", "latent=0"], "--set latent=0: latent: must be", "at least 1"),
    "filters not a power of two": (
        ["--set", "filters=12"],
        "--set filters=12: filters:",
        "must be a power of two",
    ),
    "depth of the wrong length": (
        ["--set", "depth=[3,3,2]"],
        "depth: a per-stage list",
        "needs exactly 4 entries",
    ),
    "negative noise": (
        ["--set", "noise_std=-0.5"],
        "--set noise_std=-0.5: noise_std:",
        "must be at least 0",
    ),
    "seed set by hand": (
        ["--set", "seed=3"],
        "--set seed=3: replicate r always runs with seed r",
        "use --seeds N",
    ),
    "seed in a grid file": (
        ["--grid-file", "{seeded}"],
        "entry 0 {{'seed': 2}}: replicate r",
        "use --seeds N",
    ),
    "--set without a value": (
        ["--set", "latent"],
        "argument --set: expected KEY=VALUE",
        "e.g. epochs=2",
    ),
    "grid file not a list": (
        ["--grid-file", "{mapping}"],
        "expected a non-empty list of mappings",
        "write a list",
    ),
    "grid file missing": (
        ["--grid-file", "{nowhere}/g.yaml"],
        "cannot read it",
        "write a list of mappings",
    ),
    "missing dataset root": (
        ["--set", "dataset=cifar10", "--data-root", "{nowhere}"],
        "cifar10 not found: looked for {nowhere}/cifar-10-batches-py",
        "set DAE_DATA_ROOT / --data-root",
    ),
    "missing Inception weights": (
        ["--set", "dataset=cifar10", "--set", "verify_checksums=false", "--data-root", "{cifar}"],
        "FID Inception weights not found at {nowhere}/fid.pth",
        "set DAE_FID_WEIGHTS",
    ),
    "results path under a file": (
        ["--results", "{file}/r"],
        "cannot write the results store",
        "pass --results",
    ),
    "results path is a file": (
        ["--results", "{file}"],
        "it is a file, not a folder",
        "pass --results a folder",
    ),
    "dry run, results path is a file": (
        ["--dry-run", "--results", "{file}"],
        "it is a file, not a folder",
        "pass --results a folder",
    ),
    "dry run, results path under a file": (
        ["--dry-run", "--results", "{file}/r"],
        "cannot write the results store",
        "pass --results",
    ),
    # values that pass a type check but no store column or hardware can hold
    "n_samples beyond int64": (
        ["--set", "n_samples=1e19"],
        "--set n_samples=1e+19: n_samples: must be at most 1,000,000",
        "got 10,000,000,000,000,000,000",
    ),
    "a billion epochs": (["--set", "epochs=1e9"], "epochs: must be at most", "100,000"),
    "a subnormal lr": (["--set", "lr=1e-320"], "lr: 1e-320 cannot be held in float32", "use 0"),
    "noise beyond float32": (["--set", "noise_std=1e308"], "noise_std: 1e+308 cannot", "use 0"),
    "cuda without an index": (["--set", "device=cuda:"], "device: must be", "cuda:N, got"),
    "cuda with a name": (["--set", "device=cuda:abc"], "device: must be", "cuda:N, got"),
    "a GPU a trial cannot see": (
        ["--set", "device=cuda:7"],
        "device: cuda:7 asks for GPU 7, but a trial here sees",
        "use device=cuda or auto",
    ),
    "more cores than the machine": (
        ["--cpus-per-trial", "{cores}"],
        "--cpus-per-trial {cores}: this machine has",
        "pass --cpus-per-trial",
    ),
    "an address nothing listens on": (
        ["--address", "127.0.0.1:1"],
        "--address 127.0.0.1:1: cannot reach a Ray cluster there",
        "leave --address out",
    ),
    "a YAML alias bomb": (
        ["--grid-file", "{bomb}"],
        "expands to more than 100,000 values",
        "write a list of mappings",
    ),
}


@pytest.fixture(scope="module")
def bad_inputs(random_weights_env, tmp_path_factory):
    """Every BAD_INPUT case through main(), in one interpreter; and the paths the cases name."""
    root = tmp_path_factory.mktemp("bad-input")
    paths = {
        "typo": root / "typo.yaml",
        "mapping": root / "mapping.json",
        "seeded": root / "seeded.json",
        "file": root / "a-file",
        "nowhere": root / "nowhere",
        "cifar": write_cifar10_fixture(root / "cifar"),
        "results": root / "results.parquet",
        "bomb": root / "bomb.yaml",
        "cores": (os.cpu_count() or 1) + 1,
    }
    paths["bomb"].write_text(ALIAS_BOMB)
    paths["typo"].write_text("- {laten: 8}\n")
    paths["mapping"].write_text('{"dataset": "digits"}')
    paths["seeded"].write_text('[{"seed": 2}]')
    paths["file"].write_text("")
    cases = []
    for name, (argv, *_) in BAD_INPUT.items():
        argv = [arg.format(**paths) for arg in argv]
        if not {"--grid", "--grid-file"} & set(argv):
            argv = ["--grid", "smoke", *argv]
        if "--results" not in argv:
            argv += ["--results", str(paths["results"])]
        weights = (
            {"DAE_FID_WEIGHTS": str(paths["nowhere"] / "fid.pth")} if "Inception" in name else {}
        )
        cases.append({"argv": argv, "env": weights})
    return dict(zip(BAD_INPUT, run_mains(random_weights_env, cases), strict=True)), paths


@pytest.mark.parametrize("case", BAD_INPUT)
def test_bad_input_gets_one_message_naming_problem_and_fix_before_ray(bad_inputs, case):
    outcomes, paths = bad_inputs
    outcome, (_, problem, fix) = outcomes[case], BAD_INPUT[case]
    stderr = outcome["stderr"]
    assert outcome["code"] == 2 and outcome["ray"] is False
    assert len(re.findall(r"^(launch|launch\.py|-c): error: ", stderr, re.M)) == 1, stderr
    assert problem.format(**paths) in stderr and fix.format(**paths) in stderr
    assert "Traceback" not in stderr and len(stderr) < 1500  # a 435-byte YAML once printed 116 MB
    assert not paths["results"].exists()  # nothing was opened, let alone scheduled


def test_the_launcher_script_exits_non_zero_on_a_misspelled_key(random_weights_env, tmp_path):
    """The same through `python study/launch.py` itself: one stderr line, exit status 2, within
    seconds."""
    argv = ["--grid", "smoke", "--set", "latnet=8", "--results", str(tmp_path / "r")]
    result = subprocess.run(
        [sys.executable, "study/launch.py", *argv],
        cwd=REPO, env=random_weights_env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith(
        "launch: error: --set latnet=8: unknown config key 'latnet' (did you mean"
    )
    assert len(result.stderr.splitlines()) == 1

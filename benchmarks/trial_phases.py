"""Seconds per phase of one trial (train, encode, priors, sample, score), as run_trial records them
in its row.

    python -m benchmarks.trial_phases               # CPU: the embedded digits default, 10 epochs
    python -m benchmarks.trial_phases --size paper  # CIFAR-10, 128 filters, depth 1, latent 128,
                                                    # 100 epochs, all five scores on 10,000 samples
                                                    # (target: <= 120 s)

--size paper reads CIFAR-10 from $DAE_DATA_ROOT where it is; otherwise it writes CIFAR-10-shaped
random images (50,000 + 10,000, in the official file format) to a temporary folder: the same work
per image, though the GMM's EM iterations on codes of noise may differ from real codes. Without the
Inception weights on disk the same network with random weights is used (same cost; the scores are
then not FID). The reference statistics are computed before the trial starts: the study computes
them once per dataset and every trial reads them from the cache.
"""

import os
import sys
import tempfile
from pathlib import Path

import torch

from benchmarks.common import arguments, print_table, setup
from trainables import features
from trainables.config import make_config
from trainables.data import DatasetMissing, check_available, load_for_config
from trainables.trial import EVAL_PHASES, run_trial, subset

SIZES = {"cpu": {"dataset": "digits", "epochs": 10}, "paper": {"dataset": "cifar10"}}
PHASES = ("train", *EVAL_PHASES)
TARGET_S = 120


def cifar10_or_random(folder: Path) -> tuple[dict, str]:
    """Overrides that point at the real CIFAR-10, or at a random stand-in in its file format."""
    cfg = make_config({"dataset": "cifar10"})
    try:
        check_available("cifar10", cfg.data_path)
        return {}, f"CIFAR-10 from {cfg.data_path}"
    except DatasetMissing:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
        from fixtures import write_cifar10_fixture

        root = write_cifar10_fixture(folder / "data", n_train_per_batch=10_000, n_test=10_000)
        overrides = {"data_root": str(root), "verify_checksums": False}
        return overrides, "CIFAR-10-shaped RANDOM images (no dataset here)"


def fid_weights_or_random(folder: Path) -> str:
    """Point DAE_FID_WEIGHTS at a random-weights file in the real layout when the real weights are
    missing."""
    try:
        return f"FID Inception, real weights ({features.find_fid_weights().source})"
    except features.WeightsMissing:
        pass
    path = folder / features.FID_WEIGHTS_FILE
    torch.save(features.random_inception_state_dict(), path)
    os.environ["DAE_FID_WEIGHTS"] = str(path)
    return "FID Inception with RANDOM weights (no weights file here): scores are not FID"


def warm_reference_stats(cfg, device: torch.device) -> None:
    test = load_for_config(cfg).test.to(device)
    extractor = features.get_extractor(cfg.feature_extractor, device, cfg.cache_path)
    features.reference_stats(
        cfg.dataset, test[subset(len(test), cfg.n_samples, cfg.seed)], extractor, cfg.cache_path
    )


def main(argv=None) -> None:
    parser = arguments(__doc__.splitlines()[0])
    parser.add_argument(
        "--epochs", type=int, help="fewer epochs for a quick look (the target is for 100)"
    )
    parser.add_argument("--compile", action="store_true", help="train under torch.compile")
    args = parser.parse_args(argv)
    device = setup(args)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        overrides = {**SIZES[args.size], "device": str(device), "cache_dir": str(folder / "cache")}
        overrides |= {"compile": args.compile} | ({"epochs": args.epochs} if args.epochs else {})
        notes = []
        if args.size == "paper":
            data_overrides, data_note = cifar10_or_random(folder)
            overrides |= data_overrides
            notes += [data_note, fid_weights_or_random(folder)]
        cfg = make_config(overrides)
        warm_reference_stats(cfg, device)
        row = run_trial(cfg)
    if row["status"] != "ok":
        raise SystemExit(
            f"the trial did not finish: {row['status']}: {row['error']}\n{row['traceback']}"
        )
    seconds = {phase: row[f"{phase}_s"] for phase in PHASES}
    seconds["other (data, model, provenance)"] = row["wall_s"] - sum(seconds.values())
    rows = [[phase, s, s / row["wall_s"]] for phase, s in seconds.items()]
    rows.append(["trial (wall)", row["wall_s"], 1.0])
    notes = [
        f"{cfg.dataset}, {cfg.model}, {cfg.filters} filters, depth {cfg.depth}, "
        f"latent {cfg.latent}, {cfg.epochs} epochs, {cfg.n_samples:,} samples per score; "
        f"precision {row['precision']}, compiled {row['compiled']}, train loop "
        f"{row['train_loop']}, GMM {row['gmm_backend']} ({row['gmm_n_iter']} EM iterations), "
        f"features {row['feature_extractor']}.",
        *notes,
    ]
    if args.size == "paper":
        verdict = "met" if row["wall_s"] <= TARGET_S else "NOT met"
        if cfg.epochs != 100:
            verdict = "needs 100 epochs"
        notes.append(
            f"Target: one paper trial in <= {TARGET_S} s on one H100: {verdict} on {row['device']}."
        )
    print_table("One trial, seconds per phase", ["phase", "seconds", "share"], rows, notes)


if __name__ == "__main__":
    main()

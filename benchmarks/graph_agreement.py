"""Graphed against eager training, in the scores: do they differ by more than another seed would?

    python -m benchmarks.graph_agreement               # CPU: digits, tiny (both run eagerly there)
    python -m benchmarks.graph_agreement --size paper  # GPU: CIFAR-10-shaped photograph patches,
                                                       # 32 filters, 3 seeds x {graph, eager}

On CUDA a replayed graph runs the eager step's kernels on the same batches and noise, but autotuned
cuDNN kernels and atomic adds in bf16 make no two runs bitwise equal, eager or graphed: what must
hold is that the two agree within the seed-to-seed spread. For each scored set the table gives each
mode's mean and standard deviation over the seeds, and the mean absolute difference between the
graphed and the eager trial of the same seed; they agree where that difference is within the larger
of the two spreads. The trials are short (SIZES) and score fewer samples than the paper (the
spread grows as the samples shrink, the same for both modes).
"""

import statistics
import tempfile
from pathlib import Path

from benchmarks.common import arguments, print_table, setup
from benchmarks.trial_phases import cifar10_or_patches, fid_weights_or_random, run
from trainables.scored_sets import LABELS, SCORED_SETS

SIZES = {
    "cpu": {"dataset": "digits", "filters": 4, "latent": 8, "epochs": 2, "n_samples": 200},
    "paper": {"filters": 32, "epochs": 2, "n_samples": 1_000, "gmm_max_iter": 100},
}
SEEDS = (0, 1, 2)
MODES = {"graph": True, "eager": False}  # config cuda_graph


def main(argv=None) -> None:
    args = arguments(__doc__.splitlines()[0]).parse_args(argv)
    device = setup(args)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        overrides = {**SIZES[args.size], "device": str(device), "cache_dir": str(folder / "cache")}
        notes = []
        if args.size == "paper":
            data_overrides, data_note = cifar10_or_patches(folder)
            overrides |= data_overrides
            notes += [data_note, fid_weights_or_random(folder)]
        rows = {
            (mode, seed): run({**overrides, "seed": seed, "cuda_graph": graph}, device)
            for seed in SEEDS
            for mode, graph in MODES.items()
        }
    ran_as = {mode: {rows[mode, seed]["train_step"] for seed in SEEDS} for mode in MODES}
    table = []
    for name in SCORED_SETS:
        scores = {mode: [rows[mode, seed][f"fd_{name}"] for seed in SEEDS] for mode in MODES}
        if any(value is None for values in scores.values() for value in values):
            continue  # a GMM that could not be fitted
        spreads = {mode: statistics.stdev(values) for mode, values in scores.items()}
        gap = statistics.mean(
            abs(graphed - eager) for graphed, eager in zip(*scores.values(), strict=True)
        )
        table.append(
            [LABELS[name]]
            + [f(scores[mode]) for mode in MODES for f in (statistics.mean, statistics.stdev)]
            + [gap, "yes" if gap <= max(spreads.values()) else "NO"]
        )
    losses = {mode: [rows[mode, seed]["train_loss"] for seed in SEEDS] for mode in MODES}
    first = rows["graph", SEEDS[0]]
    print_table(
        "Graphed vs eager trials: scores over seeds",
        ["set", "graph mean", "graph std", "eager mean", "eager std", "mean |graph - eager|"]
        + ["within the spread"],
        table,
        [
            f"{first['dataset']}, {first['filters']} filters, {first['epochs']} epochs, "
            f"{first['n_scored']:,} samples per set, seeds {', '.join(map(str, SEEDS))}; steps ran "
            + ", ".join(f"{mode}: {'/'.join(sorted(kinds))}" for mode, kinds in ran_as.items())
            + ".",
            "Final training loss, mean (std) over seeds: "
            + ", ".join(
                f"{mode} {statistics.mean(v):.4g} ({statistics.stdev(v):.2g})"
                for mode, v in losses.items()
            )
            + ".",
            *notes,
        ],
    )


if __name__ == "__main__":
    main()

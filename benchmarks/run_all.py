"""Every benchmark in turn, each printing its table: what the issue asks to see, in one run.

    python -m benchmarks.run_all               # CPU, small sizes (a quarter of an hour on 2 cores)
    python -m benchmarks.run_all --size paper  # one H100/H200: the paper's sizes, about 7 minutes

What each measures at paper size (seconds measured or estimated on one H200):
  throughput    training images/s, plain loop vs fast loop (eager, graphed) at 32 and 128 filters
                (about 60 s)
  train_step    ms per training step, eager vs one CUDA graph, five models (30 s)
  scoring       fp32 scoring: pytorch-fid's path vs ours, six sets of 10,000 images, and what
                channels_last, batch 500 and TF32 would change (about 65 s)
  gmm           the GMM fit on 50,000 codes of 64 dims, scikit-learn vs torch (about 30 s)
  trial_phases  the paper trial's phases for its first 40 epochs (about 100 s; the train phase
                grows linearly to 100 epochs, which benchmarks/gpu_check.sh step c runs)
  packing       1, 2 and 4 concurrent 32- and 64-filter trials on the card (about 100 s)
torch.compile (benchmarks.compile_cost), trials on CUDA streams (benchmarks.streams), the agreement
of graphed and eager trials (benchmarks.graph_agreement) and the GPU-hours of Table 1
(benchmarks.table1_cost) run on their own, and in benchmarks/gpu_check.sh.
"""

from benchmarks import gmm, packing, scoring, throughput, train_step, trial_phases
from benchmarks.common import arguments

PAPER_TRIAL_EPOCHS = 40  # keeps the whole run under 8 minutes on one H100/H200


def main(argv=None) -> None:
    args = arguments(__doc__.splitlines()[0]).parse_args(argv)
    common = ["--size", args.size, "--device", args.device]
    throughput.main(common)
    train_step.main(common)
    scoring.main(common)
    gmm.main(common)
    trial_phases.main(
        common + (["--epochs", str(PAPER_TRIAL_EPOCHS)] if args.size == "paper" else [])
    )
    packing.main(common)


if __name__ == "__main__":
    main()

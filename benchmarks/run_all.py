"""Every benchmark in turn, each printing its table: what the issue asks to see, in one run.

    python -m benchmarks.run_all               # CPU, small sizes (a few minutes on 2 cores)
    python -m benchmarks.run_all --size paper  # one GPU: the paper's sizes (~15 minutes, H100)

At paper size the throughput table includes torch.compile and the trial is the 100-epoch
CIFAR-10 one. benchmarks.table1_cost (about 4 minutes on a GPU) runs on its own.
"""

from benchmarks import gmm, packing, scoring, throughput, train_step, trial_phases
from benchmarks.common import arguments


def main(argv=None) -> None:
    args = arguments(__doc__.splitlines()[0]).parse_args(argv)
    common = ["--size", args.size, "--device", args.device]
    throughput.main(common + (["--compile"] if args.size == "paper" else []))
    train_step.main(common)
    scoring.main(common)
    gmm.main(common)
    trial_phases.main(common)
    packing.main(common)


if __name__ == "__main__":
    main()

"""Training images/s: our loop against the plain PyTorch loop, same card, same run, same model and
data.

    python -m benchmarks.throughput                         # CPU: 8 filters, 512 images
    python -m benchmarks.throughput --size paper            # GPU: 32 and 128 filters, depth 1,
                                                            # latent 128, 50,000 images
    python -m benchmarks.throughput --size paper --compile  # + torch.compile inside the graph, at
                                                            # 128 filters

Every row calls trainables.train.train, the trainer a trial uses; only runtime options differ:
  plain   train_loop=plain: torchvision-style Dataset -> DataLoader -> fp32 -> .to(device) per
          batch, each step eager
  fast    data resident on the device as uint8, on-device permutation (+ channels_last, fused Adam,
          cuDNN autotuning and bf16 autocast on CUDA), each step eager, then (CUDA) as one CUDA
          graph: the default a trial runs; optionally that under torch.compile
images/s is the median over the epochs after the first (and over repeats, run interleaved, where
the machine is shared); the setup and the first epoch's extra time (graph capture, compilation,
autotuning, worker start-up) are shown apart and, for torch.compile, set against what it saves
over a 100-epoch trial.
The data is a CIFAR-10-shaped random uint8 tensor (no download): the work per image is that of the
real set.
"""

import statistics

import torch
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.common import arguments, medians, print_table, random_images, setup
from trainables.config import make_config
from trainables.models import build_model, reconstruction_loss
from trainables.train import train

SIZES = {  # compiled: the filter counts --compile adds a row for (each compiles for a minute)
    "cpu": {
        "filters": (8,),
        "compiled": (8,),
        "latent": 16,
        "images": 512,
        "epochs": 3,
        "repeats": 3,
    },
    "paper": {
        "filters": (32, 128),
        "compiled": (128,),
        "latent": 128,
        "images": 50_000,
        "epochs": 3,
        "repeats": 1,
    },
}
PAPER_EPOCHS = 100
PAPER_IMAGES = 50_000
TARGETS = {32: 3.0, 128: 1.5}  # issue 11: the fast loop against the plain one, on a GPU


def flops_per_image(cfg, device: torch.device) -> float:
    """Forward + backward FLOPs of one training image, counted by torch (~2.4 GFLOP forward at
    128 filters)."""
    model = build_model(cfg).to(device)
    x = torch.rand(2, 3, 32, 32, device=device)
    with FlopCounterMode(display=False) as counter:
        logits, _ = model(x)
        reconstruction_loss(logits, x, "sum").mean().backward()
    return counter.get_total_flops() / len(x)


def measure(cfg, images: torch.Tensor, device: torch.device) -> tuple[dict, str]:
    """-> (the rates of one training run, how its steps ran: graph or eager)."""
    torch.manual_seed(cfg.seed)
    model = build_model(cfg).to(device)
    result = train(model, images, cfg)
    steady = statistics.median(result.epoch_seconds[1:])
    rates = {
        "images_per_s": len(images) / steady,
        "step_s": steady / -(-len(images) // cfg.batch_size),
        "first_epoch_extra_s": result.setup_seconds + result.epoch_seconds[0] - steady,
    }
    return rates, result.train_step


def variants(device: torch.device, compiled: bool) -> list[dict]:
    """The runtime options of each row: the plain loop, the fast loop eager, and on CUDA the fast
    loop as a trial runs it (one CUDA graph a step); torch.compile on top of the last if asked."""
    fast = "bf16" if device.type == "cuda" else "fp32"  # bf16 autocast pays on tensor cores only
    rows = [
        {"train_loop": "plain", "precision": "fp32", "cuda_graph": False, "compile": False},
        {"train_loop": "fast", "precision": fast, "cuda_graph": False, "compile": False},
    ]
    if device.type == "cuda":
        rows.append({**rows[-1], "cuda_graph": True})
    if compiled:
        rows.append({**rows[-1], "compile": True})
    return rows


def main(argv=None) -> None:
    parser = arguments(__doc__.splitlines()[0])
    parser.add_argument(
        "--compile",
        action="store_true",
        help="add a torch.compile row (minutes of compiling on CPU)",
    )
    args = parser.parse_args(argv)
    device = setup(args)
    size = SIZES[args.size]
    host_images = random_images(size["images"])
    device_images = host_images.to(device)
    for filters in size["filters"]:
        compiled = args.compile and filters in size["compiled"]
        options = variants(device, compiled)
        base = make_config(
            {"filters": filters, "latent": size["latent"], "epochs": size["epochs"]}
            | {"device": str(device)}
        )
        runs = [[] for _ in options]
        ran_as = {}
        for _ in range(size["repeats"]):  # interleaved, medians below: shared machines are noisy
            for number, (option, option_runs) in enumerate(zip(options, runs, strict=True)):
                images = host_images if option["train_loop"] == "plain" else device_images
                rates, ran_as[number] = measure(base.replace(**option), images, device)
                option_runs.append(rates)
        results = [
            medians(option_runs) | {"ran_as": ran_as[i]} for i, option_runs in enumerate(runs)
        ]
        _report(base, size, options, results, device, compiled)


def _report(base, size: dict, options: list[dict], results: list[dict], device, compiled) -> None:
    flops = flops_per_image(base, device)
    plain_rate = results[0]["images_per_s"]
    rows = [
        [option["train_loop"], option["precision"], r["ran_as"], option["compile"]]
        + [r["images_per_s"], r["images_per_s"] * flops / 1e12]
        + [r["first_epoch_extra_s"], r["images_per_s"] / plain_rate]
        for option, r in zip(options, results, strict=True)
    ]
    trial_steps = PAPER_EPOCHS * -(-PAPER_IMAGES // base.batch_size)
    as_trials_run = results[len(options) - 1 - compiled]  # the default options' row
    notes = [
        f"{base.filters} filters, depth 1, latent {base.latent}, batch {base.batch_size}, "
        f"{size['images']:,} CIFAR-10-shaped random uint8 images, {size['epochs']} epochs per row, "
        f"{size['repeats']} repeat(s); {flops / 1e9:.2f} GFLOP per training image "
        "(forward + backward). images/s: the median epoch after the first.",
        f"At the default options' rate, {PAPER_EPOCHS} epochs of {PAPER_IMAGES:,} images of this "
        f"model take ~{PAPER_EPOCHS * PAPER_IMAGES / as_trials_run['images_per_s']:,.0f} s.",
    ]
    target = TARGETS.get(base.filters)
    if device.type == "cuda" and target:
        ratio = as_trials_run["images_per_s"] / plain_rate
        verdict = "met" if ratio >= target else "NOT met"
        notes.append(
            f"Target: the fast loop >= {target:g}x the plain loop: {ratio:.2f}x, {verdict}."
        )
    if compiled:  # the first compiled run is cold: later trials in a worker compile again too
        plain_graph = results[-2]
        with_compile = results[-1]
        saved = plain_graph["step_s"] - with_compile["step_s"]
        cost = with_compile["first_epoch_extra_s"] - plain_graph["first_epoch_extra_s"]
        verdict = (
            f"repaid after {cost / saved:,.0f} steps"
            if saved > 0
            else "never repaid (no faster per step)"
        )
        notes.append(
            f"torch.compile: {cost:.1f} s of compiling, {saved * 1e3:.3f} ms saved per step -> "
            f"{verdict}; a paper trial has {trial_steps:,} steps."
        )
    print_table(
        f"Training throughput at {base.filters} filters: the fast loop vs the plain PyTorch loop",
        ["loop", "precision", "step", "compiled", "images/s", "TFLOP/s", "setup + first-epoch s"]
        + ["x plain"],
        rows,
        notes,
    )


if __name__ == "__main__":
    main()

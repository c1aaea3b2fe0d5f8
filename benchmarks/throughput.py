"""Training images/s: our loop against the plain PyTorch loop, same card, same run, same model and
data.

    python -m benchmarks.throughput                         # CPU: 8 filters, 512 images
    python -m benchmarks.throughput --size paper --compile  # GPU: 128 filters, depth 1, latent 128,
                                                            # 50,000 images

Every row calls trainables.train.train, the trainer a trial uses; only runtime options differ:
  plain   train_loop=plain: torchvision-style Dataset -> DataLoader -> fp32 -> .to(device) per batch
  fast    data resident on the device as uint8, on-device permutation (+ channels_last, fused Adam,
          cuDNN autotuning on CUDA), at each precision; optionally under torch.compile
images/s is the median over the epochs after the first (and over repeats, run interleaved, where
the machine is shared); the first epoch's extra time (compilation, autotuning, worker start-up) is
shown apart and, for torch.compile, set against what it saves over a 100-epoch trial.
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

SIZES = {
    "cpu": {"filters": 8, "latent": 16, "images": 512, "epochs": 3, "repeats": 3},
    "paper": {"filters": 128, "latent": 128, "images": 50_000, "epochs": 4, "repeats": 1},
}
PAPER_EPOCHS = 100
PAPER_IMAGES = 50_000


def flops_per_image(cfg, device: torch.device) -> float:
    """Forward + backward FLOPs of one training image, counted by torch (~2.4 GFLOP forward at
    128 filters)."""
    model = build_model(cfg).to(device)
    x = torch.rand(2, 3, 32, 32, device=device)
    with FlopCounterMode(display=False) as counter:
        logits, _ = model(x)
        reconstruction_loss(logits, x).mean().backward()
    return counter.get_total_flops() / len(x)


def measure(cfg, images: torch.Tensor, device: torch.device) -> dict:
    torch.manual_seed(cfg.seed)
    model = build_model(cfg).to(device)
    result = train(model, images, cfg)
    steady = statistics.median(result.epoch_seconds[1:])
    return {
        "images_per_s": len(images) / steady,
        "step_s": steady / -(-len(images) // cfg.batch_size),
        "first_epoch_extra_s": result.epoch_seconds[0] - steady,
    }


def main(argv=None) -> None:
    parser = arguments(__doc__.splitlines()[0])
    parser.add_argument(
        "--compile",
        action="store_true",
        help="add torch.compile rows (minutes of compiling on CPU)",
    )
    args = parser.parse_args(argv)
    device = setup(args)
    size = SIZES[args.size]
    shape = {key: size[key] for key in ("filters", "latent", "epochs")}
    base = make_config({**shape, "device": str(device)})
    host_images = random_images(size["images"])
    device_images = host_images.to(device)
    variants = [("plain", "fp32", False), ("fast", "fp32", False)]
    if device.type == "cuda":  # bf16 autocast pays on tensor cores; on a CPU it is slower
        variants.append(("fast", "bf16", False))
    if args.compile:
        variants.append(("fast", variants[-1][1], True))
    runs = [[] for _ in variants]
    for _ in range(size["repeats"]):
        for (loop, precision, compiled), variant_runs in zip(variants, runs, strict=True):
            cfg = base.replace(train_loop=loop, precision=precision, compile=compiled)
            images = host_images if loop == "plain" else device_images
            variant_runs.append(measure(cfg, images, device))
    results = [medians(variant_runs) for variant_runs in runs]

    flops = flops_per_image(base, device)
    plain_rate = results[0]["images_per_s"]
    rows = [
        [*variant, r["images_per_s"], r["images_per_s"] * flops / 1e12]
        + [r["first_epoch_extra_s"], r["images_per_s"] / plain_rate]
        for variant, r in zip(variants, results, strict=True)
    ]
    trial_steps = PAPER_EPOCHS * -(-PAPER_IMAGES // base.batch_size)
    best = max(results, key=lambda r: r["images_per_s"])
    notes = [
        f"{size['filters']} filters, depth 1, latent {size['latent']}, batch {base.batch_size}, "
        f"{size['images']:,} CIFAR-10-shaped random uint8 images, {size['epochs']} epochs per row, "
        f"{size['repeats']} repeat(s); {flops / 1e9:.2f} GFLOP per training image "
        "(forward + backward).",
        f"At the best rate, {PAPER_EPOCHS} epochs of {PAPER_IMAGES:,} images of this model take "
        f"~{PAPER_EPOCHS * PAPER_IMAGES / best['images_per_s']:,.0f} s.",
    ]
    if args.compile:  # the first compiled run is cold; later ones, as later trials, hit the cache
        eager = results[-2]
        compiled = results[-1]
        saved = eager["step_s"] - compiled["step_s"]
        for label, run in (("cold", runs[-1][0]), ("warm cache", compiled)):
            cost = run["first_epoch_extra_s"] - eager["first_epoch_extra_s"]
            verdict = (
                f"repaid after {cost / saved:,.0f} steps"
                if saved > 0
                else "never repaid (no faster per step)"
            )
            notes.append(
                f"torch.compile, {label}: {cost:.1f} s of compiling, {saved * 1e3:.2f} ms saved "
                f"per step -> {verdict}; a paper trial has {trial_steps:,} steps."
            )
    print_table(
        "Training throughput: our loop vs the plain PyTorch loop",
        ["loop", "precision", "compiled", "images/s", "TFLOP/s", "first-epoch extra s", "x plain"],
        rows,
        notes,
    )


if __name__ == "__main__":
    main()

"""GPU-hours of Table 1 on this card, from the timed pieces of a trial: the number we steer by.

    python -m benchmarks.table1_cost               # CPU: tiny stand-ins, seconds (checks the code)
    python -m benchmarks.table1_cost --size paper  # one H100/H200: about two minutes

A trial's time is the sum of:
  train   epochs x the steps of an epoch (a last partial batch is a step) x the step time of its
          model, plus the step's setup; the step as the trainer runs it (one CUDA graph where the
          capture works, eager where not), 100 steps timed after a warm-up pass; with its
          arithmetic (FLOPs counted by benchmarks/flops.py) against the card's dense peak
  encode  one eval forward (encoder + decoder, batches of 500) per training and test image and
          per decoded sample (6 sets): an upper bound on the trial's encode and sample phases
  score   6 sets of n_samples images through the FID Inception network in fp32 (features.score),
          at the rate of one timed set of 10,000 (random weights without the real ones: same cost)
  prior   the torch GMM: scikit-learn's k-means start + the trials' cap on EM iterations (2000, the
          reference code's; an upper bound, as a fit that converges stops sooner), each iteration
          timed on synthetic codes
A model is what changes a step's cost (study/resources.py's model_key): dataset, VAE or DAE,
filters, depth, latent norm, a frozen latent layer, noise or none (its amount costs nothing), the
batch, the decoder's width, the precision. The latent size changes only the two linear
layers and their Adam state, so the step time is affine in it: each model is timed once, at the
mean latent of its trials, which gives each curve's total to first order. The GMM's cost grows
faster than linearly in the latent size: it is timed at 16, 64, 256 and 1024 dimensions, on 50,000
codes (CIFAR-10's training set), and interpolated linearly between them (an upper bound, the cost
being convex); CelebA's 162,770 codes scale it linearly, as k-means and EM are linear in the codes.
Not counted: loading the data, the reference statistics (once per dataset, then cached), the MVG
fit, Ray's scheduling. The hours are per replicate: --seeds N multiplies them.
"""

import math
import statistics
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from sklearn.mixture import GaussianMixture

from benchmarks.common import (
    arguments,
    format_cell,
    inception,
    print_table,
    random_images,
    setup,
    sync,
)
from benchmarks.flops import dense_peak, peak_card, step_flops
from benchmarks.gmm import COMPONENTS, SEED, time_kmeans, warped_codes
from benchmarks.train_step import RESIDENT_BATCHES, StepTiming, time_steps, trial_train_s
from study.grids import expand
from study.resources import model_key
from trainables import curves, features, frechet, priors
from trainables.config import TrialConfig, make_config
from trainables.data import DATASETS
from trainables.gmm_torch import fit_gmm_torch
from trainables.models import build_model
from trainables.scored_sets import SCORED_SETS
from trainables.trial import EVAL_BATCH

SIZES = {  # cpu: tiny stand-ins of every model, so that every code path runs in seconds
    "cpu": {"stand_in": True, "batches": 2, "steps": 2, "eval_images": 4, "score_images": 4},
    "paper": {
        "stand_in": False,
        "batches": RESIDENT_BATCHES,
        "steps": 100,
        "eval_images": 1_000,
        "score_images": 10_000,
    },
}
GMM_CODES = {"cpu": 2_000, "paper": 50_000}
GMM_LATENTS = {"cpu": (4, 16), "paper": (16, 64, 256, 1024)}  # beyond the ends: the nearest end
TEST_IMAGES = {"cifar10": 10_000, "celeba": 19_962}
GRIDS = ("table1", "table1-cifar10", "table1-celeba")
EM_ITERATIONS_TIMED = 10
EM_ITERATION_CAP = make_config().gmm_max_iter
PHASES = ("train", "encode", "score", "prior")
TARGET_GPU_HOURS = 30  # issue 11: the whole of Table 1, one replicate, on one H100/H200
TARGET_PEAK_SHARE = 0.4  # issue 24: the 128-filter step's share of the card's dense peak
PEAK_TARGET_DATASETS = ("cifar10", "celeba")


def model_label(cfg: TrialConfig) -> str:
    """The curve's label, less the noise's amount, which all noisy curves share."""
    return curves.label(cfg.replace(noise_std=0.0).science()) + (
        " noise" if cfg.noise_std > 0 else ""
    )


def timed_config(cfg: TrialConfig, latent: int, stand_in: bool) -> TrialConfig:
    """The config whose step is timed for cfg's model: at `latent`, or a tiny CPU stand-in."""
    if stand_in:
        return cfg.replace(latent=min(latent, 16), filters=max(2, cfg.filters // 16), batch_size=4)
    return cfg.replace(latent=latent)


@torch.no_grad()
def eval_s_per_image(cfg: TrialConfig, device: torch.device, n: int) -> float:
    """One eval forward (encode, then decode) per image, as trial.encode runs it, warmed up."""
    torch.manual_seed(cfg.seed)
    model = build_model(cfg).to(device).eval()
    if device.type == "cuda":
        model.to(memory_format=torch.channels_last)  # as training leaves it
    images = random_images(n, shape=DATASETS[cfg.dataset].image_shape).to(device)

    def forward_all() -> None:
        for batch in images.split(EVAL_BATCH):
            model.decoder(model.encode(batch.float().div_(255)))

    forward_all()  # cuDNN autotuning for the eval shapes
    sync(device)
    clock = time.perf_counter()
    forward_all()
    sync(device)
    return (time.perf_counter() - clock) / n


def score_s_per_image(device: torch.device, n: int) -> tuple[float, str]:
    """features.score on n generated images already on the device, the batch shape warmed first."""
    extractor, label = inception(device)
    reference = random_images(min(n, 500), seed=1).to(device)
    ref_stats = frechet.gaussian_stats(extractor.features(reference))
    images = random_images(n, seed=2).to(device)
    sync(device)
    clock = time.perf_counter()
    features.score(images, extractor, ref_stats)
    sync(device)
    return (time.perf_counter() - clock) / n, label


def gmm_s(n_codes: int, latent: int, device: torch.device) -> float:
    """The torch GMM fit of n_codes codes at EM_ITERATION_CAP iterations: the k-means start, timed
    alone, plus the iterations, timed over EM_ITERATIONS_TIMED (nan if the mixture will not fit)."""
    codes = warped_codes(n_codes, latent)
    kmeans_s = time_kmeans(codes)
    spec = GaussianMixture(
        COMPONENTS,
        covariance_type="full",
        reg_covar=priors.GMM_REG_COVARS[0],
        random_state=SEED,
        max_iter=EM_ITERATIONS_TIMED,
        tol=0.0,  # never converged: exactly EM_ITERATIONS_TIMED iterations
    )
    sync(device)
    clock = time.perf_counter()
    try:
        fit_gmm_torch(spec, codes, device)  # its own k-means start, then the iterations
    except ValueError as exc:
        print(f"# GMM at latent {latent}: {exc}")
        return math.nan
    sync(device)
    iteration_s = max(0.0, time.perf_counter() - clock - kmeans_s) / EM_ITERATIONS_TIMED
    return kmeans_s + EM_ITERATION_CAP * iteration_s


@dataclass
class Measured:
    """Everything timed on this card, and how a trial's seconds follow from it."""

    steps: dict[tuple, StepTiming]  # by model_key
    timed_latent: dict[tuple, int]
    eval_s: dict[tuple, float]  # an eval forward, per image
    score_s: float  # scoring, per image
    score_label: str
    gmm_s: dict[int, float]  # a fit of gmm_codes codes, at a few latent sizes
    gmm_codes: int
    flops: dict[tuple, float] = field(default_factory=dict)  # of one training step, by model_key

    def trial_seconds(self, cfg: TrialConfig) -> dict[str, float]:
        key = model_key(cfg)
        n_train = DATASETS[cfg.dataset].train_images
        decoded = len(SCORED_SETS) * cfg.n_samples
        gmm = float(np.interp(cfg.latent, list(self.gmm_s), list(self.gmm_s.values())))
        return {
            "train": trial_train_s(cfg, self.steps[key]),
            "encode": (n_train + TEST_IMAGES[cfg.dataset] + decoded) * self.eval_s[key],
            "score": decoded * self.score_s,
            "prior": gmm * n_train / self.gmm_codes,
        }


def measure(models: dict[tuple, list[TrialConfig]], device: torch.device, size: str) -> Measured:
    """Time every model's step and eval forward, one scored set, and the GMM at a few sizes."""
    start = time.perf_counter()
    steps, timed_latent, eval_s, flops = {}, {}, {}, {}
    for number, (key, trials) in enumerate(models.items(), start=1):
        timed_latent[key] = round(statistics.mean(cfg.latent for cfg in trials))
        timed = timed_config(trials[0], timed_latent[key], SIZES[size]["stand_in"])
        steps[key] = time_steps(
            timed, device, SIZES[size]["steps"], device.type == "cuda", SIZES[size]["batches"]
        )
        eval_s[key] = eval_s_per_image(timed, device, SIZES[size]["eval_images"])
        flops[key] = step_flops(timed, device)
        print(
            f"# {number}/{len(models)} {model_label(trials[0])}: {steps[key].step_s * 1e3:.2f} "
            f"ms/step ({steps[key].kind}); {time.perf_counter() - start:.0f} s so far",
            flush=True,
        )
    score_s, score_label = score_s_per_image(device, SIZES[size]["score_images"])
    print(f"# scoring: {format_cell(1 / score_s)} images/s; {time.perf_counter() - start:.0f} s")
    gmm = {latent: gmm_s(GMM_CODES[size], latent, device) for latent in GMM_LATENTS[size]}
    print(f"# GMM at {len(gmm)} latent sizes; {time.perf_counter() - start:.0f} s so far")
    return Measured(steps, timed_latent, eval_s, score_s, score_label, gmm, GMM_CODES[size], flops)


def peak_share(
    measured: Measured, key: tuple, precision: str, device: torch.device
) -> tuple[float, float | None]:
    """A model's step: (achieved TFLOP/s, its share of the card's dense peak, None where the
    card or the precision is not in the table)."""
    tflops = measured.flops[key] / measured.steps[key].step_s / 1e12
    peak = dense_peak(device, precision)
    return tflops, (tflops / peak if peak else None)


def peak_targets(
    measured: Measured, models: dict[tuple, list[TrialConfig]], device: torch.device
) -> list[str]:
    """The target line for the 128-filter DAE step of each dataset, on a card in the table."""
    lines = []
    for dataset in PEAK_TARGET_DATASETS:
        cfg = make_config({"dataset": dataset, "filters": 128})
        if model_key(cfg) not in models:
            continue
        tflops, share = peak_share(measured, model_key(cfg), cfg.precision, device)
        if share is not None:
            verdict = "met" if share >= TARGET_PEAK_SHARE else "NOT met"
            lines.append(
                f"Target: the {dataset} 128-filter step at >= {TARGET_PEAK_SHARE:.0%} of the "
                f"dense peak ({cfg.precision}): {tflops:.0f} TFLOP/s, {share:.0%}, {verdict}."
            )
    return lines


def main(argv=None) -> None:
    args = arguments(__doc__.splitlines()[0]).parse_args(argv)
    device = setup(args)
    start = time.perf_counter()
    models: dict[tuple, list[TrialConfig]] = {}
    for cfg in expand("table1"):
        models.setdefault(model_key(cfg), []).append(cfg)
    measured = measure(models, device, args.size)

    model_rows = []
    for key, trials in models.items():
        seconds = [measured.trial_seconds(cfg) for cfg in trials]
        means = [statistics.mean(s[phase] for s in seconds) for phase in PHASES]
        step = measured.steps[key]
        tflops, share = peak_share(measured, key, trials[0].precision, device)
        model_rows.append(
            [model_label(trials[0]), len(trials), measured.timed_latent[key], step.kind]
            + [step.step_s * 1e3, tflops, "n/a" if share is None else 100 * share]
            + [*means, sum(means), len(trials) * sum(means) / 3600]
        )
    grid_rows = []
    for name in GRIDS:
        seconds = [measured.trial_seconds(cfg) for cfg in expand(name)]
        hours = [sum(s[phase] for s in seconds) / 3600 for phase in PHASES]
        grid_rows.append([name, len(seconds), *hours, sum(hours), 3600 * sum(hours) / len(seconds)])

    print_table(
        "Per model: seconds per trial (mean over its trials), GPU-hours of all its trials",
        ["model", "trials", "timed latent", "ran as", "ms/step", "TFLOP/s", "% peak", *PHASES]
        + ["trial s", "GPU-h"],
        model_rows,
        [
            f"{len(models)} models, {SIZES[args.size]['steps']} steps timed each. TFLOP/s: the "
            "step's FLOPs, counted (benchmarks/flops.py), over its time; % peak: of the card's "
            f"dense peak for the step's precision ({peak_card(device) or 'a card not'} in "
            "benchmarks/flops.py's table).",
            *peak_targets(measured, models, device),
        ],
    )
    notes = [
        "Per replicate (one seed): the study's --seeds N multiplies the hours.",
        f"Scoring: {format_cell(1 / measured.score_s)} images/s in fp32 ({measured.score_label})."
        " GMM: "
        f"k-means + {EM_ITERATION_CAP} EM iterations, timed on {measured.gmm_codes:,} codes at "
        f"latent sizes {', '.join(map(str, measured.gmm_s))} ("
        + ", ".join(f"{seconds:.2f} s" for seconds in measured.gmm_s.values())
        + "), interpolated and scaled to the training set.",
        f"This benchmark ran {time.perf_counter() - start:.0f} s on {device}.",
    ]
    if SIZES[args.size]["stand_in"]:
        notes.append("cpu size: tiny stand-ins of the models; these hours estimate nothing.")
    elif device.type == "cuda":
        met = "met" if grid_rows[0][-2] <= TARGET_GPU_HOURS else "NOT met"
        notes.append(f"Target: table1 in <= {TARGET_GPU_HOURS} GPU-hours on one H100/H200: {met}.")
    print_table(
        "GPU-hours per grid on this card",
        ["grid", "trials", *(f"{phase} h" for phase in PHASES), "GPU-h", "mean trial s"],
        grid_rows,
        notes,
    )


if __name__ == "__main__":
    main()

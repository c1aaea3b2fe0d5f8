"""One optimisation step, run eagerly or replayed as one captured CUDA graph, behind the same calls.

Eager, a step of a small model is launch-bound: ~130 kernels that the host takes milliseconds to
launch whatever their size (docs/performance.md). Captured once, the whole step (gather the batch
from the resident uint8 images, forward under bf16 autocast or fp32, the loss in fp32, backward,
Adam) is one `cudaGraphLaunch`.

    step = training_step(model, optimizer, loss_of, images, batch_size, graph=cuda)
    for epoch ...:
        step.set_lr(lr)                      # a device tensor the graph reads: no recapture
        for indices in permutation.split(batch_size):
            step.run(indices)                # graph: copy the indices in, replay; no host work
        loss = step.epoch_loss()             # the one host sync of the epoch
    step.close()

What a replay must do exactly as the eager step does, and how it does:
- Inputs: the batch is gathered inside the graph from a static int64 index buffer that `run` copies
  each batch's indices into, so the images never leave the device and a replay needs no host work.
- Learning rate: Adam is fused and capturable with its learning rate a one-element device tensor
  (`adam`); `set_lr` fills it in place, so each epoch's rate reaches the captured kernel.
- Batch norm: the captured forward runs in training mode and updates the running statistics (and
  num_batches_tracked) in place, as eager does.
- Noise (the VAE's reparameterisation, the decoder-input noise): `torch.randn_like` on the default
  CUDA generator, which every capture registers; each replay advances the generator's offset by the
  graph's whole increment, so each replay draws fresh noise, and the same noise an eager step would.
- Autocast runs with its weight cache off (PyTorch's rule for autocast under a graph): a cached cast
  made during capture would be stale at replay. Eager numerics are the same either way.
- The epoch's loss is summed in a device tensor inside the graph; `epoch_loss` reads it once.
- Warm-up: PyTorch requires a few eager steps on a side stream before capture (cuDNN autotuning,
  Adam's lazily created state). They would be extra training steps, so `restored` snapshots the
  parameters, buffers, Adam's state and the CUDA generator first and copies them back in place
  afterwards (the graph keeps their addresses): the graphed trial trains exactly the eager trial's
  steps. The last warm-up step runs with host syncs made errors, so the commonest reason a capture
  fails (a `.item()` or similar in the step) is found before capture starts.
- The last partial batch gets a graph of its own (a second capture, its own memory pool) rather than
  being dropped: the paper's Keras loop and the eager loop train on it, and with it the graphed and
  eager trials see the same batches. A last batch of one image is skipped by both, since batch norm
  cannot train on it.
- Any exception while warming up or capturing falls back to the eager step (`training_step`), with
  the reason in `fallback_error`. A capture that fails part-way leaves PyTorch's allocator recording
  into its pool and the CUDA generator in capture mode; `_end_failed_capture` and a fresh generator
  state undo both, so the eager fallback (and later trials in the same process) run normally.
"""

import contextlib
import warnings
from collections.abc import Callable, Iterator

import torch
from torch import nn

from trainables.models import reconstruction_loss

KERAS_EPSILON = 1e-7  # Adam's epsilon in Keras, which the paper trained with
# eager steps per batch length before its capture, as torch.cuda.make_graphed_callables takes
WARMUP_STEPS = 3


def adam(params: list[nn.Parameter], lr: float, fused: bool) -> torch.optim.Adam:
    """Adam as in the paper's Keras. fused (CUDA): one kernel that a graph can capture, with the
    learning rate a device tensor that `set_lr` changes in place."""
    if not fused:
        return torch.optim.Adam(params, lr=lr, eps=KERAS_EPSILON)
    device_lr = torch.tensor(lr, dtype=torch.float32, device=params[0].device)
    return torch.optim.Adam(params, lr=device_lr, eps=KERAS_EPSILON, fused=True, capturable=True)


def batch_loss(
    model: nn.Module, beta: float, bf16: bool, bce_reduction: str
) -> Callable[[torch.Tensor], torch.Tensor]:
    """x (B,C,H,W) in [0,1] -> BCE reduced per image as bce_reduction says (+ beta * KL), averaged
    over the batch; the forward under bf16 autocast if asked, the loss in fp32 from the logits."""
    device_type = next(model.parameters()).device.type

    def loss_of(x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type, torch.bfloat16, enabled=bf16, cache_enabled=False):
            logits, kl = model(x)
        return (reconstruction_loss(logits, x, bce_reduction) + beta * kl.float()).mean()

    return loss_of


def gather_batch(images: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """Resident uint8 images (N,C,H,W) -> the indexed batch as float in [0,1], same layout."""
    return images[indices].float().div_(255)


def batch_lengths(n_images: int, batch_size: int) -> list[int]:
    """The length of every batch an epoch trains on: the last partial one too, unless of 1 image."""
    lengths = [batch_size] * (n_images // batch_size) + [n_images % batch_size]
    return [length for length in lengths if length >= 2]


class EagerStep:
    """The optimisation step as plain PyTorch calls: on CPU, and where a graph cannot be captured.

    images: the resident uint8 training images `run` gathers each batch's indices from; None when
    the caller hands `run` the float batch itself (the DataLoader baseline).
    """

    kind = "eager"

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        loss_of: Callable[[torch.Tensor], torch.Tensor],
        images: torch.Tensor | None = None,
        fallback_error: str | None = None,
    ):
        self.model = model
        self.optimizer = optimizer
        self.loss_of = loss_of
        self.images = images
        self.fallback_error = fallback_error  # why a graph was asked for and not used
        self.device = next(model.parameters()).device
        self.total = torch.zeros((), device=self.device)  # the epoch's summed loss, on the device
        self.seen = 0  # images in that sum
        model.train()

    def set_lr(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            if isinstance(group["lr"], torch.Tensor):
                group["lr"].fill_(lr)  # in place: a captured Adam step reads this address
            else:
                group["lr"] = lr

    def run(self, batch: torch.Tensor) -> None:
        """One step: `batch` holds indices into `images`, or is the float batch (images None)."""
        if len(batch) < 2:  # batch norm cannot train on a single image
            return
        self._train_on(batch if self.images is None else gather_batch(self.images, batch))
        self.seen += len(batch)

    def _train_on(self, x: torch.Tensor) -> None:
        loss = self.loss_of(x)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.total += loss.detach() * len(x)

    def epoch_loss(self) -> float:
        """Mean loss per image since the last call (one host sync), and a new sum begins."""
        mean = (self.total / self.seen).item()
        self.total.zero_()
        self.seen = 0
        return mean

    def close(self) -> None:
        """Free the gradients (and a graph's memory) for what runs after training."""
        self.optimizer.zero_grad(set_to_none=True)


class GraphedStep(EagerStep):
    """The step captured once per batch length (full, and the last partial one), then replayed.

    Needs a model on CUDA, the optimizer from `adam(..., fused=True)` and the resident images;
    raises on anything it cannot capture, having put the model and optimizer back as they were.
    """

    kind = "graph"

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        loss_of: Callable[[torch.Tensor], torch.Tensor],
        images: torch.Tensor,
        batch_size: int,
    ):
        super().__init__(model, optimizer, loss_of, images)
        _check_capturable(self.device, optimizer, images)
        self.graphs: dict[int, torch.cuda.CUDAGraph] = {}  # batch length -> its captured step
        self._index_buffers: dict[int, torch.Tensor] = {}  # batch length -> the indices it reads
        side = torch.cuda.Stream(self.device)
        try:
            with torch.cuda.device(self.device), restored(model, optimizer):
                for length in sorted(set(batch_lengths(len(images), batch_size))):
                    self._capture(length, side)
        except BaseException:
            self.close()
            raise
        self.total.zero_()

    def _capture(self, length: int, side: torch.cuda.Stream) -> None:
        indices = torch.arange(length, device=self.device)  # run() copies each batch's indices here
        caller = torch.cuda.current_stream(self.device)
        side.wait_stream(caller)
        with torch.cuda.stream(side), warnings.catch_warnings():
            # Adam warns, once, that a capturable optimizer is stepping uncaptured: here it must
            warnings.filterwarnings("ignore", message=".*capturable=True")
            for warmup in range(WARMUP_STEPS):
                with _host_syncs_raise(warmup == WARMUP_STEPS - 1):
                    self._train_on(gather_batch(self.images, indices))
        caller.wait_stream(side)
        # backward then allocates .grad in the graph's pool, where every replay writes it
        self.optimizer.zero_grad(set_to_none=True)
        graph = torch.cuda.CUDAGraph()
        pool = torch.cuda.graph_pool_handle()  # the graph's own, named so a failure can end it
        try:
            with torch.cuda.graph(graph, pool=pool, stream=side):
                self._train_on(gather_batch(self.images, indices))
        except BaseException:
            _end_failed_capture(pool, self.device)
            raise
        finally:  # the graph's __exit__ leaves the side stream current when it raises
            torch.cuda.set_stream(caller)
        self.graphs[length] = graph
        self._index_buffers[length] = indices

    def run(self, indices: torch.Tensor) -> None:
        """One step: the batch's indices copied into the graph's buffer, the graph replayed."""
        length = len(indices)
        if length < 2:  # as the eager step: batch norm cannot train on a single image
            return
        if length not in self.graphs:
            raise ValueError(
                f"no graph for a batch of {length} images; captured: {sorted(self.graphs)}"
            )
        self._index_buffers[length].copy_(indices)
        self.graphs[length].replay()
        self.seen += length

    def close(self) -> None:
        self.graphs.clear()
        self._index_buffers.clear()
        super().close()


def training_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_of: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor | None,
    batch_size: int,
    graph: bool,
) -> EagerStep:
    """The graphed step if asked for and its capture works, else the eager one. `.kind` says
    which ran ("graph" or "eager"), `.fallback_error` why a graph asked for is not used."""
    if not graph:
        return EagerStep(model, optimizer, loss_of, images)
    try:
        return GraphedStep(model, optimizer, loss_of, images, batch_size)
    except Exception as exc:
        reason = _describe(exc)
    warnings.warn(
        f"training eagerly: the CUDA graph could not be captured ({reason})", stacklevel=2
    )
    return EagerStep(model, optimizer, loss_of, images, fallback_error=reason)


@contextlib.contextmanager
def restored(model: nn.Module, optimizer: torch.optim.Optimizer) -> Iterator[None]:
    """On exit, put back in place what training steps inside changed: parameters, buffers (batch
    norm's statistics, spectral norm's vectors), the optimizer's state, the device's generator.

    Adam's state that did not exist on entry is zeroed, which is what a fresh Adam starts from.
    """
    device = next(model.parameters()).device
    tensors = [*model.parameters(), *model.buffers()]
    values = [t.detach().clone() for t in tensors]
    state = {
        param: {key: value.clone() for key, value in s.items() if torch.is_tensor(value)}
        for param, s in optimizer.state.items()
    }
    rng = torch.cuda.get_rng_state(device) if device.type == "cuda" else torch.get_rng_state()
    failed = True
    try:
        yield
        failed = False
    finally:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        with torch.no_grad():
            for tensor, value in zip(tensors, values, strict=True):
                tensor.copy_(value)
            for param, param_state in optimizer.state.items():
                before = state.get(param, {})
                for key, value in param_state.items():
                    if torch.is_tensor(value) and key in before:
                        value.copy_(before[key])
                    elif torch.is_tensor(value):
                        value.zero_()
        _set_rng_state(device, rng, fresh=failed)


def _set_rng_state(device: torch.device, rng: torch.Tensor, fresh: bool) -> None:
    """fresh: after a failed capture, PyTorch (before 2.13) leaves the CUDA generator's state in
    capture mode, where every later random op raises; the default generator then gets a new state
    object holding the saved values."""
    if device.type != "cuda":
        torch.set_rng_state(rng)
    elif not fresh:
        torch.cuda.set_rng_state(rng, device)  # the state object the graphs registered stays
    else:
        replacement = torch.Generator(device=device)
        replacement.set_state(rng)
        torch.cuda.default_generators[device.index].graphsafe_set_state(replacement)


def _check_capturable(device: torch.device, optimizer: torch.optim.Optimizer, images) -> None:
    if device.type != "cuda":
        raise ValueError(f"CUDA graphs need a model on a CUDA device, not {device}")
    if images is None or images.device != device:
        raise ValueError("the graphed step gathers its batches from images resident on its device")
    for group in optimizer.param_groups:
        if not (group.get("capturable") and isinstance(group["lr"], torch.Tensor)):
            raise ValueError(
                "the graphed step needs a capturable optimizer with a tensor learning rate: "
                "adam(params, lr, fused=True)"
            )


@contextlib.contextmanager
def _host_syncs_raise(enabled: bool) -> Iterator[None]:
    """While enabled, an operation that makes the host wait for the GPU raises: no capture could
    hold it."""
    saved = torch.cuda.get_sync_debug_mode()
    with warnings.catch_warnings():  # "a prototype feature": once a trial, in every worker's log
        warnings.filterwarnings("ignore", message="Synchronization debug mode")
        if enabled:
            torch.cuda.set_sync_debug_mode("error")
        try:
            yield
        finally:
            torch.cuda.set_sync_debug_mode(saved)


def _end_failed_capture(pool, device: torch.device) -> None:
    """What CUDAGraph.capture_end does after a good capture and skips when the capture fails: stop
    the allocator recording into the graph's pool (else the next torch.cuda.empty_cache() trips an
    internal assert), then release the pool. Best effort, through PyTorch's private bindings (the
    first name from torch 2.8 on)."""
    end = getattr(torch._C, "_cuda_endAllocateToPool", None) or getattr(
        torch._C, "_cuda_endAllocateCurrentStreamToPool", None
    )
    release = getattr(torch._C, "_cuda_releasePool", None)
    if end is None or release is None:
        return
    try:
        end(device.index, pool)
    except RuntimeError:  # not recording: the capture ended, and its graph releases its own pool
        return
    release(device.index, pool)


def _describe(exc: BaseException) -> str:
    """The first line of the error that started it (a failed capture raises again on leaving
    the graph's context)."""
    while exc.__cause__ is not None or exc.__context__ is not None:
        exc = exc.__cause__ or exc.__context__
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"

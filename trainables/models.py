"""The paper's convolutional autoencoder (after Tolstikhin et al. 2018 and Ghosh et al. 2019).

Reading order: Encoder, Decoder, AutoEncoder, build_model. Shapes are for CIFAR-10 (3x32x32) with f
filters; CelebA (3x64x64) has 5x5 kernels, a 4x4 map before the latent and one more decoder stage.

Choices where the paper is silent (docs/readings.md gives the evidence for each):
- config `decoder_width`: the decoder's linear layer maps to 8x8x1024 as the reference RAE code's
  Dense(8*8*1024) does ("1024"), or to 8x8x8f ("8f"); the two agree at f=128;
- depth d repeats each encoder stage's conv d times, the stride-2 conv last; decoder stages mirror
  the encoder stage of the same width, the stride-2 transposed conv first;
- weights start as in Keras (Glorot-uniform, zero bias), since the paper trained in TensorFlow and
  the frozen-latent experiment keeps that init; every batch norm takes the config's `bn_momentum`
  (PyTorch's convention: Keras' 0.99 is 0.01) and `bn_eps`;
- config `bce_reduction` (VAE only): how reconstruction_loss reduces the BCE before beta * KL.
"""

import torch
import torch.nn.functional as F
from torch import nn

from trainables.config import TrialConfig
from trainables.data import DATASETS

KERNEL_BY_SIZE = {32: 4, 64: 5}  # the paper: 4x4 kernels for CIFAR-10, 5x5 for CelebA
DECODER_START = 8  # the decoder's linear layer reshapes to 8x8
FIXED_DECODER_CHANNELS = 1024  # decoder_width "1024": the reference RAE code's Dense(8*8*1024)


def _batch_norm(channels: int, dims: int = 2) -> nn.Module:
    return (nn.BatchNorm2d if dims == 2 else nn.BatchNorm1d)(channels)


def _same_conv(c_in: int, c_out: int, kernel: int) -> nn.Sequential:
    """Stride-1 conv that keeps the size; an even kernel pads one more after than before, as TF."""
    before = (kernel - 1) // 2
    after = kernel // 2
    return nn.Sequential(
        nn.ZeroPad2d((before, after, before, after)), nn.Conv2d(c_in, c_out, kernel)
    )


def _conv_bn_relu(c_in: int, c_out: int, kernel: int, stride: int) -> nn.Sequential:
    """Stride 1 keeps the size, stride 2 halves it."""
    if stride == 1:
        conv = _same_conv(c_in, c_out, kernel)
    else:
        conv = nn.Conv2d(c_in, c_out, kernel, stride, (kernel - 1) // 2)
    return nn.Sequential(conv, _batch_norm(c_out), nn.ReLU())


def _upconv_bn_relu(c_in: int, c_out: int, kernel: int) -> nn.Sequential:
    """Stride-2 transposed conv that exactly doubles the size for kernel 4 or 5."""
    padding = (kernel - 1) // 2
    up = nn.ConvTranspose2d(
        c_in, c_out, kernel, stride=2, padding=padding, output_padding=2 * padding + 2 - kernel
    )
    return nn.Sequential(up, _batch_norm(c_out), nn.ReLU())


class Encoder(nn.Module):
    """x (B,C,32,32) -> stages f,2f,4f,8f (each halving) -> (B,8f,2,2) -> flatten -> (B,out_dim)."""

    def __init__(
        self, channels: int, size: int, filters: int, stage_depths: tuple[int, ...], out_dim: int
    ):
        super().__init__()
        kernel = KERNEL_BY_SIZE[size]
        layers = []
        c = channels
        for stage, repeats in enumerate(stage_depths):
            width = filters * 2**stage
            for _ in range(repeats - 1):
                layers.append(_conv_bn_relu(c, width, kernel, stride=1))  # (B,width,s,s)
                c = width
            layers.append(_conv_bn_relu(c, width, kernel, stride=2))  # (B,width,s/2,s/2)
            c = width
        self.convs = nn.Sequential(*layers)
        side = size // 2 ** len(stage_depths)
        # (B, c*side*side) -> (B, out_dim): the layer freeze_latent keeps at its init
        self.latent_layer = nn.Linear(c * side * side, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.latent_layer(self.convs(x).flatten(1))  # (B, out_dim)


class Decoder(nn.Module):
    """z (B,latent) -> linear -> (B,S,8,8) -> 4f (16x16) -> 2f (32x32) [-> f (64x64)] -> logits;
    S, the start channels, is 1024 or 8f (config decoder_width)."""

    def __init__(
        self,
        channels: int,
        size: int,
        filters: int,
        stage_depths: tuple[int, ...],
        latent: int,
        start_channels: int,
    ):
        super().__init__()
        kernel = KERNEL_BY_SIZE[size]
        n_up = (size // DECODER_START).bit_length() - 1  # 2 for 32x32, 3 for 64x64
        c = start_channels
        self.start_channels = c
        self.linear = nn.Linear(latent, c * DECODER_START * DECODER_START)
        layers = []
        last = len(stage_depths) - 1
        for stage in reversed(range(last - n_up, last)):  # 4f, 2f[, f]
            width = filters * 2**stage
            layers.append(_upconv_bn_relu(c, width, kernel))  # doubles the side
            for _ in range(stage_depths[stage] - 1):
                layers.append(_conv_bn_relu(width, width, kernel, stride=1))
            c = width
        layers.append(_same_conv(c, channels, kernel))  # stride-1 output layer: logits
        self.convs = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.linear(z).view(-1, self.start_channels, DECODER_START, DECODER_START)  # (B,S,8,8)
        return self.convs(h)  # (B,C,size,size) logits; sigmoid gives the image


class AutoEncoder(nn.Module):
    """DAE or VAE: `forward` is the training path, `encode`/`decode` the deterministic eval path."""

    def __init__(self, cfg: TrialConfig):
        super().__init__()
        channels, size, _ = DATASETS[cfg.dataset].image_shape
        self.variational = cfg.model == "vae"
        self.latent = cfg.latent
        self.noise_std = cfg.noise_std
        out_dim = 2 * cfg.latent if self.variational else cfg.latent  # VAE: mean and log-variance
        self.encoder = Encoder(channels, size, cfg.filters, cfg.stage_depths, out_dim)
        self.decoder = Decoder(
            channels, size, cfg.filters, cfg.stage_depths, cfg.latent, _decoder_start_channels(cfg)
        )
        self.latent_norm = nn.Identity()
        if cfg.latent_norm == "bn":
            self.latent_norm = _batch_norm(cfg.latent, dims=1)
        elif cfg.latent_norm == "ln":
            self.latent_norm = nn.LayerNorm(cfg.latent)
        for module in self.modules():  # every batch norm, the latent one included
            if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
                module.momentum = cfg.bn_momentum
                module.eps = cfg.bn_eps
        self.apply(_keras_init)
        if cfg.latent_norm == "sn":
            nn.utils.parametrizations.spectral_norm(self.encoder.latent_layer)
        if cfg.freeze_latent:
            self.encoder.latent_layer.requires_grad_(False)

    def encode_stats(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        h = self.encoder(x)
        if self.variational:
            mean, logvar = h.chunk(2, dim=1)  # (B,latent) each
            return mean, logvar
        return self.latent_norm(h), None

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The code a prior is fitted to: the DAE's output, the VAE's mean."""
        return self.encode_stats(x)[0]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.decoder(z))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (reconstruction logits, per-image KL to N(0,I); zeros for a DAE)."""
        z, logvar = self.encode_stats(x)
        kl = torch.zeros(x.shape[0], device=x.device)
        if logvar is not None:
            kl = 0.5 * (z.pow(2) + logvar.exp() - 1 - logvar).sum(dim=1)
            if self.training:
                z = z + torch.randn_like(z) * (0.5 * logvar).exp()  # reparameterisation
        if self.training and self.noise_std > 0:
            z = z + self.noise_std * torch.randn_like(z)  # Keras GaussianNoise: training only
        return self.decoder(z), kl


def _decoder_start_channels(cfg: TrialConfig) -> int:
    """The channels of the decoder's 8x8 start: 1024 fixed, or the encoder's last width 8f."""
    if cfg.decoder_width == "1024":
        return FIXED_DECODER_CHANNELS
    return cfg.filters * 2 ** (len(cfg.stage_depths) - 1)


def _keras_init(module: nn.Module) -> None:
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.xavier_uniform_(module.weight)
        nn.init.zeros_(module.bias)


def reconstruction_loss(
    logits: torch.Tensor, x: torch.Tensor, reduction: str = "sum"
) -> torch.Tensor:
    """Per-image binary cross-entropy (B,), from logits in fp32 for numerical stability.

    reduction (config bce_reduction): "sum" over every pixel and channel; "channel-mean" sums over
    height and width and averages over channels (the Keras VAE example, the RAE code); "mean"
    averages over all of them (Keras' default). Against "sum", a VAE's beta weighs C or C*H*W
    times more.
    """
    bce = F.binary_cross_entropy_with_logits(logits.float(), x, reduction="none")
    total = bce.flatten(1).sum(dim=1)  # (B,)
    if reduction == "sum":
        return total
    if reduction == "channel-mean":
        return total / x.shape[1]
    if reduction == "mean":
        return total / x[0].numel()
    raise ValueError(f"bce_reduction: {reduction!r} is not one of sum, channel-mean, mean")


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def build_model(cfg: TrialConfig) -> AutoEncoder:
    return AutoEncoder(cfg)

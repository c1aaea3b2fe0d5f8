import math

import pytest
import torch

from trainables.config import make_config
from trainables.models import build_model, count_parameters, reconstruction_loss

BATCH_NORMS = (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)


def tiny(**overrides):
    return make_config({"filters": 4, "latent": 8, **overrides})


@pytest.mark.parametrize(
    "dataset, shape", [("cifar10", (3, 32, 32)), ("celeba", (3, 64, 64)), ("digits", (1, 32, 32))]
)
@pytest.mark.parametrize("depth", [1, 2, [3, 3, 2, 1]])
def test_shapes(dataset, shape, depth):
    model = build_model(tiny(dataset=dataset, depth=depth)).eval()
    x = torch.rand(3, *shape)
    z = model.encode(x)
    assert z.shape == (3, 8)
    out = model.decode(z)
    assert out.shape == (3, *shape)
    assert out.min() >= 0 and out.max() <= 1  # sigmoid output


def upconv_widths(model) -> list[int]:
    return [
        m.out_channels for m in model.decoder.modules() if isinstance(m, torch.nn.ConvTranspose2d)
    ]


def test_kernel_and_stage_counts_follow_the_paper():
    cifar = build_model(tiny(dataset="cifar10"))
    celeba = build_model(tiny(dataset="celeba"))
    convs = [m for m in cifar.encoder.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [m.kernel_size for m in convs] == [(4, 4)] * 4
    assert [m.out_channels for m in convs] == [4, 8, 16, 32]
    assert all(m.kernel_size == (5, 5) for m in celeba.modules() if isinstance(m, torch.nn.Conv2d))
    assert upconv_widths(cifar) == [16, 8]  # 4f, 2f
    assert upconv_widths(celeba) == [16, 8, 4]  # one more stage at 64x64
    assert cifar.decoder.linear.out_features == 8 * 8 * 1024  # the default: fixed 8x8x1024
    scaled = build_model(tiny(dataset="cifar10", decoder_width="8f"))
    assert scaled.decoder.linear.out_features == 8 * 8 * 32  # 8x8x8f


def test_depth_repeats_convs_with_the_strided_one_last():
    model = build_model(tiny(depth=[3, 3, 2, 1]))
    convs = [m for m in model.encoder.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [m.stride[0] for m in convs] == [1, 1, 2, 1, 1, 2, 1, 2, 2]
    assert count_parameters(model) > count_parameters(build_model(tiny()))


class FixedStats(torch.nn.Module):
    """An encoder that ignores its images and outputs one known mean and log-variance per image."""

    def __init__(self, mean: torch.Tensor, logvar: torch.Tensor):
        super().__init__()
        self.register_buffer("stats", torch.cat([mean, logvar]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stats.expand(len(x), -1)


class RecordingDecoder(torch.nn.Module):
    """A decoder that keeps the codes it is given and returns zero logits of the images' shape."""

    def __init__(self, shape):
        super().__init__()
        self.shape = shape
        self.codes: list[torch.Tensor] = []

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        self.codes.append(z.detach().clone())
        return torch.zeros(len(z), *self.shape)


def vae_with_known_code(mean, logvar):
    """A tiny VAE whose encoder outputs (mean, logvar) and whose decoder records its input."""
    model = build_model(tiny(model="vae"))
    model.encoder = FixedStats(torch.as_tensor(mean), torch.as_tensor(logvar))
    model.decoder = RecordingDecoder((3, 32, 32))
    return model


def test_vae_kl_is_the_closed_form_kl_of_its_gaussian_to_the_standard_normal():
    """KL(N(m, s^2) || N(0, 1)) = (m^2 + s^2 - 1) / 2 - log s, per dimension, summed; checked
    against torch.distributions and a hand-computed case (m = 1, s^2 = e: (1 + e - 1 - 1) / 2)."""
    mean = torch.tensor([1.0, -0.5, 0.0, 2.0, 0.3, -1.2, 0.7, 0.0])
    logvar = torch.tensor([1.0, -1.0, 0.0, 0.5, -2.0, 0.2, 1.5, -0.3])
    model = vae_with_known_code(mean, logvar).eval()
    _, kl = model(torch.rand(3, 3, 32, 32))
    expected = torch.distributions.kl_divergence(
        torch.distributions.Normal(mean, (0.5 * logvar).exp()), torch.distributions.Normal(0.0, 1.0)
    ).sum()
    assert torch.allclose(kl, expected.expand(3), rtol=1e-6)
    _, one = vae_with_known_code(torch.ones(8), torch.ones(8)).eval()(torch.rand(1, 3, 32, 32))
    assert one.item() == pytest.approx(8 * (math.e - 1) / 2, rel=1e-6)


def test_reparameterised_codes_spread_by_the_standard_deviation():
    """logvar = log 4: the codes the decoder gets in training have std 2 (not the variance 4) around
    the mean. 1,024 images x 8 dimensions = 8,192 draws: the sample std's standard error is
    2 / sqrt(2 * 8192) = 0.016 and the mean's 2 / sqrt(8192) = 0.022; allowed 5 of each."""
    torch.manual_seed(0)
    mean = torch.linspace(-1, 1, 8)
    model = vae_with_known_code(mean, torch.full((8,), math.log(4.0))).train()
    model(torch.rand(1024, 3, 32, 32))
    noise = model.decoder.codes[0] - mean
    assert noise.std().item() == pytest.approx(2.0, abs=5 * 0.016)
    assert noise.mean().item() == pytest.approx(0.0, abs=5 * 0.022)
    model.eval()
    model(torch.rand(4, 3, 32, 32))
    assert torch.equal(model.decoder.codes[1], mean.expand(4, -1))  # no sampling in eval mode


def test_vae_encodes_with_its_mean_not_its_log_variance():
    """encode gives the first half of the encoder's output (the mean), every time, in eval mode."""
    torch.manual_seed(0)
    model = build_model(tiny(model="vae")).eval()
    x = torch.rand(4, 3, 32, 32)
    stats = model.encoder(x)
    assert stats.shape == (4, 16)
    assert torch.equal(model.encode(x), stats[:, :8])
    assert not torch.allclose(stats[:, :8], stats[:, 8:])  # the halves differ: the check can fail
    model.train()
    a, _ = model(x)
    b, _ = model(x)
    assert not torch.allclose(a, b)  # training draws a new reparameterised sample per call


def test_dae_has_no_kl():
    _, kl = build_model(tiny())(torch.rand(2, 3, 32, 32))
    assert torch.equal(kl, torch.zeros(2))


def test_noise_only_in_training():
    torch.manual_seed(0)
    model = build_model(tiny(noise_std=1.0))
    x = torch.rand(4, 3, 32, 32)
    model.eval()
    assert torch.equal(model(x)[0], model(x)[0])
    model.train()
    model.encoder.eval()  # isolate the noise from batch-norm statistics
    model.decoder.eval()
    assert not torch.allclose(model(x)[0], model(x)[0])


def test_frozen_latent_layer_keeps_its_init_after_a_step():
    model = build_model(tiny(freeze_latent=True, decoder_width="8f"))  # 8f: a cheaper step
    before = model.encoder.latent_layer.weight.detach().clone()
    conv_before = next(model.encoder.convs.parameters()).detach().clone()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=1e-2)
    x = torch.rand(4, 3, 32, 32)
    logits, _ = model(x)
    reconstruction_loss(logits, x).mean().backward()
    optimizer.step()
    assert torch.equal(model.encoder.latent_layer.weight, before)
    assert not torch.equal(next(model.encoder.convs.parameters()), conv_before)


@pytest.mark.parametrize("norm", ["bn", "ln"])
def test_latent_norm_normalises_codes(norm):
    model = build_model(tiny(latent_norm=norm)).train()
    z = model.encode(torch.rand(16, 3, 32, 32))
    stats = z.mean(0) if norm == "bn" else z.mean(1)
    assert stats.abs().max() < 1e-4


def test_spectral_norm_bounds_the_latent_layer():
    model = build_model(tiny(latent_norm="sn")).train()
    for _ in range(20):  # power iteration converges while training
        model.encode(torch.rand(4, 3, 32, 32))
    sigma = torch.linalg.matrix_norm(model.encoder.latent_layer.weight.detach(), ord=2)
    assert sigma == pytest.approx(1.0, rel=0.05)


@pytest.mark.parametrize(
    "reduction, elements", [("sum", 3 * 4 * 4), ("channel-mean", 4 * 4), ("mean", 1)]
)
def test_reconstruction_loss_reduces_bce_per_image(reduction, elements):
    """p = 0.5 everywhere costs log(2) per element: summed over all 48, over the 16 of a channel
    (averaging the 3 channels), or averaged over all."""
    x = torch.rand(2, 3, 4, 4)
    logits = torch.zeros(2, 3, 4, 4)
    expected = torch.full((2,), elements * math.log(2))
    assert torch.allclose(reconstruction_loss(logits, x, reduction), expected)
    assert torch.equal(reconstruction_loss(logits, x), reconstruction_loss(logits, x, "sum"))
    with pytest.raises(ValueError, match="bce_reduction"):
        reconstruction_loss(logits, x, "max")


def shapes(model) -> dict[str, tuple]:
    return {name: tuple(value.shape) for name, value in model.state_dict().items()}


@pytest.mark.parametrize("dataset", ["cifar10", "celeba"])
def test_decoder_width_changes_only_the_decoders_start(dataset):
    """The linear layer's output and the first transposed conv's input; every other tensor, the
    encoder's included, keeps its shape, and the images keep theirs."""
    fixed = build_model(tiny(dataset=dataset, decoder_width="1024"))
    scaled = build_model(tiny(dataset=dataset, decoder_width="8f"))
    ours, theirs = shapes(fixed), shapes(scaled)
    assert ours.keys() == theirs.keys()
    changed = {name for name in ours if ours[name] != theirs[name]}
    assert changed == {"decoder.linear.weight", "decoder.linear.bias", "decoder.convs.0.0.weight"}
    assert (
        ours["decoder.convs.0.0.weight"][0] == 1024 and theirs["decoder.convs.0.0.weight"][0] == 32
    )
    z = torch.randn(2, 8)
    assert fixed.eval().decode(z).shape == scaled.eval().decode(z).shape


# (dataset, filters) -> encoder, decoder at 8x8x1024, decoder at 8x8x8f; depth 1, latent 16. The
# paper's CIFAR-10 decoders hold 3e6 to 3e7: the fixed reading is inside at 32 and 256 filters,
# 8x8x8f outside at both (docs/readings.md, "Architecture").
PARAMETER_COUNTS = {
    ("cifar10", 32): (707_504, 3_345_987, 937_539),
    ("cifar10", 256): (44_195_088, 26_309_123, 44_200_451),
    ("celeba", 32): (1_144_592, 4_649_987, 1_356_803),
    ("celeba", 64): (4_439_568, 8_697_859, 4_864_003),
    ("celeba", 128): (17_480_720, 18_329_603, 18_329_603),
}


@pytest.mark.parametrize(("dataset", "filters"), list(PARAMETER_COUNTS))
def test_parameter_counts_of_both_decoder_readings(dataset, filters):
    """docs/readings.md's table. The readings differ by the linear layer's (latent + 1) x 64
    outputs per start channel and the first transposed conv's 4f x k x k weights per input
    channel."""
    counts = {}
    for width in ("1024", "8f"):
        with torch.device("meta"):  # shapes only: the 256-filter models hold 7e7 parameters
            model = build_model(
                make_config(
                    {"dataset": dataset, "filters": filters, "latent": 16, "decoder_width": width}
                )
            )
        counts[width] = (count_parameters(model.encoder), count_parameters(model.decoder))
    encoder, fixed, scaled = PARAMETER_COUNTS[dataset, filters]
    assert counts == {"1024": (encoder, fixed), "8f": (encoder, scaled)}
    kernel = {"cifar10": 4, "celeba": 5}[dataset]
    extra_channels = 1024 - 8 * filters
    assert fixed - scaled == extra_channels * ((16 + 1) * 64 + 4 * filters * kernel**2)


@pytest.mark.parametrize(
    ("field", "attribute", "value"), [("bn_momentum", "momentum", 0.3), ("bn_eps", "eps", 0.02)]
)
def test_batch_norm_constants_reach_every_batch_norm_and_nothing_else(field, attribute, value):
    """Every batch norm (the encoder's, the decoder's, the latent one) takes the value; no other
    module changes, and no tensor changes shape."""
    cfg = tiny(latent_norm="bn")
    plain = build_model(cfg)
    changed = build_model(cfg.replace(**{field: value}))
    norms = {name for name, module in plain.named_modules() if isinstance(module, BATCH_NORMS)}
    assert "latent_norm" in norms and len(norms) == 4 + 2 + 1  # encoder, decoder, latent

    def leaves(model) -> dict[str, str]:
        return {name: repr(m) for name, m in model.named_modules() if not list(m.children())}

    before, after = leaves(plain), leaves(changed)
    assert {name for name in before if before[name] != after[name]} == norms
    assert {getattr(changed.get_submodule(name), attribute) for name in norms} == {value}
    assert shapes(plain) == shapes(changed)


def test_batch_norm_defaults_are_keras_for_the_paper_datasets_and_pytorch_for_digits():
    for dataset, expected in (
        ("cifar10", (0.01, 1e-3)),
        ("celeba", (0.01, 1e-3)),
        ("digits", (0.1, 1e-5)),
    ):
        model = build_model(tiny(dataset=dataset))
        constants = {(m.momentum, m.eps) for m in model.modules() if isinstance(m, BATCH_NORMS)}
        assert constants == {expected}, dataset


def glorot_variance(weight: torch.Tensor) -> float:
    """Glorot-uniform's U(-a, a), a = sqrt(6 / (fan_in + fan_out)), has variance a^2 / 3."""
    fan_in, fan_out = torch.nn.init._calculate_fan_in_and_fan_out(weight)
    return 2 / (fan_in + fan_out)


def test_layers_start_glorot_uniform_with_zero_biases_as_in_keras():
    """Every conv, transposed conv and linear layer. The sample variance of n uniform draws has
    relative standard error sqrt(0.8 / n) (fourth moment a^4 / 5 against variance a^2 / 3): allowed
    5 of them. PyTorch's own init (variance 1 / (3 fan_in), biases nonzero) is outside for each."""
    torch.manual_seed(0)
    model = build_model(tiny())
    layers = [
        m
        for m in model.modules()
        if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d, torch.nn.Linear))
    ]
    assert len(layers) == 4 + 1 + 2 + 1 + 1  # encoder convs, latent layer, upconvs, out, linear
    for layer in layers:
        weight = layer.weight.detach().double()
        n = weight.numel()
        expected = glorot_variance(weight)
        assert weight.var().item() == pytest.approx(expected, rel=5 * math.sqrt(0.8 / n)), layer
        assert weight.abs().max().item() <= math.sqrt(3 * expected) * (1 + 1e-6)
        assert torch.equal(layer.bias, torch.zeros_like(layer.bias)), layer
    # the decoder's linear layer, 8 -> 65,536: half a million draws, so 0.6% allowed (PyTorch's
    # init would give it 1,300 times Glorot's variance)
    assert model.decoder.linear.weight.numel() == 8 * 8 * 8 * 1024

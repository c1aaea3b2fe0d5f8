import pytest
import torch

from trainables.config import make_config
from trainables.models import build_model, count_parameters, reconstruction_loss


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
    assert cifar.decoder.linear.out_features == 8 * 8 * 32  # 8x8x8f


def test_depth_repeats_convs_with_the_strided_one_last():
    model = build_model(tiny(depth=[3, 3, 2, 1]))
    convs = [m for m in model.encoder.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [m.stride[0] for m in convs] == [1, 1, 2, 1, 1, 2, 1, 2, 2]
    assert count_parameters(model) > count_parameters(build_model(tiny()))


def test_vae_encodes_with_its_mean_and_samples_in_training():
    torch.manual_seed(0)
    model = build_model(tiny(model="vae"))
    x = torch.rand(4, 3, 32, 32)
    model.eval()
    assert torch.equal(model.encode(x), model.encode(x))
    _, kl = model(x)
    assert kl.shape == (4,) and (kl >= 0).all()
    model.train()
    a, _ = model(x)
    b, _ = model(x)
    assert not torch.allclose(a, b)  # reparameterised sample differs per call


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
    model = build_model(tiny(freeze_latent=True))
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


def test_reconstruction_loss_is_summed_bce_per_image():
    x = torch.rand(2, 1, 4, 4)
    logits = torch.zeros(2, 1, 4, 4)  # p = 0.5 everywhere -> log(2) per pixel
    assert torch.allclose(
        reconstruction_loss(logits, x), torch.full((2,), 16 * torch.log(torch.tensor(2.0)))
    )


def test_paper_scale_parameter_counts():
    """f=128 on CIFAR-10 at 128 latents: ~1.2e7 encoder, ~1.9e7 decoder (README table)."""
    model = build_model(make_config({"filters": 128, "latent": 128}))
    assert 1.0e7 < count_parameters(model.encoder) < 1.3e7
    assert 1.8e7 < count_parameters(model.decoder) < 2.0e7

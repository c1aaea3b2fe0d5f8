"""trainables/config.py: the defaults per dataset, every field's rule (bad input names its key),
the runtime options, and the trial id: what changes it and what leaves it alone."""

import dataclasses

import numpy as np
import pytest

from trainables.config import FIELDS, VALUES_BEFORE, Interval, TrialConfig, make_config


def test_defaults_are_the_papers_protocol():
    cfg = make_config()
    assert (cfg.dataset, cfg.model, cfg.filters, cfg.depth, cfg.latent) == (
        "cifar10",
        "dae",
        128,
        "1",
        128,
    )
    assert (cfg.epochs, cfg.batch_size, cfg.beta, cfg.n_samples, cfg.gmm_components) == (
        100,
        128,
        0.01,
        10_000,
        10,
    )
    assert cfg.feature_extractor == "inception-fid"


def test_digits_starts_small_but_overrides_win():
    assert make_config({"dataset": "digits"}).filters == 16
    assert make_config({"dataset": "digits"}).feature_extractor == "digits-cnn"
    assert make_config({"dataset": "digits", "filters": 64}).filters == 64


@pytest.mark.parametrize(
    "overrides, key",
    [
        ({"latnet": 64}, "latnet"),
        ({"latent": 0}, "latent"),
        ({"filters": 48}, "filters"),
        ({"filters": "64"}, "filters"),
        ({"depth": [3, 3, 2]}, "depth"),
        ({"depth": 0}, "depth"),
        ({"noise_std": -0.1}, "noise_std"),
        ({"noise_std": float("nan")}, "noise_std"),
        ({"model": "gan"}, "model"),
        ({"dataset": "mnist"}, "dataset"),
        ({"latent_norm": "gn"}, "latent_norm"),
        ({"freeze_latent": 1}, "freeze_latent"),
        ({"batch_size": 1}, "batch_size"),
        ({"decoder_width": "512"}, "decoder_width"),
        ({"bce_reduction": "max"}, "bce_reduction"),
        ({"bn_momentum": 0.0}, "bn_momentum"),
        ({"bn_eps": 0.0}, "bn_eps"),
        ({"gmm_max_iter": 0}, "gmm_max_iter"),
        ({"model": "vae", "latent_norm": "bn"}, "latent_norm"),
        ({"dataset": "cifar10", "feature_extractor": "digits-cnn"}, "feature_extractor"),
        ({"device": "tpu"}, "device"),
        # valid-looking values that no store column or no hardware can hold
        ({"n_samples": 1e19}, "n_samples"),
        ({"latent": 10**19}, "latent"),
        ({"gmm_components": 2**63}, "gmm_components"),
        ({"epochs": 1e9}, "epochs"),
        ({"seed": 2**32}, "seed"),
        ({"seed": -1}, "seed"),
        ({"depth": 10**6}, "depth"),
        ({"lr": 1e-320}, "lr"),  # subnormal: 0 in float32
        ({"noise_std": 1e308}, "noise_std"),  # inf in float32
        ({"beta": 1e39, "model": "vae"}, "beta"),
        ({"device": "cuda:"}, "device"),
        ({"device": "cuda:abc"}, "device"),
        ({"device": "cuda:-1"}, "device"),
    ],
)
def test_bad_input_names_the_key(overrides, key):
    with pytest.raises(ValueError, match=key):
        make_config(overrides)


@pytest.mark.parametrize("dataset", ["cifar10", "celeba"])
def test_the_paper_datasets_default_to_the_evidence_favoured_readings(dataset):
    cfg = make_config({"dataset": dataset})
    readings = (cfg.decoder_width, cfg.bce_reduction, cfg.bn_momentum, cfg.bn_eps)
    assert readings == ("1024", "sum", 0.01, 1e-3)
    assert (cfg.gmm_max_iter, cfg.precision) == (2000, "bf16")


def test_digits_keeps_the_readings_it_was_measured_with():
    cfg = make_config({"dataset": "digits"})
    assert (cfg.decoder_width, cfg.bn_momentum, cfg.bn_eps, cfg.precision) == (
        "8f",
        0.1,
        1e-5,
        "fp32",
    )
    assert cfg.gmm_max_iter == 2000


def test_precision_is_part_of_the_trial():
    """A bf16 and an fp32 trial are different experiments; "auto" (bf16 on CUDA only) is gone."""
    bf16 = make_config({"latent": 64})
    fp32 = make_config({"latent": 64, "precision": "fp32"})
    assert "precision" in bf16.science() and bf16.trial_id() != fp32.trial_id()
    with pytest.raises(ValueError, match="precision"):
        make_config({"precision": "auto"})


def test_a_field_at_its_before_value_keeps_the_old_trial_id():
    """Rows from before these fields existed ran 8x8x8f, PyTorch's batch norm, 100 GMM iterations
    and fp32 (on CPU): digits, which defaults to all but the GMM's, keeps its ids. The ids are what
    the code before these fields gave the digits default and a digits-grid VAE."""
    assert VALUES_BEFORE == {
        "decoder_width": "8f",
        "bce_reduction": "sum",
        "bn_momentum": 0.1,
        "bn_eps": 1e-5,
        "precision": "fp32",
        "gmm_max_iter": 100,
        "sampler_streams": "shared",
    }
    old = {"gmm_max_iter": 100, "sampler_streams": "shared"}
    assert make_config({"dataset": "digits", **old}).trial_id() == "cfa13b3d2fa756e8"
    vae = {"dataset": "digits", "model": "vae", "latent": 8, "filters": 8, "batch_size": 32}
    assert make_config({**vae, "epochs": 10, **old}).trial_id() == "b8b2a72c335f3b55"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("decoder_width", "8f"),
        ("bce_reduction", "mean"),
        ("bn_momentum", 0.1),
        ("bn_eps", 1e-5),
        ("gmm_max_iter", 100),
        ("precision", "fp32"),
    ],
)
def test_each_reading_changes_its_own_field_and_the_trial_id_only(field, value):
    base = make_config({"model": "vae"})
    other = base.replace(**{field: value})
    changed = {k for k, v in base.science().items() if other.science()[k] != v}
    assert changed == {field} and other.trial_id() != base.trial_id()


def test_a_dae_ignores_the_vae_only_fields():
    """A grid-wide --set beta=... or bce_reduction=... must reach the VAEs and leave DAEs alone."""
    plain = make_config({"model": "dae"})
    dae = make_config({"model": "dae", "beta": 0.5, "bce_reduction": "mean"})
    assert dae == plain and dae.trial_id() == plain.trial_id()
    vae = make_config({"model": "vae", "beta": 0.5, "bce_reduction": "mean"})
    assert (vae.beta, vae.bce_reduction) == (0.5, "mean")


def test_misspelled_key_gets_a_suggestion():
    with pytest.raises(ValueError, match="did you mean 'latent'"):
        make_config({"latnet": 64})


def test_depth_forms_normalise():
    assert make_config({"depth": 2}).depth == "2"
    assert make_config({"depth": [2, 2, 2, 2]}).depth == "2"
    cfg = make_config({"depth": [3, 3, 2, 1]})
    assert cfg.depth == "3-3-2-1" and cfg.stage_depths == (3, 3, 2, 1)
    assert make_config({"depth": "3-3-2-1"}) == cfg
    assert make_config({"depth": 2}).stage_depths == (2, 2, 2, 2)


@pytest.mark.parametrize(
    "overrides, key",
    [
        ({"precision": "fp16"}, "precision"),
        ({"precision": 16}, "precision"),
        ({"compile": "yes"}, "compile"),
        ({"gmm_backend": "cuml"}, "gmm_backend"),
        ({"train_loop": "dataloader"}, "train_loop"),
        ({"cuda_graph": "yes"}, "cuda_graph"),
        ({"score_tf32": 1}, "score_tf32"),
    ],
)
def test_runtime_options_are_validated(overrides, key):
    with pytest.raises(ValueError, match=key):
        make_config(overrides)


def test_runtime_options_leave_the_trial_id_alone():
    base = make_config({"latent": 64})
    assert (base.compile, base.gmm_backend, base.train_loop) == (False, "auto", "fast")
    assert (base.cuda_graph, base.score_tf32) == (True, False)
    for overrides in (
        {"compile": True},
        {"gmm_backend": "torch"},
        {"train_loop": "plain"},
        {"cuda_graph": False},
        {"score_tf32": True},
    ):
        assert make_config({"latent": 64, **overrides}).trial_id() == base.trial_id()


def test_trial_id_is_stable_and_ignores_where_it_runs():
    a = make_config({"latent": 64})
    assert a.trial_id() == make_config({"latent": 64.0}).trial_id()
    assert (
        a.trial_id()
        == make_config({"latent": 64, "data_root": "/elsewhere", "device": "cpu"}).trial_id()
    )
    assert a.trial_id() != make_config({"latent": 64, "seed": 1}).trial_id()
    assert a.trial_id() != make_config({"latent": 65}).trial_id()
    assert len(a.trial_id()) == 16


def test_config_is_frozen_and_replace_revalidates():
    cfg = make_config()
    with pytest.raises(AttributeError):
        cfg.latent = 3
    assert cfg.replace(latent=64).latent == 64
    with pytest.raises(ValueError, match="latent"):
        cfg.replace(latent=-1)
    assert cfg.latent == TrialConfig().latent  # replace made a new config, this one unchanged


def test_every_integer_field_has_a_maximum_that_int64_holds():
    """The store keeps integers as int64: a new integer field must be bounded too."""
    ints = {name for name, f in FIELDS.items() if f.type in (int, "int")}
    maxima = {
        name: constraint.high
        for name in ints
        for constraint in FIELDS[name].metadata["constraints"]
        if isinstance(constraint, Interval) and constraint.high is not None
    }
    assert set(maxima) == ints
    assert all(0 < maximum < np.iinfo(np.int64).max for maximum in maxima.values())
    largest = make_config(maxima)  # the maxima themselves are accepted (4096 is a power of two)
    assert dataclasses.asdict(largest)["n_samples"] == maxima["n_samples"]


def test_the_smallest_values_that_can_train_are_accepted():
    """The bounds are inclusive: batch norm trains on 2 images, and a seed may be 0."""
    cfg = make_config({"batch_size": 2, "seed": 0, "epochs": 1, "latent": 1, "depth": 1})
    assert (cfg.batch_size, cfg.seed, cfg.epochs, cfg.latent) == (2, 0, 1, 1)


def test_float_fields_take_zero_and_float32s_normal_range():
    assert make_config({"noise_std": 0}).noise_std == 0.0
    assert make_config({"lr": 1e-30}).lr == 1e-30
    assert make_config({"lr": 1e30}).lr == 1e30  # diverges, as the reliability tests want: a row


def test_error_messages_show_a_huge_value_cut_short():
    nested = [[list(range(1000))] * 1000] * 1000
    with pytest.raises(ValueError) as error:
        make_config({"latent": nested})
    assert len(str(error.value)) < 300 and str(error.value).startswith("latent: expected an")

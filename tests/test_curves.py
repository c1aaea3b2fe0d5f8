"""trainables.curves: which trials share a curve, and the one name every stage gives it."""

from study import grids
from trainables import curves
from trainables.config import make_config


def test_a_curve_is_every_scientific_field_but_the_latent_and_the_seed():
    cfg = make_config({"dataset": "digits"})
    assert set(curves.CURVE_FIELDS) == set(cfg.science()) - {"latent", "seed"}
    assert "precision" in curves.CURVE_FIELDS  # bf16 and fp32 trials are never pooled
    assert curves.key(cfg.replace(latent=64, seed=3).science()) == curves.key(cfg.science())
    assert curves.key(cfg.replace(filters=32).science()) != curves.key(cfg.science())


def test_curves_group_latents_and_label_what_differs():
    trials = grids.expand("table1-cifar10")
    grouped = curves.group(trials)
    assert len(grouped) == 20
    labels = {curves.label(curve[0].science()) for curve in grouped.values()}
    assert "cifar10 dae f128 d3-3-2-1" in labels and "cifar10 dae f128 d1 noise0.5" in labels
    assert "cifar10 dae f128 d2 frozen" in labels and len(labels) == 20


def test_a_reading_set_apart_from_the_default_names_the_curve():
    digits = curves.label(make_config({"dataset": "digits", "precision": "bf16"}).science())
    assert digits == "digits dae f16 d1 precision=bf16"  # digits' own default is fp32
    assert curves.label(make_config({"dataset": "celeba"}).science()) == "celeba dae f128 d1"


def test_the_label_and_the_protocol_are_written_from_the_same_departures():
    row = make_config({"dataset": "cifar10", "epochs": 2, "lr": 5e-4, "precision": "fp32"})
    science = row.science()
    assert curves.departures(science) == {"precision": "fp32", "epochs": "2", "lr": "0.0005"}
    assert curves.label(science) == "cifar10 dae f128 d1 precision=fp32 epochs=2 lr=0.0005"
    assert curves.protocol(science) == "epochs=2, lr=0.0005"  # tables show the precision apart
    assert curves.protocol(make_config().science()) == "paper"
    assert curves.protocol(make_config({"dataset": "digits"}).science()) == "default"

import pytest
from fixtures import ALIAS_BOMB

from study import grids
from trainables import curves
from trainables.published import COMPARISON_LATENT

# Every latent size printed in the paper's Tables 2 (128 CIFAR-10, 64 CelebA) and 3 (each curve's
# optimum).
TABLE_2_3_LATENTS = {32, 64, 80, 96, 128, 144, 152, 160, 192, 256, 384, 512, 768}


def table1_curves_from_the_paper() -> set[tuple]:
    """Table 1 and its text, as (dataset, model, filters, depth, latent_norm, noise_std,
    freeze_latent)."""
    expected = {
        ("cifar10", m, f, "1", "none", 0.0, False)
        for m in ("dae", "vae")
        for f in (32, 64, 128, 256)
    }
    expected |= {
        ("celeba", m, f, "1", "none", 0.0, False) for m in ("dae", "vae") for f in (32, 64, 128)
    }
    expected |= {("cifar10", "dae", 64, d, "none", 0.0, False) for d in ("2", "3")}
    expected |= {("cifar10", "dae", 128, d, "none", 0.0, False) for d in ("2", "3-3-2-1")}
    expected |= {("cifar10", "dae", 128, "1", norm, 0.0, False) for norm in ("bn", "sn", "ln")}
    expected |= {("cifar10", "dae", 128, "1", "none", std, False) for std in (0.1, 0.5, 1.0)}
    expected |= {("cifar10", "dae", 128, d, "none", 0.0, True) for d in ("1", "2")}
    return expected


def axes(cfg) -> tuple:
    return (
        cfg.dataset,
        cfg.model,
        cfg.filters,
        cfg.depth,
        cfg.latent_norm,
        cfg.noise_std,
        cfg.freeze_latent,
    )


def test_table1_is_exactly_the_papers_table_1():
    trials = grids.expand("table1")
    assert {axes(cfg) for cfg in trials} == table1_curves_from_the_paper()
    assert 300 <= len(trials) <= 400
    assert all(
        cfg.epochs == 100 and cfg.batch_size == 128 and cfg.n_samples == 10_000 for cfg in trials
    )


def test_table_2_and_3_curves_hold_every_latent_size_the_paper_reports():
    latents: dict[tuple, set[int]] = {}
    for cfg in grids.expand("table1"):
        latents.setdefault(axes(cfg), set()).add(cfg.latent)
    depth1 = [curve for curve in latents if curve[3:] == ("1", "none", 0.0, False)]
    assert len(depth1) == 14
    for curve in depth1:
        assert TABLE_2_3_LATENTS <= latents[curve], curve
        # each minimum has a point on both sides
        assert min(latents[curve]) < 32 and max(latents[curve]) > 768


def test_table1_sub_grids_split_it_by_dataset():
    ids = {name: {cfg.trial_id() for cfg in grids.expand(name)} for name in grids.GRIDS}
    assert ids["table1-cifar10"] | ids["table1-celeba"] == ids["table1"]
    assert not ids["table1-cifar10"] & ids["table1-celeba"]
    assert {cfg.dataset for cfg in grids.expand("table1-celeba")} == {"celeba"}


@pytest.mark.parametrize("name", list(grids.GRIDS))
def test_every_grid_expands_to_distinct_valid_trials(name):
    trials = grids.expand(name, seeds=2)
    assert len({cfg.trial_id() for cfg in trials}) == len(trials) == 2 * len(grids.GRIDS[name])
    assert sorted({cfg.seed for cfg in trials}) == [0, 1]


def test_the_offline_grids_compare_dae_and_vae_over_latent_sizes():
    digits = curves.group(grids.expand("digits"))
    assert {cfg.model for curve in digits.values() for cfg in curve} == {"dae", "vae"}
    assert all(len({cfg.latent for cfg in curve}) >= 4 for curve in digits.values())
    smoke = [cfg for cfg in grids.expand("smoke")]
    assert {cfg.latent_norm for cfg in smoke} == {"none", "bn", "sn", "ln"}
    assert {cfg.model for cfg in smoke} == {"dae", "vae"}
    assert any(cfg.noise_std > 0 for cfg in smoke) and any(cfg.freeze_latent for cfg in smoke)
    assert any(len(set(cfg.stage_depths)) > 1 for cfg in smoke)


def test_vae_readings_runs_the_vaes_table_2_points_under_each_bce_reduction():
    trials = grids.expand("vae-readings")
    points = {(cfg.dataset, cfg.latent, cfg.bce_reduction) for cfg in trials}
    assert points == {
        (dataset, latent, reduction)
        for dataset, latent in COMPARISON_LATENT.items()
        for reduction in ("sum", "channel-mean", "mean")
    }
    assert {(cfg.model, cfg.filters, cfg.depth, cfg.epochs) for cfg in trials} == {
        ("vae", 128, "1", 100)
    }
    labels = [curves.label(cfg.science()) for cfg in trials]
    assert len(set(labels)) == len(trials) == 6  # each reading its own curve, named by it
    assert "celeba vae f128 d1 bce_reduction=channel-mean" in labels


def test_runtime_fields_do_not_change_the_trials():
    plain = grids.expand("smoke")
    moved = grids.expand("smoke", runtime={"data_root": "/elsewhere", "cache_dir": "/tmp/c"})
    assert [cfg.trial_id() for cfg in plain] == [cfg.trial_id() for cfg in moved]
    assert {cfg.data_root for cfg in moved} == {"/elsewhere"}


def test_unknown_grid_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown grid 'tabel1'.*digits, smoke, table1"):
        grids.expand("tabel1")


def test_a_bad_key_in_a_grid_is_named(monkeypatch):
    monkeypatch.setitem(grids.GRIDS, "typo", [{"dataset": "digits", "latnet": 8}])
    with pytest.raises(ValueError, match="grid 'typo', entry 0.*unknown config key 'latnet'"):
        grids.expand("typo")


def test_a_mistyped_grid_name_gets_the_closest_one():
    with pytest.raises(ValueError, match=r"unknown grid 'tabel1' \(did you mean 'table1'\?\)"):
        grids.named_grid("tabel1")
    with pytest.raises(ValueError, match=r"unknown grid 'cifar'; known grids"):  # nothing close
        grids.named_grid("cifar")


@pytest.mark.parametrize(
    "text, problem",
    [
        (ALIAS_BOMB, "expands to more than 100,000 values"),
        ("- &a [*a]\n", "expands to more than 100,000 values"),  # a list that holds itself
        ("[" * 100_000 + "]" * 100_000, "not valid YAML"),  # deeper than the parser can recurse
        (f"- {{dataset: digits, latent: {'9' * 2_000_000}}}\n", "larger than 1,000,000 bytes"),
    ],
    ids=["alias bomb", "cycle", "too deep", "too large"],
)
def test_a_grid_file_that_would_blow_up_is_refused_with_a_short_message(tmp_path, text, problem):
    path = tmp_path / "grid.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=problem) as error:
        grids.from_file(path)
    assert len(str(error.value)) < 400


def test_an_entry_with_a_huge_value_is_named_in_a_short_message(tmp_path):
    path = tmp_path / "grid.yaml"
    path.write_text("- {dataset: digits, latent: [" + ", ".join(["1"] * 10_000) + "]}\n")
    with pytest.raises(ValueError, match="entry 0 .*latent: expected an integer") as error:
        grids.expand(grids.from_file(path))
    assert len(str(error.value)) < 600

"""`dae-study status STORE`: per curve done / failed / diverged / remaining from the launch's plan
and the live rows, whether a launcher holds the store, on stores being written, without torch."""

import dataclasses
import datetime
import json
import os
import re

import pytest
from analysis_data import make_row
from test_cli import dae_study

from study import launch, status
from study.layout import live_parts
from study.store import ResultStore
from trainables import curves
from trainables.config import make_config

DIGITS = {"dataset": "digits", "filters": 8, "batch_size": 32, "epochs": 10}
DAE = curves.label(make_config(DIGITS).science())
VAE = curves.label(make_config({**DIGITS, "model": "vae"}).science())


def configs(model: str, latents=(4, 8, 16, 32)):
    return [make_config({**DIGITS, "model": model, "latent": latent}) for latent in latents]


def row(cfg, state="ok") -> dict:
    return make_row({**cfg.science(), "precision": cfg.precision}, status=state)


def counts(lines: list[str], curve: str) -> list[str]:
    """The done, failed, diverged and remaining cells of a curve's line."""
    (line,) = [line for line in lines if line.startswith(curve + " ")]
    return line.split()[-4:]


def age(part, seconds: float) -> None:
    """As if the part had been written `seconds` before now."""
    when = datetime.datetime.now().timestamp() - seconds
    os.utime(part, (when, when))


def test_each_planned_trial_is_counted_by_its_row_and_the_rest_remains(tmp_path):
    """The DAE's latent 4 was ok and its 8 diverged before the launch (both kept); its 16 failed
    before it (the launch runs it again: remaining) and its 32 failed during it. The VAE has rows
    at 4 (ok, during) and none else. A row of a trial outside the plan is counted below it."""
    dae, vae = configs("dae"), configs("vae")
    store = tmp_path / "results.parquet"
    with ResultStore(store) as writer:
        before = [row(dae[0]), row(dae[1], "diverged"), row(dae[2], "failed")]
        parts = [writer.write(r) for r in before]
        for part in parts:
            age(part, 3600)
        status.write_plan(store, "digits", [*dae, *vae])
        writer.write(row(dae[3], "failed"))
        writer.write(row(vae[0]))
        writer.write(row(dataclasses.replace(vae[0], latent=64)))
    lines = status.report(store)
    assert lines[1].startswith("not running; the last launch: grid digits, started ")
    planned, outside = lines[: lines.index(status.OUTSIDE)], lines[lines.index(status.OUTSIDE) :]
    assert counts(planned, DAE) == ["1", "1", "1", "1"]
    assert counts(planned, VAE) == ["1", "0", "0", "3"]
    assert counts(outside, VAE) == ["1", "0", "0", "?"]


def test_a_running_launch_says_its_pid_and_an_eta_at_its_rate(tmp_path):
    """Two trials of eight finished in the launch's first 10 minutes: the six left take 30."""
    store = tmp_path / "results.parquet"
    trials = [*configs("dae"), *configs("vae")]
    with ResultStore(store) as writer:  # holds the lock, as a launcher does
        status.write_plan(store, "digits", trials)
        writer.write(row(trials[0]))
        writer.write(row(trials[1], "diverged"))
        started = status.read_plan(store)["started_at"]
        lines = status.report(store, now=started + datetime.timedelta(minutes=10))
    assert lines[1].startswith(f"running: pid {os.getpid()} on ")
    assert counts(lines, DAE) == ["1", "0", "1", "2"]
    assert lines[-1] == (
        "ETA: about 0:30:00, at the rate of this launch so far (2 trials finished in 0:10:00)"
    )
    assert status.report(store)[1].startswith("not running")  # the lock went with the launcher


def test_a_lock_held_before_the_plan_is_written_is_a_launch_starting(tmp_path):
    store = tmp_path / "results.parquet"
    with ResultStore(store):
        lines = status.report(store)
    assert lines[1] == f"running: pid {os.getpid()}, which has not written its plan yet"
    assert lines[-1] == "no rows yet"


def test_without_a_plan_the_rows_are_counted_per_curve(tmp_path):
    store = tmp_path / "results.parquet"
    with ResultStore(store) as writer:
        for r in [row(configs("dae")[0]), row(configs("vae")[1], "failed")]:
            writer.write(r)
    lines = status.report(store)
    assert lines[1] == "not running; no launch has written its plan into this store"
    assert counts(lines, DAE) == ["1", "0", "0", "?"]
    assert counts(lines, VAE) == ["0", "1", "0", "?"]


def test_a_search_plan_counts_what_its_curves_have_so_far(tmp_path):
    store = tmp_path / "results.parquet"
    with ResultStore(store) as writer:
        status.write_plan(store, "digits", configs("dae"), search="optuna")
        writer.write(row(configs("dae", latents=(12,))[0]))
    lines = status.report(store)
    assert "grid digits, an optuna search, started" in lines[1]
    assert counts(lines, DAE) == ["1", "0", "0", "?"]
    assert lines[-1] == "remaining: ? (a search picks each next trial as it goes)"


def test_a_part_renamed_away_while_it_is_read_is_skipped(tmp_path, monkeypatch):
    """As opening the store moves a part aside, between the listing and the read."""
    store = tmp_path / "results.parquet"
    with ResultStore(store) as writer:
        for cfg in configs("dae"):
            writer.write(row(cfg))
    gone = live_parts(store)[0]
    read_part = status.read_part

    def renamed_first(part):
        if part == gone and gone.exists():
            os.replace(gone, tmp_path / "elsewhere.parquet")
        return read_part(part)

    monkeypatch.setattr("study.layout.read_part", renamed_first)
    lines = status.report(store)
    assert not gone.exists()
    assert counts(lines, DAE) == ["3", "0", "0", "?"]
    assert not any("could not be read" in line for line in lines)


def test_a_part_that_is_no_row_is_counted_apart(tmp_path):
    store = tmp_path / "results.parquet"
    with ResultStore(store) as writer:
        writer.write(row(configs("dae")[0]))
    (store / "zz.parquet").write_bytes(b"not parquet")
    lines = status.report(store)
    assert counts(lines, DAE)[0] == "1"
    assert lines[-1].startswith("1 part file could not be read as rows")


def test_the_launcher_writes_its_plan_as_it_starts(tmp_path, capsys):
    """A finished grid: the launch plans every trial, finds them done and runs nothing."""
    store = tmp_path / "results.parquet"
    args = launch._parse_args(["--grid", "digits", "--results", str(store)])
    trials = launch._plan(args)
    with ResultStore(store) as writer:
        for cfg in trials:
            writer.write(row(cfg))
        assert launch._run(args, trials, writer) == 0
    plan = json.loads((store / status.PLAN).read_text())
    assert plan["grid"] == "digits" and plan["pid"] == os.getpid()
    assert plan["keeps"] == ["diverged", "ok"] and plan["search"] is None
    assert [t["trial_id"] for t in plan["trials"]] == [cfg.trial_id() for cfg in trials]
    assert {t["curve"] for t in plan["trials"]} == {DAE, VAE}
    lines = status.report(store)
    assert counts(lines, DAE) == counts(lines, VAE) == ["4", "0", "0", "0"]
    assert "all 8 trials already done" in capsys.readouterr().out


def test_the_command_reads_a_store_without_torch(tmp_path):
    store = tmp_path / "results.parquet"
    with ResultStore(store) as writer:
        writer.write(row(configs("dae")[0]))
    result = dae_study("status", str(store))
    assert result.returncode == 0, result.stderr
    assert re.search(rf"^{re.escape(DAE)} +1 +0 +0 +\?$", result.stdout, re.M)
    assert "torch imported: False" in result.stderr


@pytest.mark.parametrize(
    "make, says",
    [
        (lambda path: None, "it does not exist"),
        (lambda path: path.write_text("rows"), "it is not a folder"),
    ],
)
def test_a_store_that_cannot_be_read_gets_one_message_and_exit_1(tmp_path, capsys, make, says):
    path = tmp_path / "results.parquet"
    make(path)
    assert status.main([str(path)]) == 1
    err = capsys.readouterr().err
    assert err == f"status: no results store at {path}: {says}\n"


def test_bad_arguments_exit_2(capsys):
    with pytest.raises(SystemExit) as exit:
        status.main([])
    assert exit.value.code == 2 and "usage:" in capsys.readouterr().err

"""--results-mirror: the store's copy behind a URI (study/mirror.py), on a file:// URI and on S3
(moto's server, reached through pyarrow's own S3 filesystem as a bucket would be).

In-process tests write crafted rows through the store; the slow ones launch the smoke grid with
Ray, then relaunch it on a "fresh head" (an empty folder) that pulls the rows and runs nothing.
"""

import os
import re
from pathlib import Path

import boto3
import pandas as pd
import pytest
from analysis_data import make_row
from launching import REPO, probe
from launching import launch as run_launcher
from moto.server import ThreadedMotoServer
from report_data import grid_png

from analysis import report
from study import grids, layout, status
from study.layout import PLAN, SAMPLES, SUPERSEDED, TUNE
from study.mirror import Mirror, MirroredStore
from study.store import ResultStore
from trainables.config import make_config
from trainables.errors import BadInput
from trainables.schema import SAMPLE_GRID

BUCKET = "dae-study-test-mirror"
MOTO_ENV = {  # pyarrow's S3 filesystem reads the endpoint from AWS_ENDPOINT_URL_S3
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def crafted(latent: int, status: str = "ok", started: int = 0) -> dict:
    """A digits row with a sample grid (ok rows only, as trials save them)."""
    row = make_row({"dataset": "digits", "latent": latent}, status)
    row["started_at"] = f"2024-01-01T00:00:{started:02d}+00:00"
    return {**row, SAMPLE_GRID: grid_png(4, seed=latent)} if status == "ok" else row


def trial_id(latent: int) -> str:
    return crafted(latent)["trial_id"]


def mirror_files(uri: str) -> dict[str, bytes]:
    """Every file of the mirror -> its bytes."""
    fs, root = layout.open_uri(uri)
    found = {}
    for relative, info in layout.files_under(fs, root).items():
        with fs.open_input_file(info.path) as source:
            found[relative] = source.read()
    return found


def rows_of(path) -> dict[str, str]:
    """trial_id -> status of a store's live rows, read by plain pandas."""
    return dict(pd.read_parquet(path)[["trial_id", "status"]].itertuples(index=False))


@pytest.fixture
def file_uri(tmp_path) -> str:
    return (tmp_path / "mirror").as_uri()


@pytest.fixture(scope="module")
def moto_endpoint():
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    boto3.client("s3", endpoint_url=endpoint, **_boto_keys()).create_bucket(Bucket=BUCKET)
    yield endpoint
    server.stop()


def _boto_keys() -> dict:
    return {
        "aws_access_key_id": MOTO_ENV["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": MOTO_ENV["AWS_SECRET_ACCESS_KEY"],
        "region_name": MOTO_ENV["AWS_DEFAULT_REGION"],
    }


@pytest.fixture
def s3_uri(moto_endpoint, monkeypatch, request) -> str:
    for name, value in {**MOTO_ENV, "AWS_ENDPOINT_URL_S3": moto_endpoint}.items():
        monkeypatch.setenv(name, value)
    return f"s3://{BUCKET}/{re.sub(r'[^A-Za-z0-9]+', '-', request.node.name)}"


@pytest.fixture(params=["file", "s3"])
def uri(request) -> str:
    return request.getfixturevalue(f"{request.param}_uri")


def test_every_row_grid_superseded_row_and_the_plan_land_in_the_mirror(tmp_path, uri):
    local = tmp_path / "results"
    with MirroredStore(local, Mirror(uri)) as store:
        store.write(crafted(4))
        store.write(crafted(8, "failed"))
        store.write(crafted(8, started=1))  # its rerun: the failed row is superseded
        status.write_plan(store.path, "test", [])
        assert store.catch_up() and store.behind is None
    copied = mirror_files(uri)
    assert rows_of(uri) == rows_of(local) == {trial_id(4): "ok", trial_id(8): "ok"}
    for grid in (f"{SAMPLES}/{trial_id(4)}.png", f"{SAMPLES}/{trial_id(8)}.png"):
        assert copied[grid] == (local / grid).read_bytes()
    (superseded,) = [name for name in copied if name.startswith(SUPERSEDED)]
    assert copied[superseded] == (local / superseded).read_bytes()
    assert copied[PLAN] == (local / PLAN).read_bytes()
    assert not [name for name in copied if name.startswith(".")]  # no temp or probe file left
    pd.testing.assert_frame_equal(layout.read_store(uri), layout.read_store(local))


def test_a_fresh_store_pulls_every_row_and_grid_and_copies_nothing_back(tmp_path, uri):
    with MirroredStore(tmp_path / "head", Mirror(uri)) as store:
        store.write(crafted(4))
        store.write(crafted(8, "failed"))
    before = mirror_files(uri)
    fresh = tmp_path / "fresh-head"
    with MirroredStore(fresh, Mirror(uri)) as store:
        assert store.pulled == 2 and store.written == 0
        assert store.done() == {trial_id(4)}
        assert store.finish().startswith(f"mirror: {uri} holds every row")
    assert rows_of(fresh) == rows_of(tmp_path / "head")
    grid = f"{SAMPLES}/{trial_id(4)}.png"
    assert (fresh / grid).read_bytes() == before[grid]
    assert mirror_files(uri) == before  # nothing set aside, nothing copied again
    with MirroredStore(fresh, Mirror(uri)) as store:  # and a relaunch there neither
        assert store.pulled == 0
    assert mirror_files(uri) == before


def test_the_better_row_wins_on_either_side_and_the_other_is_kept_superseded(tmp_path, file_uri):
    with MirroredStore(tmp_path / "first", Mirror(file_uri)) as store:
        store.write(crafted(4, "failed"))
        store.write(crafted(8))
    # another store: the opposite outcomes of the same trials, and a trial of its own
    other = tmp_path / "other"
    with ResultStore(other) as store:
        store.write(crafted(4, started=1))
        store.write(crafted(8, "failed", started=1))
        store.write(crafted(16))
    with MirroredStore(other, Mirror(file_uri)) as store:
        assert store.pulled == 1  # latent 8's ok row replaces the local failed one
    expected = {trial_id(4): "ok", trial_id(8): "ok", trial_id(16): "ok"}
    assert rows_of(file_uri) == rows_of(other) == expected
    # the store keeps the failed row the pulled one replaced; the mirror keeps that one (copied
    # as any superseded row) and its own that the store's better row replaced
    assert rows_of(other / SUPERSEDED) == {trial_id(8): "failed"}
    assert rows_of(f"{file_uri}/{SUPERSEDED}") == {trial_id(4): "failed", trial_id(8): "failed"}


def block(folder: Path, name: str) -> Path:
    """A folder where the mirror would write `name`'s temp file: that copy fails (for root too)."""
    blocker = folder / layout.temp_name(Path(name))
    blocker.mkdir(parents=True)
    return blocker


def test_a_mirror_that_fails_mid_run_loses_no_row_and_catches_up(tmp_path, file_uri, capsys):
    folder = Path(file_uri.removeprefix("file://"))
    with MirroredStore(tmp_path / "results", Mirror(file_uri)) as store:
        store.write(crafted(4))
        blocker = block(folder, layout.part_name(trial_id(8)))
        store.write(crafted(8))
        warned = capsys.readouterr().err
        assert f"cannot copy {layout.part_name(trial_id(8))} to the results mirror" in warned
        assert store.behind is not None and set(rows_of(store.path)) == {trial_id(4), trial_id(8)}
        assert set(rows_of(file_uri)) == {trial_id(4)}
        assert "BEHIND: it lacks 1 files" in store.finish()
        blocker.rmdir()
        store.write(crafted(16))  # the next row takes the one the mirror lacked with it
        assert store.behind is None and "has caught up" in capsys.readouterr().out
    assert rows_of(file_uri) == rows_of(tmp_path / "results")


def test_a_mirror_that_cannot_be_written_or_that_overlaps_the_store_is_bad_input(tmp_path):
    (tmp_path / "a-file").write_text("")
    cases = {
        (tmp_path / "a-file" / "mirror").as_uri(): "cannot write there",
        "nosuchprotocol://bucket/prefix": "nosuchprotocol",
        (tmp_path / "results" / "mirror").as_uri(): "the mirror and the store",
        tmp_path.as_uri(): "the mirror and the store",
    }
    for uri, says in cases.items():
        with pytest.raises(BadInput, match=says):
            Mirror(uri).check(tmp_path / "results")


def test_report_and_status_read_the_mirror(tmp_path, uri, capsys):
    plan = [
        make_config({"dataset": "digits", "precision": "fp32", "latent": n}) for n in (4, 8, 16)
    ]
    with MirroredStore(tmp_path / "results", Mirror(uri)) as store:
        status.write_plan(store.path, "test", plan)
        store.catch_up()
        store.write(crafted(4))
        store.write(crafted(8, "failed"))
    assert status.main([uri]) == 0
    said = capsys.readouterr().out
    assert said.startswith(f"store {uri}\na mirror; the last launch: grid test")
    assert re.search(r"^digits .* +1 +1 +0 +1$", said, re.M), said  # done failed diverged left
    assert report.main([uri, "--out", str(tmp_path / "report")]) == 0
    page = (tmp_path / "report" / "README.md").read_text()
    assert f"Store `{uri}`: 2 rows (1 failed, 1 ok)" in page  # ties by name
    assert (tmp_path / "report" / "samples" / f"{trial_id(4)}.png").is_file()


def test_an_empty_or_absent_mirror_is_no_store(tmp_path, capsys):
    uri = (tmp_path / "never-written").as_uri()
    assert status.main([uri]) == 1 and "no results store at" in capsys.readouterr().err
    assert report.main([uri, "--out", str(tmp_path / "report")]) == 1
    assert "no results store at" in capsys.readouterr().err


# ------------------------------------------------------------------------- launches, with Ray


@pytest.fixture
def env(tmp_path, untrained_digits_cnn) -> dict:
    return {
        **os.environ,
        "DAE_DATA_ROOT": str(tmp_path / "data"),
        "DAE_FID_WEIGHTS": str(tmp_path / "no-weights.pth"),
        "DAE_CACHE_DIR": str(untrained_digits_cnn(tmp_path / "cache")),
        "PYTHONPATH": str(REPO),
    }


SMOKE = ["--grid", "smoke", "--limit", "2"]
SMOKE_IDS = {cfg.trial_id() for cfg in grids.expand("smoke")[:2]}


@pytest.mark.slow
def test_a_launch_into_s3_then_a_fresh_head_pulls_its_rows_and_runs_nothing(
    env, sessions, tmp_path, s3_uri
):
    env = {**env, **{name: os.environ[name] for name in (*MOTO_ENV, "AWS_ENDPOINT_URL_S3")}}
    head = tmp_path / "head" / "results.parquet"
    ran = run_launcher(env, sessions, *SMOKE, "--results", str(head), "--results-mirror", s3_uri)
    assert ran.returncode == 0, ran.stderr
    assert f"mirror: {s3_uri} holds every row of it and Tune's {TUNE}/" in ran.stdout
    copied = mirror_files(s3_uri)
    assert {name for name in copied if name.startswith(TUNE)}  # Tune's state, for its logs
    assert rows_of(s3_uri) == rows_of(head) and set(rows_of(head).values()) == {"ok"}

    fresh = tmp_path / "fresh-head" / "results.parquet"
    again = probe(env, *SMOKE, "--results", str(fresh), "--results-mirror", s3_uri)
    assert again.returncode == 0, again.stderr
    assert f"2 rows pulled from the results mirror {s3_uri}" in again.stdout
    assert "all 2 trials already done" in again.stdout and "ray imported: False" in again.stderr
    pd.testing.assert_frame_equal(pd.read_parquet(fresh), pd.read_parquet(head))
    assert report.main([s3_uri, "--out", str(tmp_path / "report")]) == 0
    assert len(list((tmp_path / "report" / "samples").glob("*.png"))) == 1  # one curve


@pytest.mark.slow
def test_a_launch_whose_mirror_fails_mid_run_keeps_every_row_and_a_rerun_catches_up(
    env, sessions, tmp_path, file_uri
):
    folder = Path(file_uri.removeprefix("file://"))
    lost = layout.part_name(sorted(SMOKE_IDS)[0])
    blocker = block(folder, lost)  # the probe and the other copies go through; this one fails
    args = [*SMOKE, "--results", str(tmp_path / "results"), "--results-mirror", file_uri]
    ran = run_launcher(env, sessions, *args)
    assert ran.returncode == 3, ran.stderr
    assert f"cannot copy {lost} to the results mirror" in ran.stderr
    assert f"launch: mirror: {file_uri} is BEHIND" in ran.stderr
    assert set(rows_of(tmp_path / "results")) == SMOKE_IDS
    assert lost.removesuffix(".parquet") not in set(layout.read_store(file_uri)["trial_id"])

    blocker.rmdir()
    again = probe(env, *args)
    assert again.returncode == 0, again.stderr
    assert "all 2 trials already done" in again.stdout and "ray imported: False" in again.stderr
    assert rows_of(file_uri) == rows_of(tmp_path / "results")

"""cluster.yaml passes the checks `ray up` runs before it starts anything (offline), its pinned
stack agrees with itself and with pyproject.toml, and Ray's own code gives each node what it needs:
GPUs in the workers' containers, setup commands that leave downloads to the head, a checkout
without .git, venvs or caches. tests/test_cluster_aws.py launches it against a mock AWS."""

import re
import subprocess
from functools import partial

import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from project import PYPROJECT, REPO
from ray.autoscaler._private.command_runner import DockerCommandRunner, SSHCommandRunner
from ray.autoscaler._private.node_provider_availability_tracker import NodeAvailabilitySummary
from ray.autoscaler._private.resource_demand_scheduler import (
    _default_utilization_scorer,
    get_nodes_for,
)
from ray.autoscaler._private.util import prepare_config, validate_config

CLUSTER = yaml.safe_load((REPO / "cluster.yaml").read_text())
IMAGE = re.compile(r"rayproject/ray:(?P<ray>[\d.]+)-py(?P<python>\d)(?P<minor>\d+)-cu(?P<cuda>\d+)")


def requirement(name: str) -> Requirement:
    (found,) = [
        Requirement(text)
        for text in PYPROJECT["project"]["dependencies"]
        if Requirement(text).name == name
    ]
    return found


def install_command() -> str:
    """The one install every node runs (setup_commands: the head and the workers)."""
    (command,) = [line for line in CLUSTER["setup_commands"] if "pip install" in line]
    return command


def ray_pin() -> str:
    """pyproject.toml's Ray: one minor line, ==<major>.<minor>.*"""
    pin = re.fullmatch(r"==(\d+\.\d+)\.\*", str(requirement("ray").specifier))
    assert pin, f"pyproject.toml pins ray[tune] to {requirement('ray').specifier}, not ==X.Y.*"
    return pin[1]


def test_cluster_yaml_is_what_ray_up_accepts():
    config = prepare_config(CLUSTER)
    validate_config(config)
    gpu_workers = [
        node
        for node in config["available_node_types"].values()
        if node["resources"].get("GPU", 0) > 0
    ]
    assert gpu_workers and all(
        node["min_workers"] == 0 and node["max_workers"] > 0 for node in gpu_workers
    )
    head = config["available_node_types"][config["head_node_type"]]
    assert head["resources"] == {"CPU": 0}  # trials never land on the head that holds the store


def test_gpu_workers_are_spot_first_with_on_demand_beside_them():
    """The two GPU types offer the same resources: the autoscaler must pick the spot one, and that
    rests on how Ray breaks a tie (by the type's name), which a Ray upgrade could change."""
    types = CLUSTER["available_node_types"]
    market = {name: types[name]["node_config"].get("InstanceMarketOptions") for name in types}
    assert market["gpu_spot"] == {"MarketType": "spot"} and market["gpu_on_demand"] is None
    assert types["gpu_spot"]["resources"] == types["gpu_on_demand"]["resources"]
    scorer = partial(
        _default_utilization_scorer, node_availability_summary=NodeAvailabilitySummary({})
    )
    trials = [{"CPU": 1, "GPU": 1}] * 3
    added, unmet = get_nodes_for(types, {}, CLUSTER["head_node_type"], 8, trials, scorer)
    assert dict(added) == {"gpu_spot": 3} and unmet == []


def test_the_stack_is_pinned_and_agrees_with_itself_and_pyproject():
    """One Ray on every node (the image's, and the pip pin that keeps it), in the minor line that
    pyproject.toml pins for the launcher; a torch build for the image's CUDA, within what
    pyproject.toml allows. The Ray these tests run with is not compared: a new release on PyPI
    cannot fail them, and the pin decides what a fresh install gets."""
    image = IMAGE.fullmatch(CLUSTER["docker"]["image"])
    assert image, CLUSTER["docker"]["image"]
    command = install_command()
    (node_ray,) = re.findall(r"'ray\[[a-z,]+\]==([\d.]+)'", command)
    ((torch_pin, torch_cuda),) = re.findall(r"torch==([\d.]+)\+cu(\d+)", command)
    (index_cuda,) = re.findall(r"download\.pytorch\.org/whl/cu(\d+)", command)
    assert node_ray == image["ray"] and node_ray.startswith(ray_pin() + ".")
    assert torch_cuda == index_cuda == image["cuda"]
    assert requirement("torch").specifier.contains(torch_pin)
    python = f"{image['python']}.{image['minor']}"
    assert SpecifierSet(PYPROJECT["project"]["requires-python"]).contains(python)


def test_every_node_boots_the_same_current_host_image():
    images = {node["node_config"]["ImageId"] for node in CLUSTER["available_node_types"].values()}
    (image,) = images
    assert "latest_dlami" not in image  # Ray resolves that to a CUDA 11 image from 2021


class RecordingHost:
    """A node's SSH runner as DockerCommandRunner uses it: it keeps each command and answers as a
    GPU host whose `docker info` lists no nvidia runtime (so Ray adds no --runtime=nvidia)."""

    ssh_user = CLUSTER["auth"]["ssh_user"]
    cluster_name = CLUSTER["cluster_name"]
    answers = {
        "command -v docker": b"/usr/bin/docker",
        "{{json .Config.Env}}": b'["HOME=/home/ray"]',
        "/proc/meminfo": b"MemAvailable:   31000000 kB",
    }

    def __init__(self):
        self.commands: list[str] = []

    def run(self, cmd: str, with_output: bool = False, **options) -> bytes:
        self.commands.append(cmd)
        return next((out for key, out in self.answers.items() if key in cmd), b"")


# what Ray's command runners take for a node (no connection is made: the tests call no SSH)
NODE = {
    "log_prefix": "",
    "node_id": "i-0",
    "provider": None,
    "auth_config": CLUSTER["auth"],
    "cluster_name": CLUSTER["cluster_name"],
    "process_runner": subprocess,
    "use_internal_ip": True,
}


def docker_run(as_head: bool) -> str:
    """The `docker run` that Ray's DockerCommandRunner sends a new head or worker."""
    runner = DockerCommandRunner(prepare_config(CLUSTER)["docker"], **NODE)
    runner.ssh_command_runner = host = RecordingHost()
    runner.run_init(as_head=as_head, file_mounts={}, sync_run_yet=True)
    (command,) = [cmd for cmd in host.commands if cmd.startswith("docker run")]
    return command


def test_gpus_reach_the_workers_containers_and_not_the_heads():
    head, worker = docker_run(as_head=True), docker_run(as_head=False)
    assert CLUSTER["docker"]["image"] in head and CLUSTER["docker"]["image"] in worker
    assert "--ulimit nofile=65536:65536" in head and "--ulimit nofile=65536:65536" in worker
    assert " --gpus all " in worker
    assert "--gpus" not in head and "--runtime=nvidia" not in head  # an m5: no GPU to ask for


def test_workers_install_what_a_trial_needs_and_download_nothing():
    """A worker (a spot replacement too) installs the pinned torch, Ray and the repo with its FID
    weights, and nothing else: its images come from the head through Ray's object store."""
    config = prepare_config(CLUSTER)
    assert not any("worker_setup_commands" in node for node in CLUSTER["available_node_types"])
    assert config["worker_setup_commands"] == [install_command()]
    assert '-e "$HOME/dae-study[fid-weights]"' in install_command()
    head = config["head_setup_commands"]
    assert head[0] == install_command() and '-e "$HOME/dae-study[aws]"' in " ".join(head)
    downloads = [cmd for cmd in head if "--download" in cmd]
    assert [re.search(r"--grid (\S+)", cmd)[1] for cmd in downloads] == [
        "table1-cifar10",
        "table1-celeba",
    ]


def test_the_checkout_reaches_the_nodes_without_git_venvs_or_caches(tmp_path):
    """Ray's rsync of file_mounts takes .gitignore's rules (dir-merge) and leaves .git out. Which
    paths .gitignore's rules exclude is asked of git (check-ignore, in a scratch repository), as
    rsync reads these plain patterns the same way."""
    args = SSHCommandRunner(**NODE)._create_rsync_filter_args(CLUSTER)
    assert args == ["--exclude", ".git", "--filter", "dir-merge,- .gitignore"]
    (tmp_path / ".gitignore").write_text((REPO / ".gitignore").read_text())
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    left_out = [
        ".venv/bin/python",
        ".venv-fresh/bin/python",
        "study/__pycache__/launch.cpython-311.pyc",
        ".pytest_cache/README.md",
        ".ruff_cache/CACHEDIR.TAG",
        "dae_study.egg-info/PKG-INFO",
        "results.parquet/part-0.parquet",
        "report/index.html",
    ]
    kept = ["study/launch.py", "aws/head-policy.json", "docs/cluster.md", "cluster.yaml"]
    ignored = subprocess.run(
        ["git", "-C", str(tmp_path), "check-ignore", "--no-index", *left_out, *kept],
        capture_output=True,
        text=True,
    ).stdout.split()
    assert ignored == left_out
